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
    eui: str  # DUIS form, upper case, '-' separated
    device_type: DeviceType
    status: DeviceStatus
    hub_eui: str | None = None
    csp_region: str = "North"
    mpxn: str | None = None
    # role -> EUI of the User registered in that role for this device's MPxN
    registrations: dict[str, str] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "eui": self.eui,
            "device_type": self.device_type.value,
            "status": self.status.value,
            "hub_eui": self.hub_eui,
            "csp_region": self.csp_region,
            "mpxn": self.mpxn,
            "registrations": dict(self.registrations),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> DeviceRecord:
        return cls(
            eui=str(data["eui"]),
            device_type=DeviceType(data["device_type"]),
            status=DeviceStatus(data["status"]),
            hub_eui=data.get("hub_eui"),
            csp_region=str(data.get("csp_region") or "North"),
            mpxn=data.get("mpxn"),
            registrations={str(k): str(v) for k, v in (data.get("registrations") or {}).items()},
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
