"""DSP-held future-dated Service Requests: kept until their ExecutionDateTime, then sent.

A device Service Request whose SRV the DSP holds (future-dated response pattern ``dsp``) and
whose body carries an ``ExecutionDateTime`` in the future has passed every check (its RequestID
counter is spent) and is answered ``I99`` at once. Its ``sr.accepted`` body is committed to the
``future_dated`` table (its own database) before that answer, so a restart of the User Gateway
loses nothing. When it falls due, :meth:`FutureDatedRequests.release_due` publishes it as an
ordinary ``sr.accepted`` (confirmed) and only then marks it sent: transform, the WAN and the
device carry it as an on-demand request and the User receives the normal async Response.

A crash between the publication and the mark means the request is published once more at the
next start (at least once, as everywhere on the bus); the User still gets one Response, because
delivery keeps one Response per RequestID (the outbox's ``delivery_key``), and a device answers a
repeated command from its replay cache.

The clock is injected (``clock`` returns epoch seconds) so tests need not wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from prometheus_client import Counter
from sqlalchemy import Connection, Float, Integer, LargeBinary, String, Table, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dccsim.bus import Bus, Envelope
from dccsim.bus.topology import SR_ACCEPTED
from dccsim.metrics import ServiceMetrics
from dccsim.storage import Database

log = logging.getLogger(__name__)

HELD, SENT = "held", "sent"


class FutureDatedBase(DeclarativeBase):
    pass


class FutureDatedEntry(FutureDatedBase):
    __tablename__ = "future_dated"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(80), unique=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    srv: Mapped[str] = mapped_column(String(16))
    execute_at: Mapped[float] = mapped_column(Float, index=True)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)  # the encoded sr.accepted envelope
    accepted_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), index=True)
    sent_at: Mapped[float | None] = mapped_column(Float, nullable=True)


_TABLE = cast(Table, FutureDatedEntry.__table__)


class FutureDatedMetrics:
    def __init__(self, metrics: ServiceMetrics) -> None:
        r = metrics.registry
        self.held = Counter(
            "dccsim_future_dated_held",
            "DSP-held future-dated requests accepted and kept until their time",
            ["srv"],
            registry=r,
        )
        self.sent = Counter(
            "dccsim_future_dated_sent",
            "DSP-held future-dated requests sent on at their time",
            ["srv"],
            registry=r,
        )


class FutureDatedRequests:
    """The held requests, and the loop that sends each when it falls due."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        metrics: ServiceMetrics,
        *,
        clock: Callable[[], float] = time.time,
        max_wait_s: float = 1.0,
    ) -> None:
        self.db = db
        self.bus = bus
        self.metrics = FutureDatedMetrics(metrics)
        self._clock = clock
        self._max_wait_s = max_wait_s
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    async def create_schema(self) -> None:
        await self.db.create_all(FutureDatedBase.metadata)

    async def hold(
        self, *, request_id: str, srv: str, execute_at: float, accepted_body: dict[str, Any]
    ) -> None:
        """Keep an accepted request until ``execute_at`` (epoch seconds); committed before this
        returns. A RequestID already held is kept once (the counter check makes that rare)."""
        values = {
            "request_id": request_id,
            "user_id": str(accepted_body["user_id"]),
            "srv": srv,
            "execute_at": execute_at,
            "envelope": Envelope("sr.accepted", request_id, accepted_body).encode(),
            "accepted_at": self._clock(),
            "status": HELD,
        }

        def store(conn: Connection) -> None:
            exists = conn.execute(
                select(_TABLE.c.id).where(_TABLE.c.request_id == request_id)
            ).first()
            if exists is None:
                conn.execute(_TABLE.insert().values(values))

        await self.db.run(store)
        self.metrics.held.labels(srv).inc()
        self.bus.emit_timeline(request_id, "future_dated_held", srv=srv)
        log.info("future-dated request held", extra={"srv": srv, "execute_at": execute_at})
        self._wake.set()

    async def held(self) -> list[tuple[str, float]]:
        """(RequestID, execute_at) of every request still held, soonest first."""
        query = (
            select(_TABLE.c.request_id, _TABLE.c.execute_at)
            .where(_TABLE.c.status == HELD)
            .order_by(_TABLE.c.execute_at)
        )
        rows = await self.db.run(lambda conn: conn.execute(query).all())
        return [(str(rid), float(at)) for rid, at in rows]

    async def next_due(self) -> float | None:
        """The soonest execute_at still held, or None."""
        query = select(func.min(_TABLE.c.execute_at)).where(_TABLE.c.status == HELD)
        value = await self.db.run(lambda conn: conn.execute(query).scalar())
        return None if value is None else float(value)

    async def release_due(self) -> int:
        """Publish every held request whose time has come, oldest first; returns how many.
        Each is marked sent only after the broker confirmed it (see the module docstring)."""
        async with self._lock:
            now = self._clock()
            query = (
                select(_TABLE.c.id, _TABLE.c.srv, _TABLE.c.envelope)
                .where(_TABLE.c.status == HELD, _TABLE.c.execute_at <= now)
                .order_by(_TABLE.c.execute_at, _TABLE.c.id)
            )
            rows = await self.db.run(lambda conn: conn.execute(query).all())
            for row_id, srv, raw in rows:
                kept = Envelope.decode(bytes(raw))
                # the pipeline's latency metrics count from when the DCC sends it on
                body = {**kept.body, "received_at": time.time()}
                await self.bus.publish(SR_ACCEPTED, Envelope(kept.kind, kept.request_id, body))
                sent_at = self._clock()
                statement = (
                    _TABLE.update()
                    .where(_TABLE.c.id == row_id)
                    .values(status=SENT, sent_at=sent_at)
                )
                await self.db.run(_executor(statement))
                self.metrics.sent.labels(srv).inc()
                self.bus.emit_timeline(kept.request_id, "future_dated_sent", srv=srv)
                log.info("future-dated request sent at its time", extra={"srv": srv})
            return len(rows)

    async def run(self) -> None:
        """Send requests as they fall due, for ever: wakes at the soonest one's time, when a new
        one is held, and at least every ``max_wait_s`` (so an injected clock is followed)."""
        while True:
            try:
                await self.release_due()
                soonest = await self.next_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not send the future-dated requests due; trying again")
                soonest = None
            wait = self._max_wait_s
            if soonest is not None:
                wait = min(wait, max(0.0, soonest - self._clock()))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass


def _executor(statement: Any) -> Callable[[Connection], Any]:
    def execute(conn: Connection) -> Any:
        return conn.execute(statement)

    return execute
