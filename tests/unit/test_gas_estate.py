"""The demo estate's gas side: each premises' GSME and GPF on an MPRN whose Gas Supplier is the
premises' demo Supplier, as estate.json carries it and the inventory imports it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dccsim import estate
from dccsim.duis.catalogue import UserRole, lookup
from dccsim.estate import demo_estate, demo_mprn, device_eui
from dccsim.seed import supplier_eui
from dccsim.smi import DeviceType, check_eligibility
from services.inventory.seed import import_new_premises
from services.inventory.store import SmartMeteringInventory

S1, S2 = supplier_eui(0), supplier_eui(1)
SUPPLIER_ROLES = frozenset({UserRole.IMPORT_SUPPLIER, UserRole.GAS_SUPPLIER})


@pytest.fixture
async def inventory(tmp_path: Path) -> AsyncIterator[SmartMeteringInventory]:
    store = SmartMeteringInventory(f"sqlite+aiosqlite:///{tmp_path / 'inventory.db'}")
    await store.create_schema()
    try:
        yield store
    finally:
        await store.close()


def test_a_gas_premises_has_a_gsme_and_gpf_and_its_supplier_as_gas_supplier() -> None:
    (premises,) = demo_estate(1, supplier_euis=[S1], gas=True)
    types = {d.device_type for d in premises.devices}
    assert {DeviceType.CHF, DeviceType.ESME, DeviceType.GPF, DeviceType.GSME} == types
    assert premises.mprn == demo_mprn(1)
    assert premises.registrations == {"IS": S1, "GS": S1}


def test_the_mprn_survives_estate_json(tmp_path: Path) -> None:
    written = demo_estate(2, supplier_euis=[S1, S2], gas=True)
    estate.save(tmp_path, written)
    assert estate.load(tmp_path) == written


async def test_the_gsme_is_on_the_mprn_and_its_gas_supplier_is_eligible(
    inventory: SmartMeteringInventory,
) -> None:
    await import_new_premises(inventory, demo_estate(2, supplier_euis=[S1, S2], gas=True))
    gsme = await inventory.device(device_eui(1, 3))
    esme = await inventory.device(device_eui(1, 2))
    gpf = await inventory.device(device_eui(1, 1))
    assert gsme is not None and esme is not None and gpf is not None
    assert gsme.mpxn == demo_mprn(1)
    assert gsme.registrations == {"GS": S1}  # the MPRN's registrations only
    assert esme.registrations == {"IS": S1}  # the gas role is not on the MPAN
    assert gpf.registrations.get("GS") == S1  # a GPF: its hub's meters'
    read = lookup("4.1.1")
    assert read is not None
    for device in (gsme, gpf):
        assert (
            check_eligibility(read, user_eui=S1, user_roles=SUPPLIER_ROLES, device=device) is None
        )
    other = await inventory.device(device_eui(2, 3))
    assert other is not None
    code = check_eligibility(read, user_eui=S1, user_roles=SUPPLIER_ROLES, device=other)
    assert code == "E4"


async def test_an_estate_without_gas_registers_as_before(
    inventory: SmartMeteringInventory,
) -> None:
    await import_new_premises(inventory, demo_estate(1, supplier_euis=[S1]))
    esme = await inventory.device(device_eui(1, 2))
    assert esme is not None and esme.registrations == {"IS": S1}
    assert await inventory.device(device_eui(1, 3)) is None


def test_a_seeded_estate_names_the_gas_supplier_on_the_mprn_as_its_inventory_rows_do() -> None:
    """`dccsim estate seed` writes estate.json (what the gateway hosts) and the inventory rows
    from the same numbering: the gas devices must trust the Supplier the inventory registers."""
    from datetime import UTC, datetime

    from services.inventory.seed import _rows, estate_premises

    premises = estate_premises(7, suppliers=3)
    [(row, devices, registrations)] = list(_rows([7], suppliers=3, now=datetime.now(UTC)))
    assert premises.mprn == row["mprn"]
    gas = {r["role"]: r for r in registrations if r["mpxn"] == row["mprn"]}
    assert premises.registrations["GS"] == gas["GS"]["user_eui"]
    assert premises.registrations["IS"] == premises.registrations["GS"]
    gsme = next(d for d in devices if d["device_type"] == DeviceType.GSME.value)
    assert gsme["mpxn"] == premises.mprn
