"""Databases: SQLite by default (one file per store), PostgreSQL by URL.

``Database.run(fn)`` runs ``fn(connection)`` (plain synchronous SQLAlchemy Core/ORM code) in one
transaction. For SQLite it runs right in the event loop: a statement on a local file takes tens
of microseconds, far less than handing it to a driver thread and back (aiosqlite), whose every
handoff can also wait out the GIL switch interval behind a busy loop. For PostgreSQL it runs on
asyncpg through ``AsyncConnection.run_sync``. Either way callers write the same code.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit survives a crash of the process
(what the tests kill), and a power cut loses at most the last moments, not consistency.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import Connection, MetaData, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

T = TypeVar("T")


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _no_autocheckpoint(dbapi_conn: Any, _: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """An async engine (for code that wants AsyncSession); SQLite gets one WAL connection."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


class Database:
    """One store's database, for code written against a synchronous ``Connection``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else url.split(":", 1)[0].split("+")[0]
        self._sync: sqlalchemy.Engine | None = None
        self._async: AsyncEngine | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self._path: str | None = None
        if self.dialect == "sqlite":
            sync_url = "sqlite:" + url.split(":", 1)[1]
            self._path = url.split(":///", 1)[1] if ":///" in url else None
            self._sync = sqlalchemy.create_engine(sync_url, pool_size=1, max_overflow=0)
            event.listen(self._sync, "connect", _sqlite_pragmas)
            # A WAL checkpoint writes and syncs the database file: never in the event loop.
            event.listen(self._sync, "connect", _no_autocheckpoint)
        else:
            self._async = create_async_engine(
                url, pool_size=10, max_overflow=10, pool_pre_ping=True
            )

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in one transaction and return its result (rolled back if it raises)."""
        if self._sync is not None:
            if self._checkpointer is None and self._path and self._path != ":memory:":
                self._checkpointer = asyncio.get_running_loop().create_task(self._checkpoints())
            with self._sync.begin() as conn:
                return fn(conn)
        assert self._async is not None
        async with self._async.begin() as aconn:
            return await aconn.run_sync(fn)

    async def create_all(self, metadata: MetaData) -> None:
        await self.run(lambda conn: metadata.create_all(conn))

    async def _checkpoints(self, interval: float = 2.0) -> None:
        """Fold the WAL into the database file now and then, in a worker thread, with a
        connection of its own (a PASSIVE checkpoint never blocks the writer)."""
        assert self._path is not None
        path = self._path

        def checkpoint() -> None:
            conn = sqlite3.connect(path, timeout=10)
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                conn.close()

        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(checkpoint)
            except sqlite3.Error:
                pass  # busy or gone: the next round tries again

    async def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if self._sync is not None:
            self._sync.dispose()
        if self._async is not None:
            await self._async.dispose()


Operation = Callable[[Connection], Any]


class GroupCommit:
    """Runs many small writes in few transactions (a "group commit").

    ``await run(op)`` queues ``op`` (a function of a connection) and returns its result once the
    transaction that ran it has committed. Operations queued while a transaction is being written
    all go into the next one, so under load the commit is shared by every write waiting for it,
    and when idle a write commits at once. If a batch fails, its operations are retried one per
    transaction so that one bad write fails alone.
    """

    def __init__(self, db: Database, *, max_batch: int = 256) -> None:
        self.db = db
        self.max_batch = max_batch
        self._queue: list[tuple[Operation, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.operations = 0

    async def run(self, op: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._writer())
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((op, future))
        self._wake.set()
        return await future

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[Operation, asyncio.Future[Any]]]) -> None:
        try:
            results = await self.db.run(lambda conn: [op(conn) for op, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            for item in batch:  # isolate the failing operation
                await self._commit([item])
            return
        self.batches += 1
        self.operations += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
