"""RequestID counters: strictly increasing per originator, persisted before a request is taken.

Counters are unsigned 64-bit; they are stored as 20-digit zero-padded strings so that SQLite's
signed integers never overflow and string order equals numeric order.
"""

from __future__ import annotations

import asyncio
from typing import cast

from sqlalchemy import Connection, String, Table, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dccsim.duis.codes import INVALID_REQUEST_ID, DuisError
from dccsim.storage import Database, GroupCommit


class CounterBase(DeclarativeBase):
    pass


class RequestCounter(CounterBase):
    __tablename__ = "request_counters"
    originator: Mapped[str] = mapped_column(String(23), primary_key=True)
    last_counter: Mapped[str] = mapped_column(String(20))


_COUNTERS = cast(Table, RequestCounter.__table__)
# Prepared once; SQLAlchemy caches their compiled form.
_ADVANCE = (
    _COUNTERS.update()
    .where(_COUNTERS.c.originator == bindparam("o"), _COUNTERS.c.last_counter < bindparam("c"))
    .values(last_counter=bindparam("c"))
)
_LAST = select(_COUNTERS.c.last_counter).where(_COUNTERS.c.originator == bindparam("o"))
_FIRST = _COUNTERS.insert().values(originator=bindparam("o"), last_counter=bindparam("c"))


def _pad(counter: int) -> str:
    return f"{counter:020d}"


class CounterStore:
    """The last counter accepted per originator, checked in memory and persisted before the
    request is taken. The conditional UPDATE still guards the database, so two gateways sharing
    one (PostgreSQL) store cannot both accept the same counter."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.writes = GroupCommit(db)
        self._last: dict[str, int | None] = {}
        self._loading: dict[str, asyncio.Future[int | None]] = {}

    async def create_schema(self) -> None:
        await self.db.create_all(CounterBase.metadata)

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
            stored = await self.db.run(
                lambda conn: conn.scalar(
                    select(RequestCounter.last_counter).where(
                        RequestCounter.originator == originator
                    )
                )
            )
            value = int(stored) if stored is not None else None
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

        padded = _pad(counter)

        def persist(conn: Connection) -> bool:
            params = {"o": originator, "c": padded}
            if conn.execute(_ADVANCE, params).rowcount == 1:
                return True
            if conn.scalar(_LAST, params) is not None:
                return False
            conn.execute(_FIRST, params)
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
