"""The inventory store and its request methods, the same suite on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dccsim.estate import demo_estate
from dccsim.seed import supplier_eui
from dccsim.smi import DeviceStatus, DeviceType, StatusEvent, StatusTransitionError
from services.inventory.requests import READ_INVENTORY_PAGE, InventoryRequests
from services.inventory.seed import mpan, mprn, postcode, seed_estate, uprn
from services.inventory.store import SmartMeteringInventory

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
S1, S2 = supplier_eui(0), supplier_eui(1)


def _pg_admin(sql: str) -> None:
    """Run one statement on the admin database, in a thread of its own (the fixture that asks
    may already be inside the test's event loop)."""
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped afterwards."""
    name = f"dccsim_inventory_{uuid.uuid4().hex[:10]}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        pytest.skip(f"PostgreSQL at {PG_ADMIN} did not answer ({exc}); start it to run these")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def inventory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SmartMeteringInventory]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'inventory.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    store = SmartMeteringInventory(url)
    await store.drop_schema()
    await store.create_schema()
    try:
        yield store
    finally:
        await store.drop_schema()
        await store.close()


@pytest.fixture
async def seeded(inventory: SmartMeteringInventory) -> SmartMeteringInventory:
    await seed_estate(inventory, premises=6, suppliers=2)
    return inventory


def eui(n: int, kind: int) -> str:
    from dccsim.estate import device_eui

    return device_eui(n, kind)


def body(
    user: str = S1, roles: tuple[str, ...] = ("IS", "GS"), **fields: object
) -> dict[str, object]:
    return {"user_eui": user, "user_roles": list(roles), **fields}


async def test_imported_estate_device_keeps_the_wire_fields(
    inventory: SmartMeteringInventory,
) -> None:
    await inventory.import_estate(demo_estate(2, supplier_euis=[S1]))
    record = await inventory.device(eui(1, 2).lower())
    assert record is not None
    assert (record.device_type, record.status, record.hub_eui) == (
        DeviceType.ESME,
        DeviceStatus.COMMISSIONED,
        eui(1, 0),
    )
    assert record.registrations == {"IS": S1}
    assert record.mpxn == "1000000000001"


async def test_import_twice_adds_nothing(inventory: SmartMeteringInventory) -> None:
    estate = demo_estate(3, supplier_euis=[S1])
    assert await inventory.import_estate(estate) == 6
    assert await inventory.import_estate(estate) == 0
    assert await inventory.count() == 6


async def test_seeded_devices_carry_relationships_and_details(
    seeded: SmartMeteringInventory,
) -> None:
    hub = await seeded.device(eui(1, 0))
    gsme = await seeded.device(eui(1, 3))
    gpf = await seeded.device(eui(1, 1))
    ihd = await seeded.device(eui(1, 4))
    assert hub is not None and gsme is not None and gpf is not None and ihd is not None
    assert set(hub.devices) == {eui(1, k) for k in (1, 2, 3, 4)}
    assert gsme.gpf_eui == eui(1, 1) and gpf.gsme_eui == eui(1, 3)
    assert ihd.meter_eui == eui(1, 2)
    assert gsme.mpxn == mprn(1) and gsme.registrations == {"GS": S1}
    assert hub.registrations == {"IS": S1, "GS": S1}
    assert (gsme.manufacturer, gsme.firmware_version, gsme.gbcs_version) == (
        "DCC5",
        "00010000",
        "3.2",
    )


async def test_transition_follows_the_table_and_is_recorded(
    seeded: SmartMeteringInventory,
) -> None:
    target = eui(2, 2)
    await seeded.transition(target, StatusEvent.SUSPEND, reason="model off the CPL")
    status = await seeded.transition(target, StatusEvent.REINSTATE, reason="back on the CPL")
    assert status is DeviceStatus.COMMISSIONED
    history = await seeded.status_history(target)
    assert [(h.status, h.event, h.reason) for h in history[1:]] == [
        (DeviceStatus.SUSPENDED, "suspend", "model off the CPL"),
        (DeviceStatus.COMMISSIONED, "reinstate", "back on the CPL"),
    ]
    assert history[1].previous is DeviceStatus.COMMISSIONED


async def test_illegal_transition_is_refused_with_e5_and_not_recorded(
    seeded: SmartMeteringInventory,
) -> None:
    target = eui(2, 2)
    with pytest.raises(StatusTransitionError) as err:
        await seeded.transition(target, StatusEvent.WHITELIST, reason="8.11")
    assert err.value.code == "E5"
    assert len(await seeded.status_history(target)) == 1


async def test_change_of_supplier_keeps_history_and_moves_eligibility(
    seeded: SmartMeteringInventory,
) -> None:
    affected = await seeded.register(mpan(1), "IS", S2, reason="change of supplier")
    assert eui(1, 2) in affected and eui(1, 0) in affected
    record = await seeded.device(eui(1, 2))
    assert record is not None and record.registrations["IS"] == S2
    history = await seeded.registration_history(mpan(1))
    assert [(r.user_eui, r.valid_to is None) for r in history] == [(S1, False), (S2, True)]


async def test_future_dated_change_of_supplier_applies_from_its_date(
    seeded: SmartMeteringInventory,
) -> None:
    when = datetime.now(UTC) + timedelta(days=14)
    await seeded.register(mpan(1), "IS", S2, effective=when)
    assert (await seeded.registrations_at(mpan(1)))["IS"] == S1
    assert (await seeded.registrations_at(mpan(1), when + timedelta(seconds=1)))["IS"] == S2


async def test_read_inventory_pages_at_17_devices(seeded: SmartMeteringInventory) -> None:
    # Postcodes repeat every 90 premises: put five premises (25 devices) under one postcode.
    await seed_estate(seeded, premises=4 * 90, first=7)
    reply = await InventoryRequests(seeded).read_inventory(body(postcode=postcode(1)))
    assert reply["code"] == "I0"
    assert reply["total"] == 25
    assert [len(p) for p in reply["pages"]] == [READ_INVENTORY_PAGE, 25 - READ_INVENTORY_PAGE]


async def test_read_inventory_by_device_mpxn_and_uprn(seeded: SmartMeteringInventory) -> None:
    requests = InventoryRequests(seeded)
    by_device = await requests.read_inventory(body(device_id=eui(3, 3)))
    by_mpxn = await requests.read_inventory(body(mpxn=mpan(3)))
    by_uprn = await requests.read_inventory(body(uprn=uprn(3)))
    first = by_device["pages"][0]
    assert first[0]["device_id"] == eui(3, 3) and len(first) == 5
    assert {d["device_id"] for d in by_mpxn["pages"][0]} == {eui(3, k) for k in range(5)}
    assert {d["device_id"] for d in by_uprn["pages"][0]} == {eui(3, k) for k in range(5)}
    assert by_uprn["pages"][0][0]["uprn"] == uprn(3)


async def test_read_inventory_of_unknown_device_is_empty(seeded: SmartMeteringInventory) -> None:
    reply = await InventoryRequests(seeded).read_inventory(
        body(device_id="00-00-00-00-00-00-00-01")
    )
    assert (reply["code"], reply["total"], reply["pages"]) == ("I0", 0, [])


async def test_prenotified_device_is_pending_and_a_second_notice_is_refused(
    inventory: SmartMeteringInventory,
) -> None:
    changed: list[list[str]] = []

    async def on_change(euis: list[str]) -> None:
        changed.append(euis)

    requests = InventoryRequests(inventory, on_change=on_change)
    notice = body(
        device_id="00-DB-12-34-56-78-90-A0",
        device_manufacturer="AB01",
        device_model="010A030B",
        device_type="ESME",
        firmware_version="0002012F",
    )
    assert (await requests.prenotify(notice))["devices"][0]["status"] == "Pending"
    assert (await requests.prenotify(notice))["code"] == "E5"
    assert changed == [["00-DB-12-34-56-78-90-A0"]]
    record = await inventory.device("00-DB-12-34-56-78-90-A0")
    assert record is not None and record.model == "010A030B"


async def test_prenotification_of_a_hub_is_refused_with_e11(
    inventory: SmartMeteringInventory,
) -> None:
    reply = await InventoryRequests(inventory).prenotify(
        body(
            device_id="00-00-00-00-00-00-00-09",
            device_manufacturer="AB01",
            device_model="01",
            device_type="CHF",
        )
    )
    assert reply["code"] == "E11"


async def test_decommission_by_the_registered_supplier(seeded: SmartMeteringInventory) -> None:
    reply = await InventoryRequests(seeded).decommission(body(device_id=eui(1, 2)))
    assert reply == {"code": "I0", "devices": [{"eui": eui(1, 2), "status": "Decommissioned"}]}


async def test_decommission_by_another_supplier_is_e4(seeded: SmartMeteringInventory) -> None:
    reply = await InventoryRequests(seeded).decommission(body(user=S2, device_id=eui(1, 2)))
    assert reply["code"] == "E4"


async def test_decommission_of_unknown_device_is_e19(seeded: SmartMeteringInventory) -> None:
    reply = await InventoryRequests(seeded).decommission(body(device_id="00-00-00-00-00-00-00-01"))
    assert reply["code"] == "E19"


async def test_update_inventory_sets_details_and_status(seeded: SmartMeteringInventory) -> None:
    requests = InventoryRequests(seeded)
    details = await requests.update_inventory(
        body(device_id=eui(1, 4), device_details={"firmware_version": "00020000"})
    )
    assert details["code"] == "I0"
    record = await seeded.device(eui(1, 4))
    assert record is not None and record.firmware_version == "00020000"
    refused = await requests.update_inventory(body(device_id=eui(1, 4), status_except_ch="Pending"))
    assert refused["code"] == "E5"  # a Commissioned device cannot go back to Pending by 8.4


async def test_hub_install_and_returns(inventory: SmartMeteringInventory) -> None:
    requests = InventoryRequests(inventory)
    chf, gpf = "00-DC-C5-FF-00-00-01-00", "00-DC-C5-FF-00-00-01-01"
    await inventory.add_device(chf, DeviceType.CHF, StatusEvent.CH_DELIVERY, reason="delivery")
    await inventory.add_device(
        gpf, DeviceType.GPF, StatusEvent.CH_DELIVERY, reason="delivery", hub_eui=chf
    )
    installed = await requests.hub_status_update(body(variant="8.14.1", device_id=chf))
    assert installed["devices"] == [
        {"eui": chf, "status": "Commissioned"},
        {"eui": gpf, "status": "InstalledNotCommissioned"},
    ]
    returned = await requests.hub_status_update(body(variant="8.14.3", device_id=chf))
    assert {d["status"] for d in returned["devices"]} == {"Decommissioned"}


async def test_hub_status_update_for_a_meter_is_e11(seeded: SmartMeteringInventory) -> None:
    reply = await InventoryRequests(seeded).hub_status_update(
        body(variant="8.14.4", device_id=eui(1, 2))
    )
    assert reply["code"] == "E11"


async def test_wan_matrix_reports_coverage_from_the_estate(seeded: SmartMeteringInventory) -> None:
    requests = InventoryRequests(seeded)
    known = await requests.wan_matrix(body(postcode=postcode(2)))
    assert known["responses"][0]["coverage_availability"] is True
    assert known["responses"][0]["connectivity_likelihood"] == "High"
    unknown = await requests.wan_matrix(body(postcode="ZZ9 9ZZ"))
    assert unknown["code"] == "I0" and unknown["responses"][0]["csp_region"] == "North"


async def test_eligibility_served_from_the_inventory(seeded: SmartMeteringInventory) -> None:
    requests = InventoryRequests(seeded)
    ok = await requests.eligibility_check(
        {"eui": eui(2, 2), "user_eui": S2, "user_roles": ["IS"], "variant": "4.1.1"}
    )
    wrong = await requests.eligibility_check(
        {"eui": eui(2, 2), "user_eui": S1, "user_roles": ["IS"], "variant": "4.1.1"}
    )
    assert (ok["code"], wrong["code"]) == (None, "E4")
