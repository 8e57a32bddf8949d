"""RequestID counters: strictly increasing per originator, and still so after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from dccsim.duis.codes import INVALID_REQUEST_ID, DuisError
from dccsim.storage import Database
from services.user_gateway.counters import CounterStore

ORIGINATOR = "90-B3-D5-1F-30-01-00-00"


async def store_at(path: Path) -> CounterStore:
    store = CounterStore(Database(f"sqlite+aiosqlite:///{path}"))
    await store.create_schema()
    return store


async def test_counter_must_increase(tmp_path: Path) -> None:
    store = await store_at(tmp_path / "c.db")
    await store.advance(ORIGINATOR, 10)
    await store.advance(ORIGINATOR, 11)
    for stale in (11, 5):
        with pytest.raises(DuisError) as info:
            await store.advance(ORIGINATOR, stale)
        assert info.value.code == INVALID_REQUEST_ID
    await store.advance("90-B3-D5-1F-30-02-00-00", 1)  # per originator


async def test_replay_refused_after_restart(tmp_path: Path) -> None:
    first = await store_at(tmp_path / "c.db")
    await first.advance(ORIGINATOR, 2**64 - 2)  # the top of the unsigned 64-bit range
    await first.close()
    second = await store_at(tmp_path / "c.db")
    with pytest.raises(DuisError):
        await second.advance(ORIGINATOR, 2**64 - 2)
    await second.advance(ORIGINATOR, 2**64 - 1)
    assert await second.last(ORIGINATOR) == 2**64 - 1
