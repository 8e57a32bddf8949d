"""Delivery of asynchronous DUIS Responses and Alerts to each User's Receive Response Service.

A persistent outbox: a message from the bus is written to the outbox table (deduplicated by its
delivery key) before it is acked, so a crash never loses it. A worker POSTs due entries over TLS,
retrying with capped exponential backoff (the SEC asks for a retry within 300 s) until delivered,
or until the hold period (2 days) passes, when the entry is marked ``expired`` and kept for
inspection. Nothing is dropped silently: every outcome is a row and a metric.

A User may register several Receive Response Service URLs (the participant register keeps them
in order). Every delivery attempt, the first and each retry from the outbox alike, POSTs to them
in that order and stops at the first that accepts (a 2xx answer): the first URL is the primary,
the others stand by, and the primary is tried first again on every attempt, so delivery returns
to it as soon as it is back. A Response goes to one URL, not to all. The attempt fails only when
every URL refused it or could not be reached (each URL within ``delivery_timeout_s``), and then
the outbox treats the Response as before: backoff, hold, expiry, the error naming each URL's
failure. Failing over happens inside one attempt, so it neither reorders a User's Responses nor
weakens at least once (a URL that took a Response whose answer was lost may see it again, from a
later URL in the same attempt or from a retry; Users de-duplicate by ResponseID, as with one
URL).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

import aiohttp
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import (
    Connection,
    Float,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dccsim.bus import Envelope, Permanent
from dccsim.config import UserGatewaySettings
from dccsim.logging import request_context
from dccsim.metrics import ServiceMetrics
from dccsim.participants import ParticipantRegister
from dccsim.storage import Database, GroupCommit

log = logging.getLogger(__name__)

PENDING, DELIVERED, EXPIRED = "pending", "delivered", "expired"
_HANDLED_KEYS = 200_000  # delivery keys remembered against duplicates


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


_OUTBOX = cast(
    Table, OutboxEntry.__table__
)  # Core statements: the ORM adds nothing to these writes


@functools.lru_cache(maxsize=16)
def _update_statement(columns: tuple[str, ...]) -> Any:
    """UPDATE outbox SET <columns> WHERE id = :entry_id, one per column set, built once."""
    return (
        _OUTBOX.update()
        .where(_OUTBOX.c.id == bindparam("entry_id"))
        .values({c: bindparam(c) for c in columns})
    )


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
        self.failovers = Counter(
            "dccsim_delivery_failovers",
            "Deliveries accepted by a User's Receive Response Service URL other than its first",
            registry=r,
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
    """The persistent outbox and its delivery worker.

    Rows are the truth; the worker keeps the schedule (a heap of (due time, id)) in memory,
    rebuilt from the pending rows at start, so it never polls the database. Writes go through a
    group commit. One worker owns one outbox (one User Gateway process per database).
    """

    def __init__(
        self,
        db: Database,
        settings: UserGatewaySettings,
        participants: ParticipantRegister,
        client_ssl: ssl.SSLContext | None,
        metrics: ServiceMetrics,
        on_delivered: Callable[[str], None] | None = None,
    ) -> None:
        self.on_delivered = on_delivered  # told the RequestID of each Response delivered
        self.db = db
        self.settings = settings
        self.participants = participants
        self.client_ssl = client_ssl
        self.metrics = DeliveryMetrics(metrics)
        self.writes = GroupCommit(db)
        self._insert: Any = None
        self._handled: OrderedDict[str, None] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._fresh: dict[int, OutboxEntry] = {}  # entries enqueued here, so no reload is needed
        self._schedule: list[tuple[float, int]] = []
        self._scheduled: set[int] = set()
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self.metrics.pending.set_function(lambda: float(len(self._scheduled)))

    def _delivered(self, request_id: str, key: str) -> None:
        if self.on_delivered is not None and key.startswith("response:"):
            self.on_delivered(request_id)

    async def create_schema(self) -> None:
        await self.db.create_all(OutboxBase.metadata)
        rows = await self.db.run(
            lambda conn: conn.execute(
                select(OutboxEntry.id, OutboxEntry.next_attempt_at, OutboxEntry.delivery_key).where(
                    OutboxEntry.status == PENDING
                )
            ).all()
        )
        for entry_id, due, key in rows:
            self._remember(key)
            self._schedule_entry(entry_id, due)

    def _schedule_entry(self, entry_id: int, due: float) -> None:
        if entry_id not in self._scheduled:
            self._scheduled.add(entry_id)
            heapq.heappush(self._schedule, (due, entry_id))
            self._wake.set()

    async def enqueue(self, envelope: Envelope) -> None:
        """Bus handler for ``duis.response``.

        The first attempt is made straight away, while the bus message is still unacked (a
        crash here means the broker redelivers it: at least once). Only an entry that could
        not be delivered is written to the outbox, before the message is acked, and retried
        from there. Delivery keys already handled are remembered, so a duplicate (a request
        redelivered upstream) is not delivered twice.
        """
        body = envelope.body
        try:
            key, user_id, xml = str(body["delivery_key"]), str(body["user_id"]), body["xml"]
        except KeyError as exc:
            raise Permanent(f"delivery message lacks {exc}") from exc
        if not isinstance(xml, bytes):
            raise Permanent("delivery xml must be bytes")
        if key in self._handled:
            self.metrics.attempts.labels("duplicate").inc()
            return
        running = self._inflight.get(key)
        if running is not None:  # the same Response is being delivered right now
            await asyncio.shield(running)
            self.metrics.attempts.labels("duplicate").inc()
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = done
        try:
            await self._deliver_first(envelope, key, user_id, xml)
        finally:
            self._inflight.pop(key, None)
            done.set_result(None)

    async def _deliver_first(self, envelope: Envelope, key: str, user_id: str, xml: bytes) -> None:
        now = time.time()
        error = await self._send(user_id, xml)
        if error is None:
            self._remember(key)
            self._delivered(envelope.request_id, key)
            self.metrics.attempts.labels("delivered").inc()
            self.metrics.delivered.inc()
            self.metrics.latency.observe(time.time() - now)
            return
        self.metrics.attempts.labels("failed").inc()
        values = dict(
            delivery_key=key,
            request_id=envelope.request_id,
            user_id=user_id,
            body=xml,
            created_at=now,
            next_attempt_at=now + self.settings.delivery_retry_initial_s,
            attempts=1,
            status=PENDING,
        )
        statement = self._insert_statement()

        def store(conn: Connection) -> int | None:
            entry_id: int | None = conn.execute(statement, values).scalar()
            return entry_id

        entry_id = await self.writes.run(store)
        self._remember(key)
        if entry_id is not None:  # None: a duplicate of an entry already held
            self._fresh[entry_id] = OutboxEntry(id=entry_id, last_error=error, **values)
            self._schedule_entry(entry_id, float(values["next_attempt_at"]))  # type: ignore[arg-type]
            log.warning(
                "delivery failed; held in the outbox for retry",
                extra={"user_id": user_id, "error": error},
            )

    def _remember(self, key: str) -> None:
        self._handled[key] = None
        while len(self._handled) > _HANDLED_KEYS:
            self._handled.popitem(last=False)

    def _insert_statement(self) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING id, built once (compiled form cached)."""
        if self._insert is None:
            insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
            columns = (
                "delivery_key",
                "request_id",
                "user_id",
                "body",
                "created_at",
                "next_attempt_at",
                "attempts",
                "status",
            )
            self._insert = (
                insert(_OUTBOX)
                .values({c: bindparam(c) for c in columns})
                .on_conflict_do_nothing()
                .returning(_OUTBOX.c.id)
            )
        return self._insert

    async def pending_count(self) -> int:
        n = await self.db.run(
            lambda conn: conn.scalar(
                select(func.count()).select_from(OutboxEntry).where(OutboxEntry.status == PENDING)
            )
        )
        return int(n or 0)

    async def run(self) -> None:
        """The delivery worker: forever, deliver what is due."""
        slots = asyncio.Semaphore(self.settings.delivery_concurrency)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                due = self._take_due(self.settings.delivery_concurrency)
                if not due:
                    self._wake.clear()
                    wait = self._schedule[0][0] - time.time() if self._schedule else 1.0
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=max(0.001, wait))
                    continue
                for entry in await self._load(due):
                    await slots.acquire()
                    task = asyncio.create_task(self._attempt(entry))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    task.add_done_callback(lambda _: slots.release())
        finally:
            for task in tasks:
                task.cancel()
            if self._session is not None:
                await self._session.close()
            await self.writes.close()

    def _take_due(self, limit: int) -> list[int]:
        now = time.time()
        out: list[int] = []
        while self._schedule and self._schedule[0][0] <= now and len(out) < limit:
            out.append(heapq.heappop(self._schedule)[1])
        return out

    async def _load(self, ids: list[int]) -> list[OutboxEntry]:
        rows = [self._fresh[i] for i in ids if i in self._fresh]
        missing = [i for i in ids if i not in self._fresh]
        if missing:

            def read(conn: Connection) -> list[OutboxEntry]:
                with Session(bind=conn, expire_on_commit=False) as session:
                    found = session.scalars(
                        select(OutboxEntry).where(OutboxEntry.id.in_(missing))
                    ).all()
                    session.expunge_all()
                    return list(found)

            rows.extend(await self.db.run(read))
        found = {r.id for r in rows}
        self._scheduled.difference_update(set(ids) - found)
        return [r for r in rows if r.status == PENDING]

    async def _attempt(self, entry: OutboxEntry) -> None:
        try:
            with request_context(entry.request_id):
                error = await self._post(entry)
                await self._record(entry, error)
        except Exception:
            log.exception("delivery bookkeeping failed; retrying the entry later")
            self._scheduled.discard(entry.id)
            self._schedule_entry(entry.id, time.time() + self.settings.delivery_retry_max_s)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.settings.delivery_timeout_s)
            connector = aiohttp.TCPConnector(
                ssl=self.client_ssl if self.client_ssl else False,
                limit=self.settings.delivery_concurrency * 2,
            )
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        return self._session

    async def _post(self, entry: OutboxEntry) -> str | None:
        return await self._send(entry.user_id, entry.body)

    async def _send(self, user_id: str, body: bytes) -> str | None:
        """POST to the User's Receive Response Service URLs in the order registered until one
        accepts (the policy in the module docstring); None on success, else why none did."""
        participant = self.participants.get(user_id)
        urls = participant.response_urls if participant is not None else ()
        if not urls:
            return f"User {user_id} has no Receive Response Service URL registered"
        errors: list[str] = []
        for url in urls:
            error = await self._post_to(url, body)
            if error is None:
                if errors:
                    self.metrics.failovers.inc()
                    log.warning(
                        "delivered to a further Receive Response Service URL",
                        extra={"user_id": user_id, "url": url, "error": "; ".join(errors)},
                    )
                return None
            errors.append(f"{url}: {error}" if len(urls) > 1 else error)
        return "; ".join(errors)

    async def _post_to(self, url: str, body: bytes) -> str | None:
        """One POST; None when the Receive Response Service accepted it, else why not."""
        try:
            async with self._client().post(
                url, data=body, headers={"Content-Type": "application/xml"}
            ) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status} {resp.reason}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"

    async def _record(self, entry: OutboxEntry, error: str | None) -> None:
        now = time.time()
        attempts = entry.attempts + 1
        if error is None:
            values: dict[str, object] = dict(
                status=DELIVERED, delivered_at=now, attempts=attempts, last_error=None
            )
        elif now - entry.created_at >= self.settings.delivery_hold_s:
            values = dict(status=EXPIRED, attempts=attempts, last_error=error)
        else:
            backoff = min(
                self.settings.delivery_retry_initial_s * 2 ** (attempts - 1),
                self.settings.delivery_retry_max_s,
            )
            values = dict(next_attempt_at=now + backoff, attempts=attempts, last_error=error)

        statement = _update_statement(tuple(sorted(values)))
        params = {**values, "entry_id": entry.id}

        def write(conn: Connection) -> None:
            conn.execute(statement, params)

        await self.writes.run(write)
        self._scheduled.discard(entry.id)
        for key, value in values.items():  # keep the in-memory copy in step
            setattr(entry, key, value)
        if values.get("status") in (DELIVERED, EXPIRED):
            self._fresh.pop(entry.id, None)
        if error is None:
            self._delivered(entry.request_id, entry.delivery_key)
            self.metrics.attempts.labels("delivered").inc()
            self.metrics.delivered.inc()
            self.metrics.latency.observe(now - entry.created_at)
            log.debug("delivered", extra={"user_id": entry.user_id, "attempts": attempts})
        elif values.get("status") == EXPIRED:
            self.metrics.attempts.labels("failed").inc()
            self.metrics.expired.inc()
            log.error(
                "delivery expired after the hold period",
                extra={"user_id": entry.user_id, "error": error},
            )
        else:
            self.metrics.attempts.labels("failed").inc()
            next_at = float(str(values["next_attempt_at"]))
            self._schedule_entry(entry.id, next_at)
            log.warning(
                "delivery failed; will retry",
                extra={
                    "user_id": entry.user_id,
                    "error": error,
                    "retry_in_s": round(next_at - now, 3),
                },
            )
