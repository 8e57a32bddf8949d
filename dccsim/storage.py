"""Database engines: SQLite by default (one file per store), PostgreSQL by URL.

SQLite allows one writer at a time; several pooled connections in one process only contend for
that lock (and a deferred transaction that reads first cannot wait for it), so a SQLite engine
here has exactly one connection, in WAL mode with a busy timeout for the other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


T = TypeVar("T")
Operation = Callable[[AsyncConnection], Awaitable[Any]]


class GroupCommit:
    """Runs many small writes in few transactions (a "group commit").

    ``await run(op)`` queues ``op`` (an async function of a connection) and returns its result
    once the transaction that ran it has committed. Operations queued while a transaction is in
    progress all go into the next one, so under load the cost of a commit is shared by every
    write waiting for it, and when idle a write commits at once. If a batch fails, its operations
    are retried one per transaction so that one bad write fails alone.
    """

    def __init__(self, engine: AsyncEngine, *, max_batch: int = 256) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._queue: list[tuple[Operation, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.operations = 0

    async def run(self, op: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._writer())
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
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
        results: list[Any] = []
        try:
            async with self.engine.begin() as conn:
                for op, _ in batch:
                    results.append(await op(conn))
        except Exception:
            if len(batch) == 1:
                op, future = batch[0]
                try:
                    async with self.engine.begin() as conn:
                        result = await op(conn)
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    if not future.done():
                        future.set_result(result)
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
