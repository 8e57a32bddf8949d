"""Communications Hub ordering: the submission window across year ends and on its boundary days,
locations, forecasts, orders, deliveries into the inventory and returns — on SQLite and
PostgreSQL (the ``inventory`` fixture of the inventory suite)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from dccsim.seed import supplier_eui
from dccsim.smi import DeviceStatus, DeviceType
from services.inventory.ch_orders import (
    CommunicationsHubOrdering,
    DeliveryMonth,
    HubOrderingRequests,
    OrderingRefusal,
    submission_window,
)
from services.inventory.requests import InventoryRequests
from services.inventory.store import SmartMeteringInventory
from tests.unit.test_inventory_store import inventory, pg_database  # noqa: F401

S1, S2 = supplier_eui(0), supplier_eui(1)
INITIAL_DELIVERY = date(2027, 1, 1)
NOV_2027 = DeliveryMonth(2027, 11)


def noon(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T12:00:00+00:00")


def ordering_of(store: SmartMeteringInventory) -> CommunicationsHubOrdering:
    return CommunicationsHubOrdering(
        store,
        initial_delivery_date=INITIAL_DELIVERY,
        clock=lambda: noon("2026-12-15"),
    )


@pytest.fixture
async def ordering(
    inventory: SmartMeteringInventory,  # noqa: F811
) -> CommunicationsHubOrdering:
    ordering = ordering_of(inventory)
    await ordering.add_location(
        party=S1, location_id="DEPOT-N", name="North depot", postcode="eh1 1aa", csp_region="North"
    )
    return ordering


# --- the window rule, pure -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delivery", "opens", "closes"),
    [
        ("2027-11", "2026-12-01", "2026-12-31"),  # the consultation's example, across a year end
        ("2027-12", "2027-01-01", "2027-01-31"),  # window in January
        ("2028-01", "2027-02-01", "2027-02-28"),  # delivery in January, window in February
        ("2029-01", "2028-02-01", "2028-02-29"),  # a leap February
        ("2027-01", "2026-02-01", "2026-02-28"),  # the first delivery month
    ],
)
def test_window_is_the_month_that_ends_ten_months_before_delivery(
    delivery: str, opens: str, closes: str
) -> None:
    window = submission_window(DeliveryMonth.parse(delivery))
    assert (window.opens.isoformat(), window.closes.isoformat()) == (opens, closes)
    # The window month's end plus ten months is the start of the delivery month.
    end = DeliveryMonth.of(window.closes).shift(1).shift(10)
    assert str(end) == delivery


@pytest.mark.parametrize("text", ["2027-13", "2027-00", "2027-1", "Nov 2027", ""])
def test_delivery_month_is_yyyy_mm(text: str) -> None:
    with pytest.raises(ValueError):
        DeliveryMonth.parse(text)


# --- the window rule, on the database --------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "rule"),
    [
        ("2026-11-30", "window-not-open"),  # the day before the window
        ("2026-12-01", None),  # first day of the window month
        ("2026-12-31", None),  # last day, the year's last
        ("2027-01-01", "window-closed"),  # the day after, in the next year
    ],
)
async def test_forecast_for_november_2027_in_december_2026_only(
    ordering: CommunicationsHubOrdering, day: str, rule: str | None
) -> None:
    if rule is None:
        window, rows = await ordering.submit_forecast(
            party=S1, delivery_month=NOV_2027, quantities={"North": 10}, at=noon(day)
        )
        assert window.opens == date(2026, 12, 1)
        assert [(r.delivery_month, r.csp_region, r.quantity) for r in rows] == [
            ("2027-11", "North", 10)
        ]
        assert len(await ordering.forecasts(party=S1)) == 1
        return
    with pytest.raises(OrderingRefusal) as refused:
        await ordering.submit_forecast(
            party=S1, delivery_month=NOV_2027, quantities={"North": 10}, at=noon(day)
        )
    assert refused.value.rule == rule
    assert refused.value.to_wire()["window"] == {
        "delivery_month": "2027-11",
        "opens": "2026-12-01",
        "closes": "2026-12-31",
    }
    assert await ordering.forecasts(party=S1) == []


@pytest.mark.parametrize(
    ("day", "accepted"),
    [("2026-11-30", False), ("2026-12-01", True), ("2026-12-31", True), ("2027-01-01", False)],
)
async def test_order_follows_the_same_window(
    ordering: CommunicationsHubOrdering, day: str, accepted: bool
) -> None:
    submit = ordering.submit_order(
        party=S1, delivery_month=NOV_2027, location_id="DEPOT-N", quantity=5, at=noon(day)
    )
    if accepted:
        _window, order = await submit
        assert (order.order.delivery_month, order.csp_region, order.outstanding) == (
            "2027-11",
            "North",
            5,
        )
    else:
        with pytest.raises(OrderingRefusal, match="window for delivery month 2027-11"):
            await submit
        assert await ordering.orders() == []


@pytest.mark.parametrize(
    ("instant", "accepted"),
    [
        ("2027-05-31T23:30:00+00:00", True),  # 00:30 BST on 1 June: inside June's window
        ("2027-06-30T22:59:00+00:00", True),  # 23:59 BST on 30 June
        ("2027-06-30T23:30:00+00:00", False),  # 00:30 BST on 1 July: closed
    ],
)
async def test_window_days_are_uk_local_days(
    ordering: CommunicationsHubOrdering, instant: str, accepted: bool
) -> None:
    may_2028 = DeliveryMonth(2028, 5)  # window June 2027, in British Summer Time
    submit = ordering.submit_forecast(
        party=S1,
        delivery_month=may_2028,
        quantities={"South": 1},
        at=datetime.fromisoformat(instant),
    )
    if accepted:
        await submit
    else:
        with pytest.raises(OrderingRefusal) as refused:
            await submit
        assert refused.value.rule == "window-closed"
        assert "submitted on 2027-07-01" in refused.value.reason


async def test_first_forecast_obeys_the_same_window(ordering: CommunicationsHubOrdering) -> None:
    first = DeliveryMonth.of(INITIAL_DELIVERY)
    with pytest.raises(OrderingRefusal) as refused:
        await ordering.submit_forecast(
            party=S1, delivery_month=first, quantities={"North": 1}, at=noon("2026-01-31")
        )
    assert refused.value.rule == "window-not-open"
    await ordering.submit_forecast(
        party=S1, delivery_month=first, quantities={"North": 1}, at=noon("2026-02-28")
    )


async def test_month_before_the_initial_delivery_date_is_refused_with_its_window(
    ordering: CommunicationsHubOrdering,
) -> None:
    with pytest.raises(OrderingRefusal) as refused:
        await ordering.submit_forecast(
            party=S1,
            delivery_month=DeliveryMonth(2026, 12),
            quantities={"North": 1},
            at=noon("2026-01-15"),  # inside that month's window
        )
    wire = refused.value.to_wire()
    assert wire["rule"] == "before-initial-delivery"
    assert "first delivery month is 2027-01" in wire["reason"]
    assert wire["window"]["opens"] == "2026-01-01"


async def test_a_later_forecast_supersedes_the_figure_for_its_region(
    ordering: CommunicationsHubOrdering,
) -> None:
    for north, at in ((10, "2026-12-01"), (12, "2026-12-20")):
        await ordering.submit_forecast(
            party=S1,
            delivery_month=NOV_2027,
            quantities={"North": north, "Central": 3} if north == 10 else {"North": north},
            at=noon(at),
        )
    current = {r.csp_region: r.quantity for r in await ordering.forecasts(party=S1)}
    assert current == {"Central": 3, "North": 12}
    assert len(await ordering.forecasts(party=S1, include_superseded=True)) == 3


async def test_forecast_for_an_unknown_region_is_refused(
    ordering: CommunicationsHubOrdering,
) -> None:
    with pytest.raises(OrderingRefusal, match="not a CSP region"):
        await ordering.submit_forecast(party=S1, delivery_month=NOV_2027, quantities={"East": 1})


async def test_order_for_another_partys_location_is_refused(
    ordering: CommunicationsHubOrdering,
) -> None:
    with pytest.raises(OrderingRefusal) as refused:
        await ordering.submit_order(
            party=S2, delivery_month=NOV_2027, location_id="DEPOT-N", quantity=1
        )
    assert refused.value.rule == "unknown-location"


# --- deliveries and returns ------------------------------------------------------------------


async def test_delivery_creates_pending_hubs_in_the_locations_region(
    ordering: CommunicationsHubOrdering,
) -> None:
    _w, order = await ordering.submit_order(
        party=S1, delivery_month=NOV_2027, location_id="DEPOT-N", quantity=3
    )
    delivery = await ordering.record_delivery(order.order.order_id, quantity=2)
    assert delivery.quantity == 2 and len(set(delivery.euis)) == 4
    chf, gpf = delivery.hubs[0]
    hub = await ordering.inventory.device(chf)
    function = await ordering.inventory.device(gpf)
    assert hub is not None and function is not None
    assert (hub.device_type, hub.status, hub.csp_region) == (
        DeviceType.CHF,
        DeviceStatus.PENDING,
        "North",
    )
    assert (function.device_type, function.status, function.hub_eui) == (
        DeviceType.GPF,
        DeviceStatus.PENDING,
        chf,
    )
    assert [h.event for h in await ordering.inventory.status_history(chf)] == ["ch-delivery"]
    [summary] = await ordering.orders(party=S1)
    assert (summary.delivered, summary.outstanding) == (2, 1)


async def test_delivery_beyond_the_order_is_refused(ordering: CommunicationsHubOrdering) -> None:
    _w, order = await ordering.submit_order(
        party=S1, delivery_month=NOV_2027, location_id="DEPOT-N", quantity=2
    )
    await ordering.record_delivery(order.order.order_id)
    with pytest.raises(OrderingRefusal) as refused:
        await ordering.record_delivery(order.order.order_id, quantity=1)
    assert refused.value.rule == "over-delivery"
    assert await ordering.inventory.count() == 4


async def test_returns_close_the_delivered_hubs_life_and_are_counted(
    ordering: CommunicationsHubOrdering,
) -> None:
    _w, order = await ordering.submit_order(
        party=S1, delivery_month=NOV_2027, location_id="DEPOT-N", quantity=3
    )
    delivery = await ordering.record_delivery(order.order.order_id)
    duis = InventoryRequests(ordering.inventory)
    (fault_chf, fault_gpf), (ok_chf, _), (installed_chf, _) = delivery.hubs
    user = {"user_eui": S1, "user_roles": ["IS", "GS"]}
    fault = await duis.hub_status_update({**user, "variant": "8.14.3", "device_id": fault_chf})
    assert fault["devices"] == [
        {"eui": fault_chf, "status": "Withdrawn"},
        {"eui": fault_gpf, "status": "Withdrawn"},
    ]
    no_fault = await duis.hub_status_update({**user, "variant": "8.14.4", "device_id": ok_chf})
    assert no_fault["code"] == "I0"
    other = await duis.hub_status_update(
        {"user_eui": S2, "user_roles": ["IS"], "variant": "8.14.1", "device_id": installed_chf}
    )
    assert other["code"] == "E4"  # hubs are the ordering Party's until registered
    [summary] = await ordering.orders()
    assert (summary.returned_fault, summary.returned_no_fault) == (1, 1)


# --- the RPC face ----------------------------------------------------------------------------


async def test_rpc_refusal_names_the_rule_and_the_window(
    ordering: CommunicationsHubOrdering,
) -> None:
    rpc = HubOrderingRequests(ordering).methods()
    reply = await rpc["ch.forecast.submit"](
        {
            "party": S1,
            "delivery_month": "2027-11",
            "quantities": {"North": 4},
            "submitted_at": "2027-01-01T09:00:00+00:00",
        }
    )
    assert reply == {
        "code": "refused",
        "rule": "window-closed",
        "reason": "submitted on 2027-01-01: the window for delivery month 2027-11 closed on "
        "2026-12-31",
        "window": {"delivery_month": "2027-11", "opens": "2026-12-01", "closes": "2026-12-31"},
    }


async def test_rpc_order_to_delivery_round_trip(ordering: CommunicationsHubOrdering) -> None:
    changed: list[str] = []

    async def on_change(euis: list[str]) -> None:
        changed.extend(euis)

    rpc = HubOrderingRequests(ordering, on_change=on_change).methods()
    assert (await rpc["ch.window"]({"delivery_month": "2027-11"}))["first_delivery_month"] == (
        "2027-01"
    )
    placed = await rpc["ch.order.submit"](
        {"party": S1, "delivery_month": "2027-11", "location_id": "DEPOT-N", "quantity": 2}
    )
    assert placed["code"] == "I0" and placed["order"]["outstanding"] == 2
    delivered = await rpc["ch.delivery.record"]({"order_id": placed["order"]["order_id"]})
    assert delivered["delivery"]["csp_region"] == "North"
    assert len(changed) == 4
    listed = await rpc["ch.orders.list"]({"party": S1, "delivery_month": "2027-11"})
    assert [(o["delivered"], o["outstanding"]) for o in listed["orders"]] == [(2, 0)]
    locations = await rpc["ch.locations.list"]({"party": S1.lower()})
    assert [loc["postcode"] for loc in locations["locations"]] == ["EH1 1AA"]


async def test_rpc_malformed_month_is_invalid(ordering: CommunicationsHubOrdering) -> None:
    rpc = HubOrderingRequests(ordering).methods()
    reply = await rpc["ch.forecast.submit"](
        {"party": S1, "delivery_month": "11/2027", "quantities": {"North": 1}}
    )
    assert reply["code"] == "invalid"


async def test_submission_time_defaults_to_the_clock(ordering: CommunicationsHubOrdering) -> None:
    # The fixture's clock says 15 December 2026: inside November 2027's window.
    _window, rows = await ordering.submit_forecast(
        party=S1, delivery_month=NOV_2027, quantities={"North": 1}
    )
    assert rows[0].submitted_at == datetime(2026, 12, 15, 12, tzinfo=UTC)
