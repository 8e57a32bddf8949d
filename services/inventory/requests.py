"""The inventory's request/response methods: eligibility and the non-device Service Requests.

Each method takes a plain dict (the RPC body) and returns a plain dict (the RPC result); the User
Gateway has already checked the User Role against the SRV (E2) and the Command Variant. Every
request body carries ``user_eui`` (the sending User, DUIS form) and ``user_roles`` (its User Role
codes, e.g. ``["IS", "GS"]``). Every reply carries ``code`` — ``"I0"`` on success or the DUIS code
of the refusal — and ``reason`` when refused. Device dicts in replies use the DUIS ``Device``
element's fields in snake case (see ``inventory_device``).

``eligibility.check``  {eui, user_eui, user_roles, variant, [srv_roles], [device_types]}
    -> {code: None | "E2" | "E19" | "E11" | "E4" | "E5", device: DeviceRecord wire | None}
    ``variant`` is looked up in the SRV catalogue; ``srv_roles`` / ``device_types`` describe an
    SRV the catalogue does not hold yet.
8.2 ``inventory.read``  {user_eui, user_roles, one of: device_id | mpxn | uprn |
    postcode [+ address_identifier], [first_page=0], [max_pages=20]}
    -> {code: "I0", total, page_count, first_page, pages: [[device, ...<=17], ...] (pages
    first_page .. first_page + max_pages - 1), next_page: the index to ask for next | None,
    truncated: next_page is not None}
    By device: the device, then every device on its Communications Hub. By MPxN: the meters with
    that MPxN and everything at their premises / on their hub. By UPRN or postcode (and address
    identifier): every device at the matching premises. One page is one DUIS Response
    (DSPInventory holds at most 17 devices), in a stable order (premises, then device), so a
    caller can fetch the pages in batches. No match: I0 with no pages.
8.3 ``device.decommission``  {user_eui, user_roles, device_id}
    -> {code: "I0", devices: [{eui, status}]}; E19 / E11 (CHF, GPF) / E4 (not the device's
    registered IS or GS) / E5 (status).
8.4 ``inventory.update``  {user_eui, user_roles, device_id, one of:
    status_except_ch: "Pending" | "InstalledNotCommissioned",
    status_ch: "Commissioned" | "Withdrawn" | "InstalledNotCommissioned",
    device_details: {manufacturer?, model?, smets_chts_version?, firmware_version?, esme_variant?},
    delete_device: true,
    update_mpxn: {import_mpxn}}
    -> {code: "I0", devices: [{eui, status}]}
8.14.1-8.14.4 ``hub.status_update``  {user_eui, user_roles, variant: "8.14.1".."8.14.4",
    device_id (the CHF), [mpxn], [install_type], [fault_return_type], [no_fault_return_type],
    [other_device_id], [fault_reason]}
    -> {code: "I0", devices: [{eui, status}]} for the CHF and its GPF.
12.1 ``wan.matrix``  {user_eui, user_roles, uprn | postcode [+ address_identifier]}
    -> {code: "I0", responses: [{csp_region, csp_region_response_code: "I0",
        coverage_availability, wan_technology, connectivity_likelihood}]}
    Coverage comes from the estate: a postcode whose hubs are commissioned has coverage (High),
    one whose hubs are installed but not on the SM WAN has none (Low); a postcode the estate does
    not know is answered for the CSP regions of its postcode district (Medium), or North.
12.2 ``device.prenotify``  {user_eui, user_roles, device_id, device_manufacturer, device_model,
    device_type, [smets_chts_version], [firmware_version], [esme_variant], [gbcs_version]}
    -> {code: "I0", devices: [{eui, status: "Pending"}]}; E11 for a CHF or GPF (hubs come from
    Communications Hub deliveries), E5 when the device is already in the inventory.
``registration.set``  {mpxn, role, user_eui, [effective] (ISO 8601), [reason]}
    -> {code: "I0", affected: [eui, ...]}   (change of supplier; DCC-side, not a DUIS SRV)
``registration.history``  {mpxn} -> {code: "I0", registrations: [{mpxn, role, user_eui,
    valid_from, valid_to, reason}]}
``device.transition``  {eui, event (StatusEvent value, e.g. "8.11", "join", "8.1.1"), [reason]}
    -> {code: "I0", status} | {code, reason}
``device.history``  {eui} -> {code: "I0", history: [{status, previous, at, event, reason}]}
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, ClassVar

from dccsim.duis.catalogue import ServiceReferenceVariant, UserRole, lookup
from dccsim.duis.codes import DuisError
from dccsim.smi import (
    DeviceRecord,
    DeviceStatus,
    DeviceType,
    StatusEvent,
    check_eligibility,
)
from services.inventory.store import Device, PremisesRow, SmartMeteringInventory

READ_INVENTORY_PAGE = 17  # DSPInventory: at most 17 Device elements per Response

Body = dict[str, Any]
Reply = dict[str, Any]
Method = Callable[[Body], Awaitable[Reply]]
# Called with the EUIs whose DeviceRecord changed, so caches can drop them.
ChangeListener = Callable[[list[str]], Awaitable[None]]


def answered(method: Callable[..., Awaitable[Reply]]) -> Callable[..., Awaitable[Reply]]:
    """Turn a ``DuisError`` into the reply ``{code, reason}`` — the one place this happens."""

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Reply:
        try:
            return await method(*args, **kwargs)
        except DuisError as exc:
            return {"code": exc.code, "reason": exc.reason}

    return wrapper


def _roles(body: Body) -> frozenset[UserRole]:
    return frozenset(UserRole(r) for r in body.get("user_roles") or ())


def _user(body: Body) -> str:
    return str(body.get("user_eui") or "").upper()


def inventory_device(row: Device, premises: PremisesRow | None) -> dict[str, Any]:
    """A device as the DUIS ``Device`` element of a DSPInventory, in snake case."""
    return {
        "device_id": row.eui,
        "device_type": row.device_type,
        "device_status": row.status,
        "device_manufacturer": row.manufacturer,
        "device_model": row.model,
        "smets_chts_version": row.smets_chts_version,
        "device_firmware_version": row.firmware_version,
        "date_commissioned": row.commissioned_at.date().isoformat()
        if row.commissioned_at
        else None,
        "import_mpxn": row.mpxn,
        "esme_variant": row.esme_variant,
        "uprn": premises.uprn if premises else None,
        "postcode": premises.postcode if premises else row.postcode,
        "address_identifier": premises.address if premises else None,
        "csp_region": row.csp_region,
        "device_gbcs_version": row.gbcs_version,
    }


class InventoryRequests:
    """The RPC methods of the inventory, by name (``methods()``)."""

    def __init__(
        self, inventory: SmartMeteringInventory, on_change: ChangeListener | None = None
    ) -> None:
        self.inventory = inventory
        self._on_change = on_change

    def methods(self) -> dict[str, Method]:
        return {
            "eligibility.check": self.eligibility_check,
            "inventory.read": self.read_inventory,
            "device.decommission": self.decommission,
            "inventory.update": self.update_inventory,
            "hub.status_update": self.hub_status_update,
            "wan.matrix": self.wan_matrix,
            "device.prenotify": self.prenotify,
            "registration.set": self.set_registration,
            "registration.history": self.registration_history,
            "device.transition": self.device_transition,
            "device.history": self.device_history,
        }

    async def _changed(self, euis: list[str]) -> None:
        if self._on_change is not None and euis:
            await self._on_change(sorted(set(euis)))

    async def _record(self, eui: str) -> DeviceRecord:
        record = await self.inventory.device(eui)
        if record is None:
            raise DuisError("E19", f"device {eui.upper()} is not in the inventory")
        return record

    async def _authorise(
        self, record: DeviceRecord, body: Body, roles: frozenset[UserRole] | None = None
    ) -> None:
        """E4 unless the User holds one of ``roles`` (default: any role) for the device. A device
        with no registrations yet (pre-notified, delivered) is open to the User that notified it,
        or to any User when nobody did."""
        user = _user(body)
        held = _roles(body) if roles is None else _roles(body) & roles
        if record.registrations:
            if any(record.registrations.get(r.value, "").upper() == user for r in held):
                return
            raise DuisError("E4", f"the User is not registered for device {record.eui}")
        row = await self.inventory.device_row(record.eui)
        if row is not None and row.notified_by not in (None, user):
            raise DuisError("E4", f"device {record.eui} was notified by another User")

    # --- eligibility ---------------------------------------------------------------------------

    @answered
    async def eligibility_check(self, body: Body) -> Reply:
        variant = str(body["variant"])
        srv = lookup(variant)
        if srv is None or "srv_roles" in body:
            srv = ServiceReferenceVariant(
                variant=variant,
                reference=variant.rsplit(".", 1)[0] if variant.count(".") == 2 else variant,
                name=srv.name if srv else variant,
                roles=frozenset(UserRole(r) for r in body.get("srv_roles") or ()),
                critical=False,
                non_device=False,
                device_types=frozenset(
                    body.get("device_types") or (srv.device_types if srv else DeviceType)
                ),
                body_element=srv.body_element if srv else "",
            )
        record = await self.inventory.device(str(body["eui"]))
        code = check_eligibility(srv, user_eui=_user(body), user_roles=_roles(body), device=record)
        return {"code": code, "device": record.to_wire() if record else None}

    # --- 8.2 Read Inventory --------------------------------------------------------------------

    @answered
    async def read_inventory(self, body: Body) -> Reply:
        filters = [k for k in ("device_id", "mpxn", "uprn", "postcode") if body.get(k)]
        if len(filters) != 1:
            raise DuisError("E13", "8.2 needs exactly one of DeviceID, MPxN, UPRN, PropertyFilter")
        rows = await self.inventory.premises_devices(
            device_id=body.get("device_id"),
            mpxn=body.get("mpxn"),
            uprn=body.get("uprn"),
            postcode=body.get("postcode"),
            address=body.get("address_identifier"),
        )
        premises = await self.inventory.premises_by_id(r.premises_id for r in rows if r.premises_id)
        devices = [inventory_device(r, premises.get(r.premises_id or "")) for r in rows]
        pages = [
            devices[i : i + READ_INVENTORY_PAGE]
            for i in range(0, len(devices), READ_INVENTORY_PAGE)
        ]
        first = int(body.get("first_page", 0))
        max_pages = int(body.get("max_pages", 20))
        if first < 0 or max_pages < 1:
            raise DuisError("E13", "first_page >= 0 and max_pages >= 1")
        served = pages[first : first + max_pages]
        more = first + len(served) < len(pages)
        return {
            "code": "I0",
            "total": len(devices),
            "page_count": len(pages),
            "first_page": first,
            "pages": served,
            "next_page": first + len(served) if more else None,
            "truncated": more,
        }

    # --- 8.3 Decommission Device ---------------------------------------------------------------

    @answered
    async def decommission(self, body: Body) -> Reply:
        record = await self._record(str(body["device_id"]))
        await self._authorise(
            record, body, frozenset({UserRole.IMPORT_SUPPLIER, UserRole.GAS_SUPPLIER})
        )
        status = await self.inventory.transition(
            record.eui, StatusEvent.DECOMMISSION, reason=f"8.3 by {_user(body)}"
        )
        await self._changed([record.eui])
        return {"code": "I0", "devices": [{"eui": record.eui, "status": status.value}]}

    # --- 8.4 Update Inventory ------------------------------------------------------------------

    _STATUS_EXCEPT_CH: ClassVar[dict[str, StatusEvent]] = {
        DeviceStatus.PENDING.value: StatusEvent.SET_PENDING,
        DeviceStatus.INSTALLED_NOT_COMMISSIONED.value: StatusEvent.SET_INSTALLED,
    }
    _STATUS_CH: ClassVar[dict[str, StatusEvent]] = {
        DeviceStatus.COMMISSIONED.value: StatusEvent.CH_SET_COMMISSIONED,
        DeviceStatus.WITHDRAWN.value: StatusEvent.CH_SET_WITHDRAWN,
        DeviceStatus.INSTALLED_NOT_COMMISSIONED.value: StatusEvent.CH_SET_INSTALLED,
    }
    _DETAILS = ("manufacturer", "model", "smets_chts_version", "firmware_version", "esme_variant")

    @answered
    async def update_inventory(self, body: Body) -> Reply:
        record = await self._record(str(body["device_id"]))
        await self._authorise(record, body)
        eui = record.eui
        reason = f"8.4 by {_user(body)}"
        if "status_except_ch" in body or "status_ch" in body:
            table = self._STATUS_EXCEPT_CH if "status_except_ch" in body else self._STATUS_CH
            wanted = str(body.get("status_except_ch") or body.get("status_ch"))
            if wanted not in table:
                raise DuisError("E13", f"8.4 cannot set status {wanted}")
            status = await self.inventory.transition(eui, table[wanted], reason=reason)
            await self._changed([eui])
            return {"code": "I0", "devices": [{"eui": eui, "status": status.value}]}
        if "device_details" in body:
            details = {k: v for k, v in dict(body["device_details"]).items() if k in self._DETAILS}
            if "esme_variant" in details and record.device_type is not DeviceType.ESME:
                raise DuisError("E11", "ESMEVariant applies to an ESME only")
            await self.inventory.update_device(eui, **details)
        elif body.get("delete_device"):
            await self.inventory.delete_device(eui, reason=reason)
            await self._changed([eui, *(([record.hub_eui]) if record.hub_eui else [])])
            return {"code": "I0", "devices": [{"eui": eui, "status": None}]}
        elif "update_mpxn" in body:
            if record.device_type not in (DeviceType.ESME, DeviceType.GSME):
                raise DuisError("E11", "an MPxN belongs to a meter")
            mpxn = str(dict(body["update_mpxn"]).get("import_mpxn") or "")
            if not mpxn:
                raise DuisError("E13", "UpdateMPxN needs ImportMPxN")
            await self.inventory.update_device(eui, mpxn=mpxn)
        else:
            raise DuisError("E13", "8.4 needs one update")
        hub = [record.hub_eui] if record.hub_eui else []
        await self._changed([eui, *hub, *record.devices])
        return {"code": "I0", "devices": [{"eui": eui, "status": record.status.value}]}

    # --- 8.14 Communications Hub Status Update -------------------------------------------------

    _HUB_EVENTS: ClassVar[dict[str, tuple[StatusEvent, StatusEvent]]] = {
        "8.14.1": (StatusEvent.CH_INSTALL_SM_WAN, StatusEvent.JOIN),
        "8.14.2": (StatusEvent.CH_INSTALL_NO_SM_WAN, StatusEvent.JOIN),
        "8.14.3": (StatusEvent.CH_FAULT_RETURN, StatusEvent.CH_FAULT_RETURN),
        "8.14.4": (StatusEvent.CH_NO_FAULT_RETURN, StatusEvent.CH_NO_FAULT_RETURN),
    }

    @answered
    async def hub_status_update(self, body: Body) -> Reply:
        variant = str(body.get("variant", ""))
        if variant not in self._HUB_EVENTS:
            raise DuisError("E13", f"{variant!r} is not 8.14.1-8.14.4")
        record = await self._record(str(body["device_id"]))
        if record.device_type is not DeviceType.CHF:
            raise DuisError("E11", f"{variant} is sent for a Communications Hub Function")
        await self._authorise(
            record, body, frozenset({UserRole.IMPORT_SUPPLIER, UserRole.GAS_SUPPLIER})
        )
        chf_event, gpf_event = self._HUB_EVENTS[variant]
        gpfs = [
            d.eui for d in await self.inventory.hub_devices(record.eui) if d.device_type == "GPF"
        ]
        changes = [(record.eui, chf_event), *((g, gpf_event) for g in gpfs)]
        statuses = await self.inventory.transition_many(
            changes, reason=f"{variant} by {_user(body)}"
        )
        if variant in ("8.14.1", "8.14.2") and body.get("mpxn"):
            premises = await self.inventory.mpxn_premises(str(body["mpxn"]))
            if premises is not None:
                for eui in statuses:
                    await self.inventory.update_device(
                        eui,
                        premises_id=premises.premises_id,
                        postcode=premises.postcode,
                        csp_region=premises.csp_region,
                    )
        await self._changed([*statuses, *record.devices])
        return {
            "code": "I0",
            "devices": [{"eui": e, "status": s.value} for e, s in statuses.items()],
        }

    # --- 12.1 Request WAN Matrix ---------------------------------------------------------------

    @answered
    async def wan_matrix(self, body: Body) -> Reply:
        if body.get("uprn"):
            premises = await self.inventory.premises(uprn=str(body["uprn"]))
        elif body.get("postcode"):
            premises = await self.inventory.premises(postcode=str(body["postcode"]))
        else:
            raise DuisError("E13", "12.1 needs a UPRN or a PartialAddress")
        counts = await self.inventory.hub_status_counts([p.premises_id for p in premises])
        responses = []
        for region in sorted({p.csp_region for p in premises}):
            statuses = counts.get(region, {})
            on_wan = statuses.get(DeviceStatus.COMMISSIONED.value, 0)
            responses.append(_coverage(region, covered=on_wan > 0 or not statuses, known=True))
        if not responses:
            regions = await self.inventory.regions_near(str(body.get("postcode") or ""))
            responses = [_coverage(r, covered=True, known=False) for r in regions or ["North"]]
        return {"code": "I0", "responses": responses}

    # --- 12.2 Device Pre-notification ----------------------------------------------------------

    @answered
    async def prenotify(self, body: Body) -> Reply:
        try:
            device_type = DeviceType(str(body["device_type"]))
        except ValueError:
            raise DuisError("E13", f"unknown device type {body.get('device_type')!r}") from None
        eui = str(body["device_id"]).upper()
        status = await self.inventory.add_device(
            eui,
            device_type,
            StatusEvent.PRE_NOTIFICATION,
            reason=f"12.2 by {_user(body)}",
            manufacturer=body.get("device_manufacturer"),
            model=body.get("device_model"),
            smets_chts_version=body.get("smets_chts_version"),
            firmware_version=body.get("firmware_version"),
            esme_variant=body.get("esme_variant"),
            gbcs_version=body.get("gbcs_version"),
            notified_by=_user(body) or None,
        )
        await self._changed([eui])
        return {"code": "I0", "devices": [{"eui": eui, "status": status.value}]}

    # --- registration data and the lifecycle, DCC side -----------------------------------------

    @answered
    async def set_registration(self, body: Body) -> Reply:
        effective = body.get("effective")
        affected = await self.inventory.register(
            str(body["mpxn"]),
            str(body["role"]),
            str(body["user_eui"]),
            effective=datetime.fromisoformat(effective) if effective else None,
            reason=str(body.get("reason") or "registration"),
        )
        await self._changed(affected)
        return {"code": "I0", "affected": affected}

    @answered
    async def registration_history(self, body: Body) -> Reply:
        history = await self.inventory.registration_history(str(body["mpxn"]))
        return {"code": "I0", "registrations": [r.to_wire() for r in history]}

    @answered
    async def device_transition(self, body: Body) -> Reply:
        try:
            event = StatusEvent(str(body["event"]))
        except ValueError:
            raise DuisError("E13", f"unknown status event {body.get('event')!r}") from None
        eui = str(body["eui"]).upper()
        status = await self.inventory.transition(
            eui, event, reason=str(body.get("reason") or event.value)
        )
        await self._changed([eui])
        return {"code": "I0", "status": status.value}

    @answered
    async def device_history(self, body: Body) -> Reply:
        history = await self.inventory.status_history(str(body["eui"]))
        if not history:
            raise DuisError("E19", f"device {body['eui']} has no history in the inventory")
        return {"code": "I0", "history": [h.to_wire() for h in history]}


def _coverage(region: str, *, covered: bool, known: bool) -> dict[str, Any]:
    return {
        "csp_region": region,
        "csp_region_response_code": "I0",
        "coverage_availability": covered,
        # North is served by long-range radio, Central and South by cellular.
        "wan_technology": "Long Range Radio" if region == "North" else "Cellular",
        "connectivity_likelihood": ("High" if covered else "Low") if known else "Medium",
    }
