"""The test estate: premises and the devices in them, as a file both sides read.

``dccsim seed`` writes ``$DCCSIM_HOME/estate.json``; services/inventory imports it into the
Smart Metering Inventory and gateway/ hosts its devices. Device EUIs are derived from the premises
number so an estate of any size is reproducible from (size, seed).

The file only grows while the system runs (services/testing appends a participant's premises
when it onboards them, with ``save``: one atomic rename) and whoever adds premises publishes
``CHANGED_EVENT`` on the events exchange; the inventory imports the new premises on it, and the
gateway, which reads no bus, notices the replaced file itself.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dccsim.duis.requestid import format_eui as format_eui  # re-exported: the estate's EUIs
from dccsim.filelock import exclusive, write_atomically
from dccsim.smi import DeviceStatus, DeviceType

REGIONS = ("North", "Central", "South")
# EUI-64 prefix for dccsim's emulated devices (distinct from the RTDS 00-DB-12-34-... devices).
DEVICE_PREFIX = bytes.fromhex("00DCC5")
# Routing key on the events exchange when premises were added to estate.json;
# body ``{"premises": [premises ids added]}``.
CHANGED_EVENT = "estate.changed"


@dataclass(frozen=True)
class EstateDevice:
    eui: str
    device_type: DeviceType
    status: DeviceStatus = DeviceStatus.COMMISSIONED
    import_wh_base: int = 0  # register seed for meters


@dataclass(frozen=True)
class Premises:
    premises_id: str
    region: str
    postcode: str
    mpan: str | None
    hub_eui: str
    devices: tuple[EstateDevice, ...]
    registrations: dict[str, str] = field(default_factory=dict)  # role -> User EUI
    mprn: str | None = None  # the gas meter's MPRN; the gas roles (GS, GT) are registered on it


# The registration roles held on a premises' MPRN; the others are on its MPAN.
GAS_ROLES = frozenset({"GS", "GT"})


def device_eui(premises_no: int, kind: int) -> str:
    """EUI for device ``kind`` (0 CHF, 1 GPF, 2 ESME, 3 GSME, 4 IHD) of premises ``premises_no``."""
    return format_eui(DEVICE_PREFIX + premises_no.to_bytes(4, "big") + bytes([kind]))


def demo_mprn(n: int) -> str:
    """The MPRN of demo premises ``n`` (10 digits, as services/inventory/seed.py numbers them)."""
    return f"{3_000_000_000 + n:010d}"


def demo_estate(
    size: int,
    *,
    supplier_euis: list[str],
    distributor_eui: str | None = None,
    gas: bool = False,
) -> list[Premises]:
    """``size`` premises, each a CHF and a commissioned ESME; premises n is registered to
    supplier ``supplier_euis[(n - 1) % len(supplier_euis)]`` as Import Supplier. With ``gas``
    each also has a GPF and a commissioned GSME on an MPRN, the same supplier its Gas Supplier."""
    if not supplier_euis:
        raise ValueError("an estate needs at least one supplier")
    estate = []
    for n in range(1, size + 1):
        hub = device_eui(n, 0)
        supplier = supplier_euis[(n - 1) % len(supplier_euis)]
        regs = {"IS": supplier}
        if distributor_eui:
            regs["ED"] = distributor_eui
        gas_devices: tuple[EstateDevice, ...] = ()
        if gas:
            regs["GS"] = supplier
            gas_devices = (
                EstateDevice(device_eui(n, 1), DeviceType.GPF),
                EstateDevice(device_eui(n, 3), DeviceType.GSME),
            )
        estate.append(
            Premises(
                premises_id=f"P{n:07d}",
                region=REGIONS[n % len(REGIONS)],
                postcode=f"DC{n % 90 + 1} {n % 9 + 1}SM",
                mpan=f"{1_000_000_000_000 + n:013d}",
                hub_eui=hub,
                devices=(
                    EstateDevice(hub, DeviceType.CHF),
                    EstateDevice(
                        device_eui(n, 2), DeviceType.ESME, import_wh_base=1_000_000 + 7919 * n
                    ),
                    *gas_devices,
                ),
                registrations=regs,
                mprn=demo_mprn(n) if gas else None,
            )
        )
    return estate


def estate_path(home: Path) -> Path:
    return home / "estate.json"


def _to_json(p: Premises) -> dict[str, Any]:
    return {
        "premises_id": p.premises_id,
        "region": p.region,
        "postcode": p.postcode,
        "mpan": p.mpan,
        "mprn": p.mprn,
        "hub_eui": p.hub_eui,
        "registrations": p.registrations,
        "devices": [
            {
                "eui": d.eui,
                "type": d.device_type.value,
                "status": d.status.value,
                "import_wh_base": d.import_wh_base,
            }
            for d in p.devices
        ],
    }


def save(home: Path, estate: list[Premises]) -> None:
    """Replace estate.json (atomically, synced). A read-modify-write holds ``locked(home)``."""
    # dumps, not dump: only the one-shot encoder is the C one (a third of the time for 100,000
    # premises)
    text = json.dumps({"version": 1, "premises": [_to_json(p) for p in estate]})
    write_atomically(estate_path(home), text, prefix=".estate-")


def locked(home: Path) -> contextlib.AbstractContextManager[None]:
    """The estate file's writer lock: ``with estate.locked(home): load, change, save``."""
    return exclusive(home / ".estate.lock")


def load(home: Path) -> list[Premises]:
    path = estate_path(home)
    if not path.is_file():
        return []
    raw = json.loads(path.read_text())
    out = []
    for p in raw["premises"]:
        out.append(
            Premises(
                premises_id=p["premises_id"],
                region=p["region"],
                postcode=p["postcode"],
                mpan=p.get("mpan"),
                mprn=p.get("mprn"),
                hub_eui=p["hub_eui"],
                registrations=dict(p.get("registrations", {})),
                devices=tuple(
                    EstateDevice(
                        d["eui"],
                        DeviceType(d["type"]),
                        DeviceStatus(d["status"]),
                        int(d.get("import_wh_base", 0)),
                    )
                    for d in p["devices"]
                ),
            )
        )
    return out
