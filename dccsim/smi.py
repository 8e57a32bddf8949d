"""The Smart Metering Inventory's vocabulary and the eligibility rule every request passes.

Pure: a ``DeviceRecord`` (what the inventory knows of a device) and the User's identity in, the
DUIS code of the first failed check out. services/inventory stores the records;
services/user_gateway caches them and calls ``check_eligibility`` on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from dccsim.duis.catalogue import ServiceReferenceVariant, UserRole
from dccsim.duis.codes import DuisError


class DeviceType(StrEnum):
    ESME = "ESME"
    GSME = "GSME"
    GPF = "GPF"
    CHF = "CHF"
    HCALCS = "HCALCS"
    PPMID = "PPMID"
    IHD = "IHD"
    CAD = "CAD"


class DeviceStatus(StrEnum):
    PENDING = "Pending"
    WHITELISTED = "Whitelisted"
    INSTALLED_NOT_COMMISSIONED = "InstalledNotCommissioned"
    COMMISSIONED = "Commissioned"
    DECOMMISSIONED = "Decommissioned"
    WITHDRAWN = "Withdrawn"
    SUSPENDED = "Suspended"
    RECOVERY = "Recovery"
    RECOVERED = "Recovered"


# Statuses in which a device accepts ordinary device Service Requests.
OPERATIONAL = frozenset({DeviceStatus.COMMISSIONED, DeviceStatus.INSTALLED_NOT_COMMISSIONED})


@dataclass(frozen=True)
class DeviceRecord:
    """What the inventory knows of one device, as the User Gateway caches it.

    The wire form (``to_wire``/``from_wire``) only ever gains keys: a reader ignores keys it does
    not know and defaults those an older writer did not send.
    """

    eui: str  # DUIS form, upper case, '-' separated
    device_type: DeviceType
    status: DeviceStatus
    hub_eui: str | None = None
    csp_region: str = "North"
    mpxn: str | None = None
    # role -> EUI of the User registered in that role for this device (for a meter, its MPxN's
    # registrations; for a hub, GPF or Type 2 device, those of the meters it serves)
    registrations: dict[str, str] = field(default_factory=dict)
    manufacturer: str | None = None  # 4 hex digits, DUIS DeviceManufacturer
    model: str | None = None  # DUIS DeviceModel
    firmware_version: str | None = None  # 8 hex digits
    gbcs_version: str | None = None  # e.g. "3.2"
    smets_chts_version: str | None = None  # e.g. "SMETS V5.0"
    status_since: str | None = None  # ISO 8601 UTC start of the current status
    gpf_eui: str | None = None  # GSME -> its GPF; GPF -> None
    gsme_eui: str | None = None  # GPF -> the GSME it proxies
    meter_eui: str | None = None  # Type 2 device (IHD, PPMID, CAD, HCALCS) -> its meter
    devices: tuple[str, ...] = ()  # CHF -> every device on its HAN
    premises_id: str | None = None
    uprn: str | None = None
    postcode: str | None = None
    gateway: str | None = None  # the gateway emulator instance hosting the device's hub

    def to_wire(self) -> dict[str, Any]:
        return {
            "eui": self.eui,
            "device_type": self.device_type.value,
            "status": self.status.value,
            "hub_eui": self.hub_eui,
            "csp_region": self.csp_region,
            "mpxn": self.mpxn,
            "registrations": dict(self.registrations),
            "manufacturer": self.manufacturer,
            "model": self.model,
            "firmware_version": self.firmware_version,
            "gbcs_version": self.gbcs_version,
            "smets_chts_version": self.smets_chts_version,
            "status_since": self.status_since,
            "gpf_eui": self.gpf_eui,
            "gsme_eui": self.gsme_eui,
            "meter_eui": self.meter_eui,
            "devices": list(self.devices),
            "premises_id": self.premises_id,
            "uprn": self.uprn,
            "postcode": self.postcode,
            "gateway": self.gateway,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> DeviceRecord:
        def opt(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        return cls(
            eui=str(data["eui"]),
            device_type=DeviceType(data["device_type"]),
            status=DeviceStatus(data["status"]),
            hub_eui=data.get("hub_eui"),
            csp_region=str(data.get("csp_region") or "North"),
            mpxn=data.get("mpxn"),
            registrations={str(k): str(v) for k, v in (data.get("registrations") or {}).items()},
            manufacturer=opt("manufacturer"),
            model=opt("model"),
            firmware_version=opt("firmware_version"),
            gbcs_version=opt("gbcs_version"),
            smets_chts_version=opt("smets_chts_version"),
            status_since=opt("status_since"),
            gpf_eui=opt("gpf_eui"),
            gsme_eui=opt("gsme_eui"),
            meter_eui=opt("meter_eui"),
            devices=tuple(str(e) for e in (data.get("devices") or ())),
            premises_id=opt("premises_id"),
            uprn=opt("uprn"),
            postcode=opt("postcode"),
            gateway=opt("gateway"),
        )


def check_eligibility(
    srv: ServiceReferenceVariant,
    *,
    user_eui: str,
    user_roles: frozenset[UserRole],
    device: DeviceRecord | None,
) -> str | None:
    """The DUIS code of the first failed check, or None when the request may go ahead.

    Order as DESIGN.md: role may use the SRV (E2) -> device exists (E19) -> SRV fits the device
    type (E11) -> the User holds an eligible role for this device (E4) -> status allows it (E5).
    """
    if not (srv.roles & user_roles):
        return "E2"
    if device is None:
        return "E19"
    if device.device_type.value not in srv.device_types:
        return "E11"
    held = {
        role
        for role in srv.roles & user_roles
        if device.registrations.get(role.value, "").upper() == user_eui.upper()
    }
    if not held:
        return "E4"
    if device.status not in OPERATIONAL:
        return "E5"
    return None


# --- The SMI status lifecycle -------------------------------------------------------------------


class StatusEvent(StrEnum):
    """What moves a device from one SMI status to another: an SRV, an alert or a DCC action."""

    PRE_NOTIFICATION = "12.2"  # Device Pre-notification: the device enters the inventory
    CH_DELIVERY = "ch-delivery"  # a delivered Communications Hub (CHF and GPF) enters it
    WHITELIST = "8.11"  # Update HAN Device Log: the device is on a hub's whitelist
    JOIN = "join"  # the device joined the HAN (CS03 / 8.7 outcome, or the hub's join alert)
    COMMISSION = "8.1.1"  # Commission Device
    DECOMMISSION = "8.3"  # Decommission Device
    SET_PENDING = "8.4-pending"  # Update Inventory, UpdateDeviceStatusExceptCH = Pending
    SET_INSTALLED = "8.4-installed"  # ... UpdateDeviceStatusExceptCH = InstalledNotCommissioned
    CH_SET_COMMISSIONED = "8.4-ch-commissioned"  # UpdateDeviceStatusCH = Commissioned
    CH_SET_INSTALLED = "8.4-ch-installed"  # UpdateDeviceStatusCH = InstalledNotCommissioned
    CH_SET_WITHDRAWN = "8.4-ch-withdrawn"  # UpdateDeviceStatusCH = Withdrawn
    CH_INSTALL_SM_WAN = "8.14.1"  # hub installed, SM WAN available
    CH_INSTALL_NO_SM_WAN = "8.14.2"  # hub installed, no SM WAN
    CH_FAULT_RETURN = "8.14.3"
    CH_NO_FAULT_RETURN = "8.14.4"
    OPT_OUT = "8.5"  # Service Opt Out: the DCC stops serving the device
    OPT_IN = "8.6"  # Service Opt In
    SUSPEND = "suspend"  # the device's model/firmware left the Certified Products List
    REINSTATE = "reinstate"  # back on the CPL: the status held before the suspension
    RECOVERY = "recovery"  # SMKI recovery of the device's credentials started
    RECOVERED = "recovered"  # ... and completed
    RECOMMISSION = "recommission"  # a Recovered device back in service


S = DeviceStatus
# The status a device held before its suspension; the store resolves it from the history.
PREVIOUS_STATUS = "previous"
Target = DeviceStatus | str
_IN_SERVICE = (S.PENDING, S.WHITELISTED, S.INSTALLED_NOT_COMMISSIONED, S.COMMISSIONED)
_HUB = frozenset({DeviceType.CHF, DeviceType.GPF})
_NOT_HUB = frozenset(DeviceType) - {DeviceType.CHF}

# event -> {status before (None: the device is not yet in the inventory) -> status after}.
# Data, not code: a pair that is not here is an illegal transition (E5, or E19 when the device is
# absent). Where DUIS leaves a choice open this is dccsim's model, documented in one place.
TRANSITIONS: dict[StatusEvent, dict[DeviceStatus | None, Target]] = {
    StatusEvent.PRE_NOTIFICATION: {None: S.PENDING},
    StatusEvent.CH_DELIVERY: {None: S.PENDING},
    StatusEvent.WHITELIST: {S.PENDING: S.WHITELISTED, S.WHITELISTED: S.WHITELISTED},
    StatusEvent.JOIN: {
        S.PENDING: S.INSTALLED_NOT_COMMISSIONED,
        S.WHITELISTED: S.INSTALLED_NOT_COMMISSIONED,
        S.INSTALLED_NOT_COMMISSIONED: S.INSTALLED_NOT_COMMISSIONED,
    },
    StatusEvent.COMMISSION: {S.INSTALLED_NOT_COMMISSIONED: S.COMMISSIONED},
    StatusEvent.DECOMMISSION: {
        S.WHITELISTED: S.DECOMMISSIONED,
        S.INSTALLED_NOT_COMMISSIONED: S.DECOMMISSIONED,
        S.COMMISSIONED: S.DECOMMISSIONED,
        S.SUSPENDED: S.DECOMMISSIONED,
        S.RECOVERED: S.DECOMMISSIONED,
    },
    StatusEvent.SET_PENDING: {
        S.WHITELISTED: S.PENDING,
        S.INSTALLED_NOT_COMMISSIONED: S.PENDING,
    },
    StatusEvent.SET_INSTALLED: {
        S.PENDING: S.INSTALLED_NOT_COMMISSIONED,
        S.WHITELISTED: S.INSTALLED_NOT_COMMISSIONED,
    },
    StatusEvent.CH_SET_COMMISSIONED: {S.INSTALLED_NOT_COMMISSIONED: S.COMMISSIONED},
    StatusEvent.CH_SET_INSTALLED: {
        S.PENDING: S.INSTALLED_NOT_COMMISSIONED,
        S.COMMISSIONED: S.INSTALLED_NOT_COMMISSIONED,
    },
    StatusEvent.CH_SET_WITHDRAWN: {S.PENDING: S.WITHDRAWN},
    StatusEvent.CH_INSTALL_SM_WAN: {
        S.PENDING: S.COMMISSIONED,
        S.INSTALLED_NOT_COMMISSIONED: S.COMMISSIONED,
    },
    StatusEvent.CH_INSTALL_NO_SM_WAN: {S.PENDING: S.INSTALLED_NOT_COMMISSIONED},
    # A hub returned before installation is withdrawn; one that was installed is decommissioned.
    StatusEvent.CH_FAULT_RETURN: {
        S.PENDING: S.WITHDRAWN,
        S.INSTALLED_NOT_COMMISSIONED: S.DECOMMISSIONED,
        S.COMMISSIONED: S.DECOMMISSIONED,
        S.SUSPENDED: S.DECOMMISSIONED,
    },
    StatusEvent.CH_NO_FAULT_RETURN: {
        S.PENDING: S.WITHDRAWN,
        S.INSTALLED_NOT_COMMISSIONED: S.DECOMMISSIONED,
        S.COMMISSIONED: S.DECOMMISSIONED,
    },
    StatusEvent.OPT_OUT: {S.COMMISSIONED: S.INSTALLED_NOT_COMMISSIONED},
    StatusEvent.OPT_IN: {S.INSTALLED_NOT_COMMISSIONED: S.COMMISSIONED},
    StatusEvent.SUSPEND: {status: S.SUSPENDED for status in _IN_SERVICE},
    StatusEvent.REINSTATE: {S.SUSPENDED: PREVIOUS_STATUS},
    StatusEvent.RECOVERY: {
        S.INSTALLED_NOT_COMMISSIONED: S.RECOVERY,
        S.COMMISSIONED: S.RECOVERY,
        S.SUSPENDED: S.RECOVERY,
    },
    StatusEvent.RECOVERED: {S.RECOVERY: S.RECOVERED},
    StatusEvent.RECOMMISSION: {S.RECOVERED: S.COMMISSIONED},
}

# Events that only some device types undergo (E11 for the others); absent: every type.
EVENT_DEVICE_TYPES: dict[StatusEvent, frozenset[DeviceType]] = {
    StatusEvent.CH_DELIVERY: _HUB,
    StatusEvent.CH_SET_COMMISSIONED: _HUB,
    StatusEvent.CH_SET_INSTALLED: _HUB,
    StatusEvent.CH_SET_WITHDRAWN: _HUB,
    StatusEvent.CH_INSTALL_SM_WAN: _HUB,
    StatusEvent.CH_INSTALL_NO_SM_WAN: _HUB,
    StatusEvent.CH_FAULT_RETURN: _HUB,
    StatusEvent.CH_NO_FAULT_RETURN: _HUB,
    StatusEvent.PRE_NOTIFICATION: _NOT_HUB - {DeviceType.GPF},
    StatusEvent.WHITELIST: _NOT_HUB,
    StatusEvent.DECOMMISSION: _NOT_HUB - {DeviceType.GPF},
    StatusEvent.SET_PENDING: _NOT_HUB,
    StatusEvent.SET_INSTALLED: _NOT_HUB,
    StatusEvent.OPT_OUT: frozenset({DeviceType.ESME}),
    StatusEvent.OPT_IN: frozenset({DeviceType.ESME}),
}


class StatusTransitionError(DuisError):
    """A status change the lifecycle does not allow, carrying the DUIS code to answer with."""


def next_status(
    event: StatusEvent, current: DeviceStatus | None, device_type: DeviceType
) -> Target:
    """The status ``event`` moves a device of ``device_type`` to from ``current`` (None: not in
    the inventory), or ``PREVIOUS_STATUS``; raises ``StatusTransitionError`` (E11 wrong device
    type, E19 no such device, E5 not allowed from this status)."""
    allowed_types = EVENT_DEVICE_TYPES.get(event)
    if allowed_types is not None and device_type not in allowed_types:
        raise StatusTransitionError("E11", f"{event.value} does not apply to a {device_type.value}")
    table = TRANSITIONS[event]
    if current not in table:
        if current is None:
            raise StatusTransitionError("E19", f"{event.value}: the device is not in the inventory")
        if None in table:
            raise StatusTransitionError(
                "E5", f"{event.value}: the device is already in the inventory ({current.value})"
            )
        raise StatusTransitionError(
            "E5", f"{event.value} is not allowed for a device in status {current.value}"
        )
    return table[current]
