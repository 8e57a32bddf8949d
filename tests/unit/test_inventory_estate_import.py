"""Importing estate.json into the inventory while it runs: only what is new, never touching a
device or premises it already holds (statuses, registrations changed since stay)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from dccsim.estate import EstateDevice, Premises, demo_estate, device_eui
from dccsim.seed import supplier_eui
from dccsim.smi import DeviceStatus, DeviceType
from services.inventory.seed import import_new_premises
from services.inventory.store import SmartMeteringInventory

S1, S2 = supplier_eui(0), supplier_eui(1)


@pytest.fixture
async def inventory(tmp_path: Path) -> AsyncIterator[SmartMeteringInventory]:
    store = SmartMeteringInventory(f"sqlite+aiosqlite:///{tmp_path / 'inventory.db'}")
    await store.create_schema()
    try:
        yield store
    finally:
        await store.close()


def _estate(size: int) -> list[Premises]:
    return demo_estate(size, supplier_euis=[S1])


async def test_the_same_estate_twice_imports_nothing_the_second_time(
    inventory: SmartMeteringInventory,
) -> None:
    first = await import_new_premises(inventory, _estate(2))
    assert first.premises == ["P0000001", "P0000002"]
    assert sorted(first.devices) == sorted(d.eui for p in _estate(2) for d in p.devices)
    again = await import_new_premises(inventory, _estate(2))
    assert again.premises == [] and again.devices == []
    assert await inventory.count() == 4


async def test_only_new_premises_are_imported_with_their_registrations(
    inventory: SmartMeteringInventory,
) -> None:
    await import_new_premises(inventory, _estate(2))
    grown = _estate(2) + demo_estate(4, supplier_euis=[S2])[2:]
    added = await import_new_premises(inventory, grown, reason="estate changed")
    assert added.premises == ["P0000003", "P0000004"]
    assert set(added.devices) == {device_eui(n, k) for n in (3, 4) for k in (0, 2)}
    record = await inventory.device(device_eui(3, 2))
    assert record is not None and record.registrations == {"IS": S2}
    assert record.status is DeviceStatus.COMMISSIONED
    history = await inventory.status_history(device_eui(3, 2))
    assert [h.reason for h in history] == ["estate changed"]


async def test_devices_already_there_keep_their_status_and_registrations(
    inventory: SmartMeteringInventory,
) -> None:
    await import_new_premises(inventory, _estate(2))
    esme1, esme2 = device_eui(1, 2), device_eui(2, 2)
    mpan1, mpan2 = _estate(2)[0].mpan, _estate(2)[1].mpan
    assert mpan1 and mpan2
    await inventory.set_status(esme1, DeviceStatus.SUSPENDED, reason="test")
    await inventory.register(mpan1, "IS", S2, reason="change of supplier")  # an SRV's doing
    await inventory.end_registration(mpan2, "IS")  # no supplier at all now

    await import_new_premises(inventory, _estate(3))

    one = await inventory.device(esme1)
    assert one is not None
    assert one.status is DeviceStatus.SUSPENDED and one.registrations == {"IS": S2}
    two = await inventory.device(esme2)
    assert two is not None and two.registrations == {}  # the file's S1 is not put back
    assert [r.user_eui for r in await inventory.registration_history(mpan1)] == [S1, S2]


async def test_a_new_device_of_a_known_premises_is_added_without_its_registrations(
    inventory: SmartMeteringInventory,
) -> None:
    await import_new_premises(inventory, _estate(1))
    mpan = _estate(1)[0].mpan
    assert mpan
    await inventory.end_registration(mpan, "IS")
    ihd = EstateDevice(device_eui(1, 4), DeviceType.IHD)
    premises = _estate(1)[0]
    changed = replace(premises, devices=(*premises.devices, ihd), registrations={"IS": S2})
    added = await import_new_premises(inventory, [changed])
    assert added.premises == [] and added.devices == [ihd.eui]
    record = await inventory.device(ihd.eui)
    assert record is not None and record.device_type is DeviceType.IHD
    assert await inventory.registrations_at(mpan) == {}
