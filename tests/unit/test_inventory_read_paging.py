"""8.2 Read Inventory beyond one Response: the inventory serves the pages of 17 devices in
batches (``first_page`` / ``max_pages`` in, ``next_page`` out), in a stable order, on SQLite and
PostgreSQL (the ``inventory`` fixture of the inventory suite)."""

from __future__ import annotations

import pytest

from services.inventory.requests import READ_INVENTORY_PAGE, InventoryRequests
from services.inventory.seed import postcode, seed_estate
from services.inventory.store import SmartMeteringInventory
from tests.unit.test_inventory_store import S1, inventory, pg_database  # noqa: F401


@pytest.fixture
async def crowded(inventory: SmartMeteringInventory) -> SmartMeteringInventory:  # noqa: F811
    # Postcodes repeat every 90 premises: premises 1, 91, ..., 721 share one (45 devices).
    await seed_estate(inventory, premises=9 * 90, suppliers=1)
    return inventory


def read(**fields: object) -> dict[str, object]:
    return {"user_eui": S1, "user_roles": ["IS", "GS"], "postcode": postcode(1), **fields}


async def test_pages_come_in_batches_until_next_page_is_none(
    crowded: SmartMeteringInventory,
) -> None:
    requests = InventoryRequests(crowded)
    first = await requests.read_inventory(read(max_pages=2))
    assert (first["code"], first["total"], first["page_count"]) == ("I0", 45, 3)
    assert [len(p) for p in first["pages"]] == [READ_INVENTORY_PAGE, READ_INVENTORY_PAGE]
    assert first["next_page"] == 2 and first["truncated"] is True
    rest = await requests.read_inventory(read(first_page=first["next_page"], max_pages=2))
    assert [len(p) for p in rest["pages"]] == [45 - 2 * READ_INVENTORY_PAGE]
    assert rest["next_page"] is None and rest["truncated"] is False
    everything = await requests.read_inventory(read())
    batched = [d for page in [*first["pages"], *rest["pages"]] for d in page]
    whole = [d for page in everything["pages"] for d in page]
    assert [d["device_id"] for d in batched] == [d["device_id"] for d in whole]
    assert len({d["device_id"] for d in whole}) == 45


async def test_a_page_past_the_end_is_empty_and_final(crowded: SmartMeteringInventory) -> None:
    reply = await InventoryRequests(crowded).read_inventory(read(first_page=9))
    assert reply["pages"] == [] and reply["next_page"] is None


async def test_bad_paging_values_are_e13(crowded: SmartMeteringInventory) -> None:
    requests = InventoryRequests(crowded)
    assert (await requests.read_inventory(read(first_page=-1)))["code"] == "E13"
    assert (await requests.read_inventory(read(max_pages=0)))["code"] == "E13"
