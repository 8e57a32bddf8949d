"""Seeding a test estate straight into the Smart Metering Inventory, fast.

``seed_estate(url, premises=N)`` creates premises 1..N, each with a Communications Hub (CHF and
GPF), an ESME, a GSME and an IHD, an MPAN and an MPRN, the Import and Gas Supplier registered as
demo Supplier ``(n - 1) % suppliers`` (``dccsim.seed.supplier_eui``), every device Commissioned.
Rows go in with bulk ``executemany`` inserts in a few large transactions, which is what makes
100,000 premises (500,000 devices) a matter of seconds on SQLite.

Device EUIs are ``dccsim.estate.device_eui(n, kind)`` (kind 0 CHF, 1 GPF, 2 ESME, 3 GSME,
4 IHD), so the same estate written to ``estate.json`` (``estate_premises``) is the one the
gateway emulator hosts.

``import_new_premises(inventory, estate.load(home))`` is how the inventory takes estate.json in,
at start-up and whenever premises are added to it while it runs (``estate.changed``): only what
it does not hold yet, never touching a device or a premises it has.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from dccsim.estate import REGIONS, EstateDevice, Premises, device_eui
from dccsim.seed import supplier_eui
from dccsim.smi import DeviceStatus, DeviceType
from services.inventory.store import (
    Device,
    PremisesRow,
    RegistrationPeriod,
    SmartMeteringInventory,
    StatusChange,
    normalise_postcode,
    utcnow,
)

log = logging.getLogger(__name__)

KINDS: tuple[tuple[int, DeviceType], ...] = (
    (0, DeviceType.CHF),
    (1, DeviceType.GPF),
    (2, DeviceType.ESME),
    (3, DeviceType.GSME),
    (4, DeviceType.IHD),
)
# What the emulated devices claim to be (DUIS DeviceManufacturer / DeviceModel / versions).
DEVICE_DETAILS: dict[DeviceType, dict[str, str]] = {
    DeviceType.CHF: {"model": "0C010001", "smets_chts_version": "CHTS V1.0"},
    DeviceType.GPF: {"model": "0C010002", "smets_chts_version": "CHTS V1.0"},
    DeviceType.ESME: {"model": "0E010001", "smets_chts_version": "SMETS V5.0"},
    DeviceType.GSME: {"model": "06010001", "smets_chts_version": "SMETS V5.0"},
    DeviceType.IHD: {"model": "0D010001", "smets_chts_version": "SMETS V5.0"},
}
MANUFACTURER = "DCC5"
FIRMWARE = "00010000"
GBCS_VERSION = "3.2"


def mpan(n: int) -> str:
    return f"{1_000_000_000_000 + n:013d}"


def mprn(n: int) -> str:
    return f"{3_000_000_000 + n:010d}"


def uprn(n: int) -> str:
    return f"{100_000_000_000 + n:012d}"


def postcode(n: int) -> str:
    return f"DC{n % 90 + 1} {n % 9 + 1}SM"


def address(n: int) -> str:
    return f"{n} Test Street"


@dataclass(frozen=True)
class SeedReport:
    premises: int
    devices: int
    registrations: int
    seconds: float

    @property
    def premises_per_second(self) -> float:
        return self.premises / self.seconds if self.seconds else 0.0


def estate_premises(n: int, *, suppliers: int = 1) -> Premises:
    """Premises ``n`` as ``dccsim.estate`` describes it (for estate.json and the gateway)."""
    hub = device_eui(n, 0)
    return Premises(
        premises_id=f"P{n:07d}",
        region=REGIONS[n % len(REGIONS)],
        postcode=postcode(n),
        mpan=mpan(n),
        hub_eui=hub,
        devices=tuple(
            EstateDevice(
                device_eui(n, kind),
                device_type,
                import_wh_base=1_000_000 + 7919 * n if device_type is DeviceType.ESME else 0,
            )
            for kind, device_type in KINDS
        ),
        # The same supplier is Gas Supplier on the MPRN, as the inventory rows register it,
        # so the hosted GSME and GPF trust it.
        registrations={
            "IS": supplier_eui((n - 1) % suppliers),
            "GS": supplier_eui((n - 1) % suppliers),
        },
        mprn=mprn(n),
    )


def _rows(
    numbers: Iterable[int], *, suppliers: int, now: datetime
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]]:
    for n in numbers:
        region = REGIONS[n % len(REGIONS)]
        premises_id = f"P{n:07d}"
        pc = postcode(n)
        euis = {device_type: device_eui(n, kind) for kind, device_type in KINDS}
        hub = euis[DeviceType.CHF]
        supplier = supplier_eui((n - 1) % suppliers)
        premises = {
            "premises_id": premises_id,
            "uprn": uprn(n),
            "postcode": pc,
            "postcode_key": normalise_postcode(pc),
            "address": address(n),
            "csp_region": region,
            "mpan": mpan(n),
            "mprn": mprn(n),
        }
        devices = []
        for device_type, eui in euis.items():
            devices.append(
                {
                    "eui": eui,
                    "device_type": device_type.value,
                    "status": DeviceStatus.COMMISSIONED.value,
                    "status_since": now,
                    "hub_eui": None if device_type is DeviceType.CHF else hub,
                    "csp_region": region,
                    "mpxn": mpan(n)
                    if device_type is DeviceType.ESME
                    else mprn(n)
                    if device_type is DeviceType.GSME
                    else None,
                    "premises_id": premises_id,
                    "postcode": pc,
                    "manufacturer": MANUFACTURER,
                    "model": DEVICE_DETAILS[device_type]["model"],
                    "firmware_version": FIRMWARE,
                    "gbcs_version": GBCS_VERSION,
                    "smets_chts_version": DEVICE_DETAILS[device_type]["smets_chts_version"],
                    "esme_variant": "A" if device_type is DeviceType.ESME else None,
                    "gpf_eui": euis[DeviceType.GPF] if device_type is DeviceType.GSME else None,
                    "meter_eui": euis[DeviceType.ESME] if device_type is DeviceType.IHD else None,
                    "gateway": None,
                    "notified_by": None,
                    "commissioned_at": now,
                    "exception": None,
                }
            )
        registrations = [
            {
                "mpxn": mpan(n),
                "role": "IS",
                "user_eui": supplier,
                "valid_from": now,
                "valid_to": None,
                "reason": "estate seed",
                "superseded": False,
            },
            {
                "mpxn": mprn(n),
                "role": "GS",
                "user_eui": supplier,
                "valid_from": now,
                "valid_to": None,
                "reason": "estate seed",
                "superseded": False,
            },
        ]
        yield premises, devices, registrations


async def seed_estate(
    inventory: SmartMeteringInventory,
    *,
    premises: int,
    suppliers: int = 1,
    first: int = 1,
    batch: int = 10_000,
) -> SeedReport:
    """Insert premises ``first`` .. ``first + premises - 1`` (those not there yet)."""
    if not 1 <= suppliers <= 256:
        raise ValueError("suppliers must be 1..256")
    start = time.perf_counter()
    now = utcnow()
    async with inventory.sessions() as session:
        existing = set((await session.scalars(select(PremisesRow.premises_id))).all())
    numbers = [n for n in range(first, first + premises) if f"P{n:07d}" not in existing]
    devices_added = registrations_added = 0
    for i in range(0, len(numbers), batch):
        chunk = numbers[i : i + batch]
        premises_rows: list[dict[str, Any]] = []
        device_rows: list[dict[str, Any]] = []
        registration_rows: list[dict[str, Any]] = []
        for p, ds, rs in _rows(chunk, suppliers=suppliers, now=now):
            premises_rows.append(p)
            device_rows.extend(ds)
            registration_rows.extend(rs)
        history_rows = [
            {
                "eui": d["eui"],
                "status": d["status"],
                "at": now,
                "reason": "estate seed",
                "event": "seed",
                "previous": None,
            }
            for d in device_rows
        ]
        async with inventory.engine.begin() as conn:
            await conn.execute(insert(PremisesRow), premises_rows)
            await conn.execute(insert(Device), device_rows)
            await conn.execute(insert(StatusChange), history_rows)
            await conn.execute(insert(RegistrationPeriod), registration_rows)
        devices_added += len(device_rows)
        registrations_added += len(registration_rows)
    return SeedReport(len(numbers), devices_added, registrations_added, time.perf_counter() - start)


@dataclass(frozen=True)
class EstateImport:
    """What ``import_new_premises`` added: premises ids and device EUI-64s new to the inventory."""

    premises: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)


def _new_part(
    estate: Iterable[Premises], known_premises: set[str], known_devices: set[str]
) -> tuple[list[Premises], EstateImport]:
    todo: list[Premises] = []
    added = EstateImport()
    seen = set(known_devices)
    for p in estate:
        fresh = tuple(d for d in p.devices if d.eui.upper() not in seen)
        seen.update(d.eui.upper() for d in fresh)
        if p.premises_id in known_premises:
            if fresh:  # its registration data is the inventory's now: not taken again
                todo.append(replace(p, devices=fresh, registrations={}))
        else:
            todo.append(replace(p, devices=fresh))
            added.premises.append(p.premises_id)
            known_premises.add(p.premises_id)
        added.devices.extend(d.eui.upper() for d in fresh)
    return todo, added


async def import_new_premises(
    inventory: SmartMeteringInventory,
    estate: Iterable[Premises],
    *,
    reason: str = "estate import",
) -> EstateImport:
    """Import what of ``estate`` (estate.json's premises) the inventory does not hold yet:

    - a premises it does not know: the premises, its devices and its registrations;
    - a premises it knows: only devices it does not know; its registrations are not applied
      again (SRVs and the registration methods may have changed them since);
    - a device it knows: nothing, so its status, history and relationships stay as they are.

    Idempotent: the same estate a second time imports nothing. If another inventory process
    imports the same premises at the same moment (a unique key violated), it looks again once.
    Returns what it added.
    """
    premises = list(estate)
    retries = 1
    while True:
        async with inventory.sessions() as session:
            known_devices = set((await session.scalars(select(Device.eui))).all())
            known_premises = set((await session.scalars(select(PremisesRow.premises_id))).all())
        todo, added = _new_part(premises, known_premises, {e.upper() for e in known_devices})
        if not todo:
            return EstateImport()
        try:
            await inventory.import_estate(todo, reason=reason)
        except IntegrityError:
            if not retries:
                raise
            retries -= 1
            log.info("estate import raced another importer; looking again")
            continue
        return added
