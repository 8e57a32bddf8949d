"""Delivery of asynchronous DUIS Responses and Alerts to each User's Receive Response Service.

A persistent outbox: a message from the bus is written to the outbox table (deduplicated by its
delivery key) before it is acked, so a crash never loses it. A worker POSTs due entries over TLS,
retrying with capped exponential backoff (the SEC asks for a retry within 300 s) until delivered,
or until the hold period (2 days) passes, when the entry is marked ``expired`` and kept for
inspection. Nothing is dropped silently: every outcome is a row and a metric.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

import aiohttp
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Float, Integer, LargeBinary, String, Text, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dccsim.bus import Envelope, Permanent
from dccsim.config import UserGatewaySettings
from dccsim.logging import request_context
from dccsim.metrics import ServiceMetrics
from dccsim.participants import ParticipantRegister

log = logging.getLogger(__name__)

PENDING, DELIVERED, EXPIRED = "pending", "delivered", "expired"


class OutboxBase(DeclarativeBase):
    pass


class OutboxEntry(OutboxBase):
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_key: Mapped[str] = mapped_column(String(200), unique=True)
    request_id: Mapped[str] = mapped_column(String(80), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column(Float)
    next_attempt_at: Mapped[float] = mapped_column(Float, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), index=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    delivered_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class DeliveryMetrics:
    def __init__(self, metrics: ServiceMetrics) -> None:
        r = metrics.registry
        self.attempts = Counter(
            "dccsim_delivery_attempts", "POSTs to Users' receive services", ["outcome"], registry=r
        )
        self.delivered = Counter(
            "dccsim_delivery_delivered", "Responses and alerts delivered", registry=r
        )
        self.expired = Counter(
            "dccsim_delivery_expired", "Entries that passed the hold period undelivered", registry=r
        )
        self.pending = Gauge(
            "dccsim_delivery_pending", "Outbox entries not yet delivered", registry=r
        )
        self.latency = Histogram(
            "dccsim_delivery_latency_seconds",
            "Outbox entry creation to successful delivery",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )


class Outbox:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: UserGatewaySettings,
        participants: ParticipantRegister,
        client_ssl: ssl.SSLContext | None,
        metrics: ServiceMetrics,
    ) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.settings = settings
        self.participants = participants
        self.client_ssl = client_ssl
        self.metrics = DeliveryMetrics(metrics)
        self._wake = asyncio.Event()
        self._in_flight: set[int] = set()
        self._session: aiohttp.ClientSession | None = None

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(OutboxBase.metadata.create_all)

    async def enqueue(self, envelope: Envelope) -> None:
        """Bus handler for ``duis.response``: persist, then (by returning) let the bus ack."""
        body = envelope.body
        try:
            key, user_id, xml = str(body["delivery_key"]), str(body["user_id"]), body["xml"]
        except KeyError as exc:
            raise Permanent(f"delivery message lacks {exc}") from exc
        if not isinstance(xml, bytes):
            raise Permanent("delivery xml must be bytes")
        now = time.time()
        values = dict(
            delivery_key=key,
            request_id=envelope.request_id,
            user_id=user_id,
            body=xml,
            created_at=now,
            next_attempt_at=now,
            attempts=0,
            status=PENDING,
        )
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        async with self.sessions.begin() as session:
            await session.execute(insert(OutboxEntry).values(**values).on_conflict_do_nothing())
        self._wake.set()

    async def pending_count(self) -> int:
        async with self.sessions() as session:
            n = await session.scalar(
                select(func.count()).select_from(OutboxEntry).where(OutboxEntry.status == PENDING)
            )
            return int(n or 0)

    async def run(self) -> None:
        """The delivery worker: forever, deliver what is due."""
        timeout = aiohttp.ClientTimeout(total=self.settings.delivery_timeout_s)
        connector = aiohttp.TCPConnector(
            ssl=self.client_ssl if self.client_ssl else False,
            limit=self.settings.delivery_concurrency,
        )
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        semaphore = asyncio.Semaphore(self.settings.delivery_concurrency)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                due = await self._due(limit=self.settings.delivery_concurrency * 4)
                self.metrics.pending.set(await self.pending_count())
                for entry in due:
                    self._in_flight.add(entry.id)
                    await semaphore.acquire()
                    task = asyncio.create_task(self._attempt(entry))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    task.add_done_callback(lambda _: semaphore.release())
                if not due:
                    self._wake.clear()
                    wait = await self._seconds_to_next()
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 1.0))
                    except TimeoutError:
                        pass
        finally:
            for task in tasks:
                task.cancel()
            await self._session.close()

    async def _due(self, limit: int) -> list[OutboxEntry]:
        now = time.time()
        async with self.sessions() as session:
            rows = (
                await session.scalars(
                    select(OutboxEntry)
                    .where(OutboxEntry.status == PENDING, OutboxEntry.next_attempt_at <= now)
                    .order_by(OutboxEntry.next_attempt_at)
                    .limit(limit)
                )
            ).all()
        return [r for r in rows if r.id not in self._in_flight]

    async def _seconds_to_next(self) -> float:
        async with self.sessions() as session:
            nxt = await session.scalar(
                select(func.min(OutboxEntry.next_attempt_at)).where(OutboxEntry.status == PENDING)
            )
        return 1.0 if nxt is None else max(0.0, float(nxt) - time.time())

    async def _attempt(self, entry: OutboxEntry) -> None:
        try:
            with request_context(entry.request_id):
                error = await self._post(entry)
                await self._record(entry, error)
        except Exception:
            log.exception("delivery bookkeeping failed")
        finally:
            self._in_flight.discard(entry.id)
            self._wake.set()

    async def _post(self, entry: OutboxEntry) -> str | None:
        participant = self.participants.get(entry.user_id)
        if participant is None or not participant.response_url:
            return f"User {entry.user_id} has no Receive Response Service URL registered"
        assert self._session is not None
        try:
            async with self._session.post(
                participant.response_url,
                data=entry.body,
                headers={"Content-Type": "application/xml"},
            ) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status} {resp.reason}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"

    async def _record(self, entry: OutboxEntry, error: str | None) -> None:
        now = time.time()
        async with self.sessions.begin() as session:
            if error is None:
                await session.execute(
                    update(OutboxEntry)
                    .where(OutboxEntry.id == entry.id)
                    .values(
                        status=DELIVERED,
                        delivered_at=now,
                        attempts=entry.attempts + 1,
                        last_error=None,
                    )
                )
                self.metrics.attempts.labels("delivered").inc()
                self.metrics.delivered.inc()
                self.metrics.latency.observe(now - entry.created_at)
                log.info(
                    "delivered", extra={"user_id": entry.user_id, "attempts": entry.attempts + 1}
                )
                return
            attempts = entry.attempts + 1
            self.metrics.attempts.labels("failed").inc()
            if now - entry.created_at >= self.settings.delivery_hold_s:
                status, nxt = EXPIRED, now
                self.metrics.expired.inc()
                log.error(
                    "delivery expired after the hold period",
                    extra={"user_id": entry.user_id, "error": error},
                )
            else:
                status = PENDING
                backoff = min(
                    self.settings.delivery_retry_initial_s * 2 ** (attempts - 1),
                    self.settings.delivery_retry_max_s,
                )
                nxt = now + backoff
                log.warning(
                    "delivery failed; will retry",
                    extra={
                        "user_id": entry.user_id,
                        "error": error,
                        "retry_in_s": round(backoff, 3),
                    },
                )
            await session.execute(
                update(OutboxEntry)
                .where(OutboxEntry.id == entry.id)
                .values(status=status, next_attempt_at=nxt, attempts=attempts, last_error=error)
            )
