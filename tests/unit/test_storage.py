"""Database.run and GroupCommit: one transaction per batch, a bad write fails alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError

from dccsim.storage import Database, GroupCommit

META = MetaData()
ITEMS = Table("items", META, Column("id", Integer, primary_key=True), Column("v", String))


@pytest.fixture
async def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    await database.create_all(META)
    return database


async def test_run_commits_and_returns(db: Database) -> None:
    await db.run(lambda c: c.execute(ITEMS.insert().values(id=1, v="a")))
    assert await db.run(lambda c: c.scalar(select(ITEMS.c.v))) == "a"


async def test_run_rolls_back_when_the_function_raises(db: Database) -> None:
    def bad(conn: Connection) -> None:
        conn.execute(ITEMS.insert().values(id=1, v="a"))
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        await db.run(bad)
    assert await db.run(lambda c: c.scalar(select(ITEMS.c.id))) is None


async def test_group_commit_batches_concurrent_writes(db: Database) -> None:
    group = GroupCommit(db)

    def put(i: int) -> object:
        return lambda c: c.execute(ITEMS.insert().values(id=i, v=str(i))) and i

    results = await asyncio.gather(*(group.run(put(i)) for i in range(50)))
    assert results == list(range(50))
    assert group.batches < 50  # shared commits
    assert group.operations == 50
    await group.close()


async def test_group_commit_isolates_a_failing_write(db: Database) -> None:
    await db.run(lambda c: c.execute(ITEMS.insert().values(id=7, v="taken")))
    group = GroupCommit(db)
    ok = [
        group.run(lambda c, i=i: c.execute(ITEMS.insert().values(id=i, v="x")) and i)
        for i in (1, 2, 3)
    ]
    dup = group.run(lambda c: c.execute(ITEMS.insert().values(id=7, v="dup")))
    outcomes = await asyncio.gather(*ok, dup, return_exceptions=True)
    assert outcomes[:3] == [1, 2, 3]
    assert isinstance(outcomes[3], IntegrityError)
    ids = await db.run(lambda c: sorted(c.scalars(select(ITEMS.c.id)).all()))
    assert ids == [1, 2, 3, 7]
    await group.close()
