"""Communications Hub ordering (the SEC consultation of January 2015, chapter 6): delivery
locations, monthly forecasts and orders per Party, deliveries that put the hubs in the inventory.

**The window rule.** A forecast or an order for delivery month M must be submitted during the
month that ends 10 months before M starts: the calendar month M-11 (for delivery in November
2027 the window is December 2026, since 31 December 2026 + 10 months is the start of November
2027). The same rule holds for the first forecast and every later one. The first month that can
be forecast or ordered is the month of the Initial Delivery Date (setting
``inventory_initial_delivery_date``). The submission's day is its date in UK local time
(Europe/London), the time the SEC runs on. A submission outside its window is refused with the
reason and the window that would apply.

**Deliveries** create each hub's CHF and GPF in the inventory as Pending (event
``ch-delivery``), in the CSP region of the order's delivery location, notified by the ordering
Party (so that it may send 8.14 for them before any registration exists). Their life ends with
8.14.3 (fault) or 8.14.4 (no fault) Communications Hub returns (``hub.status_update`` in
``services.inventory.requests``); the order summary counts those returns.

Delivered hub EUIs are ``00-DC-C6-dd-dd-kk-nn-nn``: delivery id (2 bytes), kind (00 CHF, 01 GPF)
and the hub's number in the delivery (2 bytes), so they never meet the estate's ``00-DC-C5``.

RPC methods (routing key ``rpc.inventory``), bodies and replies msgpack maps. Every reply
carries ``code``: ``"I0"`` on success; ``"refused"`` when an ordering rule refuses it, with
``rule``, ``reason`` and, when a delivery month is involved, ``window``; ``"invalid"`` for a
malformed body, with ``reason``. Months are ``"YYYY-MM"``, dates ISO 8601; ``submitted_at`` /
``delivered_at`` (ISO 8601 with offset) stand in for "now" when a test needs another day.

``window`` = ``{delivery_month, opens: "YYYY-MM-DD", closes: "YYYY-MM-DD" (inclusive)}``
``location`` = ``{location_id, party, name, postcode, csp_region}``

``ch.window``  {delivery_month} -> {code: "I0", window, first_delivery_month}
``ch.location.add``  {party, location_id, name, postcode, csp_region: "North"|"Central"|"South"}
    -> {code: "I0", location}; refused ``duplicate-location``, ``unknown-region``
``ch.locations.list``  {[party]} -> {code: "I0", locations: [location, ...]}
``ch.forecast.submit``  {party, delivery_month, quantities: {csp_region: n, ...}, [submitted_at]}
    -> {code: "I0", window, forecasts: [forecast, ...]} where forecast = {party, delivery_month,
    csp_region, quantity, submitted_at, superseded}; a region forecast again for the same month
    supersedes the earlier figure. Refused ``before-initial-delivery``, ``window-not-open``,
    ``window-closed``, ``unknown-region``.
``ch.forecasts.list``  {[party], [delivery_month], [include_superseded=false]}
    -> {code: "I0", forecasts: [forecast, ...]}
``ch.order.submit``  {party, delivery_month, location_id, quantity, [hub_variant="standard"],
    [submitted_at]} -> {code: "I0", window, order}; refused as a forecast, and
    ``unknown-location`` (not one of the Party's locations).
``ch.delivery.record``  {order_id, [quantity] (default: all outstanding), [delivered_at]}
    -> {code: "I0", delivery: {delivery_id, order_id, quantity, delivered_at, csp_region,
    hubs: [{chf, gpf}, ...]}}; refused ``unknown-order``, ``over-delivery``.
``ch.orders.list``  {[party], [delivery_month]} -> {code: "I0", orders: [order, ...]} where
    order = {order_id, party, delivery_month, location_id, csp_region, hub_variant, quantity,
    submitted_at, delivered, outstanding, returned_fault, returned_no_fault}.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update

from dccsim.estate import REGIONS, format_eui
from dccsim.smi import DeviceType, StatusEvent, next_status
from services.inventory.store import (
    DeliveredHub,
    DeliveryLocation,
    Device,
    HubDelivery,
    HubForecast,
    HubOrder,
    SmartMeteringInventory,
    StatusChange,
    _aware,
    utcnow,
)

UK = ZoneInfo("Europe/London")
LEAD_MONTHS = 11  # submit in M-11: the month that ends 10 months before M starts
DELIVERED_HUB_PREFIX = bytes.fromhex("00DCC6")
MAX_HUBS_PER_DELIVERY = 0xFFFF
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")

Body = dict[str, Any]
Reply = dict[str, Any]
Method = Callable[[Body], Awaitable[Reply]]
ChangeListener = Callable[[list[str]], Awaitable[None]]


@dataclass(frozen=True, order=True)
class DeliveryMonth:
    """A calendar month in which hubs are delivered."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> DeliveryMonth:
        match = _MONTH.match(text.strip())
        if match is None or not 1 <= int(match.group(2)) <= 12:
            raise ValueError(f"a delivery month is YYYY-MM, not {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, day: date) -> DeliveryMonth:
        return cls(day.year, day.month)

    def shift(self, months: int) -> DeliveryMonth:
        index = self.year * 12 + (self.month - 1) + months
        return DeliveryMonth(index // 12, index % 12 + 1)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return self.shift(1).first_day - timedelta(days=1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class SubmissionWindow:
    """The days (UK local, both inclusive) on which a forecast or order for ``delivery_month``
    may be submitted."""

    delivery_month: DeliveryMonth
    opens: date
    closes: date

    def to_wire(self) -> dict[str, str]:
        return {
            "delivery_month": str(self.delivery_month),
            "opens": self.opens.isoformat(),
            "closes": self.closes.isoformat(),
        }


def submission_window(delivery_month: DeliveryMonth) -> SubmissionWindow:
    """The window for ``delivery_month``: the whole calendar month eleven months before it."""
    month = delivery_month.shift(-LEAD_MONTHS)
    return SubmissionWindow(delivery_month, month.first_day, month.last_day)


def uk_date(at: datetime) -> date:
    """The date in Great Britain at instant ``at`` (naive values are taken as UTC)."""
    return _aware(at).astimezone(UK).date()


def _utc(at: datetime) -> datetime:
    # Stored in UTC: SQLite keeps a datetime's wall time and drops its offset.
    return _aware(at).astimezone(UTC)


class OrderingRefusal(Exception):
    """A submission an ordering rule refuses: the rule's name, why, and the window that applies."""

    def __init__(self, rule: str, reason: str, window: SubmissionWindow | None = None) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason
        self.window = window

    def to_wire(self) -> Reply:
        reply: Reply = {"code": "refused", "rule": self.rule, "reason": self.reason}
        if self.window is not None:
            reply["window"] = self.window.to_wire()
        return reply


@dataclass(frozen=True)
class OrderSummary:
    order: HubOrder
    csp_region: str
    delivered: int
    returned_fault: int
    returned_no_fault: int

    @property
    def outstanding(self) -> int:
        return self.order.quantity - self.delivered

    def to_wire(self) -> dict[str, Any]:
        o = self.order
        return {
            "order_id": o.order_id,
            "party": o.party,
            "delivery_month": o.delivery_month,
            "location_id": o.location_id,
            "csp_region": self.csp_region,
            "hub_variant": o.hub_variant,
            "quantity": o.quantity,
            "submitted_at": _aware(o.submitted_at).isoformat(),
            "delivered": self.delivered,
            "outstanding": self.outstanding,
            "returned_fault": self.returned_fault,
            "returned_no_fault": self.returned_no_fault,
        }


@dataclass(frozen=True)
class Delivery:
    delivery_id: int
    order_id: int
    quantity: int
    delivered_at: datetime
    csp_region: str
    hubs: tuple[tuple[str, str], ...]  # (CHF EUI, GPF EUI)

    @property
    def euis(self) -> list[str]:
        return [eui for hub in self.hubs for eui in hub]

    def to_wire(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "order_id": self.order_id,
            "quantity": self.quantity,
            "delivered_at": self.delivered_at.isoformat(),
            "csp_region": self.csp_region,
            "hubs": [{"chf": chf, "gpf": gpf} for chf, gpf in self.hubs],
        }


def location_wire(row: DeliveryLocation) -> dict[str, Any]:
    return {
        "location_id": row.location_id,
        "party": row.party,
        "name": row.name,
        "postcode": row.postcode,
        "csp_region": row.csp_region,
    }


def forecast_wire(row: HubForecast) -> dict[str, Any]:
    return {
        "party": row.party,
        "delivery_month": row.delivery_month,
        "csp_region": row.csp_region,
        "quantity": row.quantity,
        "submitted_at": _aware(row.submitted_at).isoformat(),
        "superseded": row.superseded,
    }


def delivered_hub_eui(delivery_id: int, device_type: DeviceType, number: int) -> str:
    kind = 0 if device_type is DeviceType.CHF else 1
    return format_eui(
        DELIVERED_HUB_PREFIX
        + delivery_id.to_bytes(2, "big")
        + bytes([kind])
        + number.to_bytes(2, "big")
    )


def _region(region: str) -> str:
    if region not in REGIONS:
        raise OrderingRefusal(
            "unknown-region", f"{region!r} is not a CSP region ({', '.join(REGIONS)})"
        )
    return region


def _quantity(value: Any) -> int:
    quantity = int(value)
    if quantity < 0:
        raise ValueError(f"a quantity is not negative: {quantity}")
    return quantity


class CommunicationsHubOrdering:
    """Locations, forecasts, orders and deliveries, kept in the inventory's database."""

    def __init__(
        self,
        inventory: SmartMeteringInventory,
        *,
        initial_delivery_date: date,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.inventory = inventory
        self.initial_delivery_date = initial_delivery_date
        self.first_delivery_month = DeliveryMonth.of(initial_delivery_date)
        self._clock = clock

    # --- the window rule -----------------------------------------------------------------------

    def check_window(self, delivery_month: DeliveryMonth, at: datetime) -> SubmissionWindow:
        """The window for ``delivery_month`` when a submission at ``at`` falls in it; otherwise
        ``OrderingRefusal`` naming the rule and carrying the window."""
        window = submission_window(delivery_month)
        if delivery_month < self.first_delivery_month:
            raise OrderingRefusal(
                "before-initial-delivery",
                f"delivery month {delivery_month} is before the month of the Initial Delivery "
                f"Date {self.initial_delivery_date.isoformat()}; the first delivery month is "
                f"{self.first_delivery_month}",
                window,
            )
        day = uk_date(at)
        if day < window.opens:
            raise OrderingRefusal(
                "window-not-open",
                f"submitted on {day.isoformat()}: the window for delivery month "
                f"{delivery_month} opens on {window.opens.isoformat()}",
                window,
            )
        if day > window.closes:
            raise OrderingRefusal(
                "window-closed",
                f"submitted on {day.isoformat()}: the window for delivery month "
                f"{delivery_month} closed on {window.closes.isoformat()}",
                window,
            )
        return window

    # --- delivery locations --------------------------------------------------------------------

    async def add_location(
        self, *, party: str, location_id: str, name: str, postcode: str, csp_region: str
    ) -> DeliveryLocation:
        row = DeliveryLocation(
            location_id=location_id,
            party=party.upper(),
            name=name,
            postcode=postcode.strip().upper(),
            csp_region=_region(csp_region),
            created_at=_utc(self._clock()),
        )
        async with self.inventory.sessions.begin() as session:
            if await session.get(DeliveryLocation, location_id) is not None:
                raise OrderingRefusal(
                    "duplicate-location", f"delivery location {location_id} exists already"
                )
            session.add(row)
        return row

    async def locations(self, party: str | None = None) -> list[DeliveryLocation]:
        query = select(DeliveryLocation).order_by(DeliveryLocation.location_id)
        if party is not None:
            query = query.where(DeliveryLocation.party == party.upper())
        async with self.inventory.sessions() as session:
            return list((await session.scalars(query)).all())

    # --- forecasts and orders ------------------------------------------------------------------

    async def submit_forecast(
        self,
        *,
        party: str,
        delivery_month: DeliveryMonth,
        quantities: Mapping[str, int],
        at: datetime | None = None,
    ) -> tuple[SubmissionWindow, list[HubForecast]]:
        """Record ``party``'s forecast of hubs per CSP region for ``delivery_month``; a region
        forecast before for that month has its earlier figure superseded."""
        when = _utc(at or self._clock())
        window = self.check_window(delivery_month, when)
        if not quantities:
            raise ValueError("a forecast needs a quantity for at least one CSP region")
        figures = {_region(r): _quantity(n) for r, n in quantities.items()}
        rows = [
            HubForecast(
                party=party.upper(),
                delivery_month=str(delivery_month),
                csp_region=region,
                quantity=n,
                submitted_at=when,
                superseded=False,
            )
            for region, n in sorted(figures.items())
        ]
        async with self.inventory.sessions.begin() as session:
            await session.execute(
                update(HubForecast)
                .where(
                    HubForecast.party == party.upper(),
                    HubForecast.delivery_month == str(delivery_month),
                    HubForecast.csp_region.in_(figures),
                    HubForecast.superseded.is_(False),
                )
                .values(superseded=True)
            )
            session.add_all(rows)
        return window, rows

    async def forecasts(
        self,
        *,
        party: str | None = None,
        delivery_month: DeliveryMonth | None = None,
        include_superseded: bool = False,
    ) -> list[HubForecast]:
        query = select(HubForecast).order_by(
            HubForecast.party, HubForecast.delivery_month, HubForecast.csp_region, HubForecast.id
        )
        if party is not None:
            query = query.where(HubForecast.party == party.upper())
        if delivery_month is not None:
            query = query.where(HubForecast.delivery_month == str(delivery_month))
        if not include_superseded:
            query = query.where(HubForecast.superseded.is_(False))
        async with self.inventory.sessions() as session:
            return list((await session.scalars(query)).all())

    async def submit_order(
        self,
        *,
        party: str,
        delivery_month: DeliveryMonth,
        location_id: str,
        quantity: int,
        hub_variant: str = "standard",
        at: datetime | None = None,
    ) -> tuple[SubmissionWindow, OrderSummary]:
        """Order ``quantity`` hubs for delivery to one of ``party``'s locations in
        ``delivery_month``."""
        when = _utc(at or self._clock())
        window = self.check_window(delivery_month, when)
        if _quantity(quantity) == 0:
            raise ValueError("an order is for at least one hub")
        async with self.inventory.sessions.begin() as session:
            location = await session.get(DeliveryLocation, location_id)
            if location is None or location.party != party.upper():
                raise OrderingRefusal(
                    "unknown-location",
                    f"{location_id!r} is not a delivery location of {party.upper()}",
                    window,
                )
            order = HubOrder(
                party=party.upper(),
                delivery_month=str(delivery_month),
                location_id=location_id,
                hub_variant=hub_variant,
                quantity=quantity,
                submitted_at=when,
            )
            session.add(order)
        return window, OrderSummary(order, location.csp_region, 0, 0, 0)

    # --- deliveries ----------------------------------------------------------------------------

    async def record_delivery(
        self, order_id: int, *, quantity: int | None = None, at: datetime | None = None
    ) -> Delivery:
        """Deliver ``quantity`` (default: all outstanding) hubs of an order: each hub's CHF and
        GPF enter the inventory as Pending in the location's CSP region, in one transaction."""
        when = _utc(at or self._clock())
        async with self.inventory.sessions.begin() as session:
            order = await session.get(HubOrder, order_id, with_for_update=True)
            if order is None:
                raise OrderingRefusal("unknown-order", f"there is no order {order_id}")
            location = await session.get(DeliveryLocation, order.location_id)
            assert location is not None  # an order is accepted only for a known location
            delivered = int(
                await session.scalar(
                    select(func.coalesce(func.sum(HubDelivery.quantity), 0)).where(
                        HubDelivery.order_id == order_id
                    )
                )
                or 0
            )
            outstanding = order.quantity - delivered
            count = outstanding if quantity is None else _quantity(quantity)
            if count == 0 or count > outstanding or count > MAX_HUBS_PER_DELIVERY:
                raise OrderingRefusal(
                    "over-delivery",
                    f"order {order_id} has {outstanding} of {order.quantity} hubs outstanding; "
                    f"a delivery of {count} does not fit",
                )
            delivery = HubDelivery(order_id=order_id, quantity=count, delivered_at=when)
            session.add(delivery)
            await session.flush()
            if delivery.delivery_id > 0xFFFF:
                raise OrderingRefusal("over-delivery", "delivery ids are exhausted")
            hubs: list[tuple[str, str]] = []
            reason = f"delivered for order {order_id} to {location.location_id}"
            for number in range(1, count + 1):
                chf = delivered_hub_eui(delivery.delivery_id, DeviceType.CHF, number)
                gpf = delivered_hub_eui(delivery.delivery_id, DeviceType.GPF, number)
                for eui, device_type, hub in (
                    (chf, DeviceType.CHF, None),
                    (gpf, DeviceType.GPF, chf),
                ):
                    status = str(next_status(StatusEvent.CH_DELIVERY, None, device_type))
                    session.add(
                        Device(
                            eui=eui,
                            device_type=device_type.value,
                            status=status,
                            status_since=when,
                            hub_eui=hub,
                            csp_region=location.csp_region,
                            notified_by=order.party,
                        )
                    )
                    session.add(
                        StatusChange(
                            eui=eui,
                            status=status,
                            at=when,
                            event=StatusEvent.CH_DELIVERY.value,
                            reason=reason[:200],
                        )
                    )
                session.add(
                    DeliveredHub(
                        chf_eui=chf,
                        gpf_eui=gpf,
                        delivery_id=delivery.delivery_id,
                        order_id=order_id,
                    )
                )
                hubs.append((chf, gpf))
        return Delivery(
            delivery.delivery_id, order_id, count, _aware(when), location.csp_region, tuple(hubs)
        )

    async def orders(
        self, *, party: str | None = None, delivery_month: DeliveryMonth | None = None
    ) -> list[OrderSummary]:
        """Orders with what has been delivered against them and how many of those hubs came
        back by 8.14.3 (fault) and 8.14.4 (no fault)."""
        query = (
            select(HubOrder, DeliveryLocation.csp_region)
            .join(DeliveryLocation, DeliveryLocation.location_id == HubOrder.location_id)
            .order_by(HubOrder.order_id)
        )
        if party is not None:
            query = query.where(HubOrder.party == party.upper())
        if delivery_month is not None:
            query = query.where(HubOrder.delivery_month == str(delivery_month))
        async with self.inventory.sessions() as session:
            rows = (await session.execute(query)).all()
            ids = [order.order_id for order, _ in rows]
            delivered: dict[int, int] = {}
            returns: dict[tuple[int, str], int] = {}
            if ids:
                for order_id, n in (
                    await session.execute(
                        select(HubDelivery.order_id, func.sum(HubDelivery.quantity))
                        .where(HubDelivery.order_id.in_(ids))
                        .group_by(HubDelivery.order_id)
                    )
                ).all():
                    delivered[int(order_id)] = int(n or 0)
                for order_id, event, n in (
                    await session.execute(
                        select(
                            DeliveredHub.order_id,
                            StatusChange.event,
                            func.count(func.distinct(DeliveredHub.chf_eui)),
                        )
                        .join(StatusChange, StatusChange.eui == DeliveredHub.chf_eui)
                        .where(
                            DeliveredHub.order_id.in_(ids),
                            StatusChange.event.in_(
                                (
                                    StatusEvent.CH_FAULT_RETURN.value,
                                    StatusEvent.CH_NO_FAULT_RETURN.value,
                                )
                            ),
                        )
                        .group_by(DeliveredHub.order_id, StatusChange.event)
                    )
                ).all():
                    returns[(int(order_id), str(event))] = int(n)
        return [
            OrderSummary(
                order,
                str(region),
                delivered.get(order.order_id, 0),
                returns.get((order.order_id, StatusEvent.CH_FAULT_RETURN.value), 0),
                returns.get((order.order_id, StatusEvent.CH_NO_FAULT_RETURN.value), 0),
            )
            for order, region in rows
        ]


# --- the RPC face --------------------------------------------------------------------------------


def _answered(method: Callable[..., Awaitable[Reply]]) -> Callable[..., Awaitable[Reply]]:
    """Turn a refusal or a malformed body into its reply — the one place this happens."""

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Reply:
        try:
            return await method(*args, **kwargs)
        except OrderingRefusal as exc:
            return exc.to_wire()
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            return {"code": "invalid", "reason": what}

    return wrapper


def _when(body: Body, key: str) -> datetime | None:
    value = body.get(key)
    return datetime.fromisoformat(str(value)) if value else None


def _month(body: Body, key: str = "delivery_month") -> DeliveryMonth:
    return DeliveryMonth.parse(str(body[key]))


class HubOrderingRequests:
    """The ``ch.*`` RPC methods, by name (``methods()``)."""

    def __init__(
        self, ordering: CommunicationsHubOrdering, on_change: ChangeListener | None = None
    ) -> None:
        self.ordering = ordering
        self._on_change = on_change

    def methods(self) -> dict[str, Method]:
        return {
            "ch.window": self.window,
            "ch.location.add": self.add_location,
            "ch.locations.list": self.list_locations,
            "ch.forecast.submit": self.submit_forecast,
            "ch.forecasts.list": self.list_forecasts,
            "ch.order.submit": self.submit_order,
            "ch.delivery.record": self.record_delivery,
            "ch.orders.list": self.list_orders,
        }

    @_answered
    async def window(self, body: Body) -> Reply:
        return {
            "code": "I0",
            "window": submission_window(_month(body)).to_wire(),
            "first_delivery_month": str(self.ordering.first_delivery_month),
        }

    @_answered
    async def add_location(self, body: Body) -> Reply:
        row = await self.ordering.add_location(
            party=str(body["party"]),
            location_id=str(body["location_id"]),
            name=str(body.get("name") or body["location_id"]),
            postcode=str(body["postcode"]),
            csp_region=str(body["csp_region"]),
        )
        return {"code": "I0", "location": location_wire(row)}

    @_answered
    async def list_locations(self, body: Body) -> Reply:
        party = body.get("party")
        rows = await self.ordering.locations(str(party) if party else None)
        return {"code": "I0", "locations": [location_wire(r) for r in rows]}

    @_answered
    async def submit_forecast(self, body: Body) -> Reply:
        quantities = {str(r): int(n) for r, n in dict(body["quantities"]).items()}
        window, rows = await self.ordering.submit_forecast(
            party=str(body["party"]),
            delivery_month=_month(body),
            quantities=quantities,
            at=_when(body, "submitted_at"),
        )
        return {
            "code": "I0",
            "window": window.to_wire(),
            "forecasts": [forecast_wire(r) for r in rows],
        }

    @_answered
    async def list_forecasts(self, body: Body) -> Reply:
        party = body.get("party")
        rows = await self.ordering.forecasts(
            party=str(party) if party else None,
            delivery_month=_month(body) if body.get("delivery_month") else None,
            include_superseded=bool(body.get("include_superseded")),
        )
        return {"code": "I0", "forecasts": [forecast_wire(r) for r in rows]}

    @_answered
    async def submit_order(self, body: Body) -> Reply:
        window, order = await self.ordering.submit_order(
            party=str(body["party"]),
            delivery_month=_month(body),
            location_id=str(body["location_id"]),
            quantity=int(body["quantity"]),
            hub_variant=str(body.get("hub_variant") or "standard"),
            at=_when(body, "submitted_at"),
        )
        return {"code": "I0", "window": window.to_wire(), "order": order.to_wire()}

    @_answered
    async def record_delivery(self, body: Body) -> Reply:
        quantity = body.get("quantity")
        delivery = await self.ordering.record_delivery(
            int(body["order_id"]),
            quantity=int(quantity) if quantity is not None else None,
            at=_when(body, "delivered_at"),
        )
        if self._on_change is not None:
            await self._on_change(delivery.euis)
        return {"code": "I0", "delivery": delivery.to_wire()}

    @_answered
    async def list_orders(self, body: Body) -> Reply:
        party = body.get("party")
        summaries = await self.ordering.orders(
            party=str(party) if party else None,
            delivery_month=_month(body) if body.get("delivery_month") else None,
        )
        return {"code": "I0", "orders": [s.to_wire() for s in summaries]}
