"""RequestID counters: strictly increasing per originator, persisted before a request is taken.

Counters are unsigned 64-bit; they are stored as 20-digit zero-padded strings so that SQLite's
signed integers never overflow and string order equals numeric order.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import String, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dccsim.duis.codes import INVALID_REQUEST_ID, DuisError


class CounterBase(DeclarativeBase):
    pass


class RequestCounter(CounterBase):
    __tablename__ = "request_counters"
    originator: Mapped[str] = mapped_column(String(23), primary_key=True)
    last_counter: Mapped[str] = mapped_column(String(20))


def _pad(counter: int) -> str:
    return f"{counter:020d}"


class CounterStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._locks: dict[str, asyncio.Lock] = {}

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(CounterBase.metadata.create_all)

    async def last(self, originator: str) -> int | None:
        async with self.sessions() as session:
            row = await session.get(RequestCounter, originator)
            return int(row.last_counter) if row else None

    async def advance(self, originator: str, counter: int) -> None:
        """Record ``counter`` for ``originator``, or raise DuisError if it does not increase."""
        lock = self._locks.setdefault(originator, asyncio.Lock())
        async with lock, self.sessions.begin() as session:
            result = await session.execute(
                update(RequestCounter)
                .where(RequestCounter.originator == originator)
                .where(RequestCounter.last_counter < _pad(counter))
                .values(last_counter=_pad(counter))
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return
            existing = await session.scalar(
                select(RequestCounter.last_counter).where(RequestCounter.originator == originator)
            )
            if existing is not None:
                raise DuisError(
                    INVALID_REQUEST_ID,
                    f"RequestID counter {counter} is not above the last one accepted from "
                    f"{originator} ({int(existing)})",
                )
            try:
                await session.execute(
                    insert(RequestCounter).values(originator=originator, last_counter=_pad(counter))
                )
            except IntegrityError as exc:  # another process inserted first
                raise DuisError(
                    INVALID_REQUEST_ID, "RequestID counter raced; send it again higher"
                ) from exc
