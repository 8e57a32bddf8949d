"""RequestID counters: strictly increasing per originator, persisted before a request is taken.

Counters are unsigned 64-bit; they are stored as 20-digit zero-padded strings so that SQLite's
signed integers never overflow and string order equals numeric order.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import String, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dccsim.duis.codes import INVALID_REQUEST_ID, DuisError
from dccsim.storage import GroupCommit


class CounterBase(DeclarativeBase):
    pass


class RequestCounter(CounterBase):
    __tablename__ = "request_counters"
    originator: Mapped[str] = mapped_column(String(23), primary_key=True)
    last_counter: Mapped[str] = mapped_column(String(20))


def _pad(counter: int) -> str:
    return f"{counter:020d}"


class CounterStore:
    """The last counter accepted per originator, checked in memory and persisted before the
    request is taken. The conditional UPDATE still guards the database, so two gateways sharing
    one (PostgreSQL) store cannot both accept the same counter."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.writes = GroupCommit(engine)
        self._last: dict[str, int | None] = {}
        self._loading: dict[str, asyncio.Future[int | None]] = {}

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(CounterBase.metadata.create_all)

    async def close(self) -> None:
        await self.writes.close()

    async def last(self, originator: str) -> int | None:
        if originator in self._last:
            return self._last[originator]
        pending = self._loading.get(originator)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._loading[originator] = future
        try:
            async with self.sessions() as session:
                row = await session.get(RequestCounter, originator)
            value = int(row.last_counter) if row else None
            self._last.setdefault(originator, value)
            future.set_result(self._last[originator])
            return self._last[originator]
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            self._loading.pop(originator, None)

    async def advance(self, originator: str, counter: int) -> None:
        """Record ``counter`` for ``originator``, or raise DuisError if it does not increase."""
        last = await self.last(originator)
        if last is not None and counter <= last:
            raise DuisError(
                INVALID_REQUEST_ID,
                f"RequestID counter {counter} is not above the last one accepted from "
                f"{originator} ({last})",
            )
        self._last[originator] = counter  # reserved: later requests must beat it

        async def persist(conn: AsyncConnection) -> bool:
            result = await conn.execute(
                update(RequestCounter)
                .where(RequestCounter.originator == originator)
                .where(RequestCounter.last_counter < _pad(counter))
                .values(last_counter=_pad(counter))
            )
            if result.rowcount == 1:
                return True
            existing = await conn.scalar(
                select(RequestCounter.last_counter).where(RequestCounter.originator == originator)
            )
            if existing is not None:
                return False
            await conn.execute(
                insert(RequestCounter).values(originator=originator, last_counter=_pad(counter))
            )
            return True

        try:
            accepted = await self.writes.run(persist)
        except IntegrityError as exc:  # another gateway inserted first
            self._last.pop(originator, None)
            raise DuisError(
                INVALID_REQUEST_ID, "RequestID counter raced; send it again higher"
            ) from exc
        except Exception:
            self._last.pop(originator, None)  # reload the truth next time
            raise
        if not accepted:
            self._last.pop(originator, None)
            raise DuisError(
                INVALID_REQUEST_ID,
                f"RequestID counter {counter} is not above the last one accepted from {originator}",
            )
