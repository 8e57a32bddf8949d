"""Quarantine: the excess over an anomaly threshold is kept, visible and releasable.

A quarantined request has passed every check (its RequestID counter is spent) and is answered
``I99`` like any accepted device request: in DUIS, Anomaly Detection acts on requests the DCC has
already acknowledged, and the User learns of the quarantine from a DCC Alert, not from the
acknowledgement (the XSD's ResponseCode enumeration has no code for "quarantined"). The request's
``sr.accepted`` body is written to the quarantine table (its own database) before the answer, and
the User gets a signed ``DCCAlertMessage`` with code ``AD1`` and ``QuarantinedRequest /
ADUserThresholdBreach`` (the RequestID and the QuarantineEventRef = the row id), published on
``duis.response`` like every Response so the persistent outbox delivers it. An alert whose
publication failed is sent again when the service starts.

Release publishes the kept body as an ordinary ``sr.accepted``: transform carries it and the
User receives the normal async Response. The admin API (JSON, localhost) lists, shows and
releases entries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from lxml import etree
from prometheus_client import Counter
from sqlalchemy import Connection, Float, Integer, LargeBinary, String, Table, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dccsim.bus import Bus, Envelope
from dccsim.bus.topology import DUIS_RESPONSE, SR_ACCEPTED
from dccsim.duis.requestid import DCC_EUI, format_eui
from dccsim.duis.xml import (
    DCC_ALERT_QUARANTINED_REQUEST,
    build_dcc_alert,
    quarantined_request,
)
from dccsim.metrics import ServiceMetrics
from dccsim.storage import Database, GroupCommit

log = logging.getLogger(__name__)

QUARANTINED, RELEASED = "quarantined", "released"
BREACH = "ADUserThresholdBreach"


class QuarantineBase(DeclarativeBase):
    pass


class QuarantineEntry(QuarantineBase):
    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(80), unique=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    user_eui: Mapped[str] = mapped_column(String(32))
    srv: Mapped[str] = mapped_column(String(16))
    web_service: Mapped[str] = mapped_column(String(16))
    envelope: Mapped[bytes] = mapped_column(LargeBinary)  # the encoded sr.accepted envelope
    quarantined_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), index=True)
    alerted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    released_at: Mapped[float | None] = mapped_column(Float, nullable=True)


_TABLE = cast(Table, QuarantineEntry.__table__)


def _iso(value: float | None) -> str | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC).isoformat()


def entry_json(entry: QuarantineEntry) -> dict[str, Any]:
    return {
        "quarantine_event_ref": entry.id,
        "request_id": entry.request_id,
        "user_id": entry.user_id,
        "srv": entry.srv,
        "web_service": entry.web_service,
        "status": entry.status,
        "quarantined_at": _iso(entry.quarantined_at),
        "alerted_at": _iso(entry.alerted_at),
        "released_at": _iso(entry.released_at),
    }


class QuarantineMetrics:
    def __init__(self, metrics: ServiceMetrics) -> None:
        r = metrics.registry
        self.quarantined = Counter(
            "dccsim_anomaly_quarantined",
            "Requests over an anomaly threshold, quarantined",
            ["srv"],
            registry=r,
        )
        self.released = Counter(
            "dccsim_anomaly_released", "Quarantined requests released", ["srv"], registry=r
        )
        self.alert_failures = Counter(
            "dccsim_anomaly_alert_failures",
            "DCC Alerts (AD1) that could not be published at once",
            registry=r,
        )


class NotQuarantined(LookupError):
    """No quarantined entry under that reference (unknown, or released already)."""


Signer = Callable[[etree._Element], bytes]


class Quarantine:
    """The quarantine table, the AD1 DCC Alert for each entry, and release."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        sign: Signer,
        metrics: ServiceMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.bus = bus
        self.sign = sign
        self.metrics = QuarantineMetrics(metrics)
        self.writes = GroupCommit(db)
        self._clock = clock
        self._releasing: set[int] = set()
        self._alert_counter = 0

    async def create_schema(self) -> None:
        await self.db.create_all(QuarantineBase.metadata)

    async def close(self) -> None:
        await self.writes.close()

    # ------------------------------------------------------------------ quarantining

    async def hold(
        self, *, request_id: str, srv: str, web_service: str, accepted_body: dict[str, Any]
    ) -> int:
        """Keep an accepted request (its ``sr.accepted`` body) and alert its User; returns the
        QuarantineEventRef. The row is committed before this returns; the alert is best effort
        here and sent again at the next start if its publication failed."""
        now = self._clock()
        user_id = str(accepted_body["user_id"])
        user_eui = str(accepted_body["user_eui"])
        values = {
            "request_id": request_id,
            "user_id": user_id,
            "user_eui": user_eui,
            "srv": srv,
            "web_service": web_service,
            "envelope": Envelope("sr.accepted", request_id, accepted_body).encode(),
            "quarantined_at": now,
            "status": QUARANTINED,
        }
        statement = _TABLE.insert().values(values).returning(_TABLE.c.id)

        def store(conn: Connection) -> int:
            return int(conn.execute(statement).scalar_one())

        event_ref = await self.writes.run(store)
        self.metrics.quarantined.labels(srv).inc()
        log.warning(
            "request over its anomaly threshold: quarantined",
            extra={"user_id": user_id, "srv": srv, "quarantine_event_ref": event_ref},
        )
        self.bus.emit_timeline(request_id, "quarantined", srv=srv)
        await self._alert(event_ref, request_id, user_id, user_eui)
        return event_ref

    def _next_alert_counter(self) -> int:
        # Strictly increasing within the process and (being time-based) across restarts.
        self._alert_counter = max(self._alert_counter + 1, time.time_ns() // 1000)
        return self._alert_counter

    def alert_xml(self, event_ref: int, request_id: str, user_eui: str) -> tuple[str, bytes]:
        """The signed AD1 DCC Alert for one entry: (ResponseID, document)."""
        response_id = f"{format_eui(DCC_EUI)}:{user_eui}:{self._next_alert_counter()}"
        root = build_dcc_alert(
            response_id=response_id,
            alert_code=DCC_ALERT_QUARANTINED_REQUEST,
            alert=quarantined_request(request_id=request_id, event_ref=event_ref, breach=BREACH),
            response_datetime=dt.datetime.now(dt.UTC),
        )
        return response_id, self.sign(root)

    async def _alert(self, event_ref: int, request_id: str, user_id: str, user_eui: str) -> bool:
        try:
            response_id, xml = self.alert_xml(event_ref, request_id, user_eui)
            await self.bus.publish(
                DUIS_RESPONSE,
                Envelope(
                    "duis.response",
                    request_id,
                    {
                        "user_id": user_id,
                        # One AD1 per quarantined request: a resend collapses in the outbox.
                        "delivery_key": f"dcc-alert:{DCC_ALERT_QUARANTINED_REQUEST}:{request_id}",
                        "xml": xml,
                        "response_id": response_id,
                    },
                ),
            )
        except Exception:
            self.metrics.alert_failures.inc()
            log.exception("could not publish the AD1 DCC Alert; it is sent again at start")
            return False
        at = self._clock()
        statement = _TABLE.update().where(_TABLE.c.id == event_ref).values(alerted_at=at)
        await self.writes.run(lambda conn: conn.execute(statement))
        return True

    async def resend_alerts(self) -> int:
        """Publish the alerts whose publication failed before (at start); returns how many."""
        rows = await self.db.run(
            lambda conn: conn.execute(
                select(
                    QuarantineEntry.id,
                    QuarantineEntry.request_id,
                    QuarantineEntry.user_id,
                    QuarantineEntry.user_eui,
                ).where(QuarantineEntry.alerted_at.is_(None))
            ).all()
        )
        sent = 0
        for event_ref, request_id, user_id, user_eui in rows:
            sent += await self._alert(event_ref, request_id, user_id, user_eui)
        return sent

    # ------------------------------------------------------------------ reading and release

    async def entries(
        self, *, status: str | None = None, user_id: str | None = None, limit: int = 500
    ) -> list[QuarantineEntry]:
        query = select(_TABLE).order_by(_TABLE.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(_TABLE.c.status == status)
        if user_id is not None:
            query = query.where(_TABLE.c.user_id == user_id)

        def read(conn: Connection) -> list[QuarantineEntry]:
            return [_entry(row) for row in conn.execute(query).all()]

        return await self.db.run(read)

    async def get(self, event_ref: int) -> QuarantineEntry | None:
        query = select(_TABLE).where(_TABLE.c.id == event_ref)

        def read(conn: Connection) -> QuarantineEntry | None:
            row = conn.execute(query).first()
            return None if row is None else _entry(row)

        return await self.db.run(read)

    async def release(self, event_ref: int) -> QuarantineEntry:
        """Publish a quarantined request as an ordinary accepted one; raises NotQuarantined."""
        if event_ref in self._releasing:
            raise NotQuarantined(f"quarantine entry {event_ref} is being released")
        self._releasing.add(event_ref)
        try:
            entry = await self.get(event_ref)
            if entry is None or entry.status != QUARANTINED:
                raise NotQuarantined(f"no quarantined request under reference {event_ref}")
            kept = Envelope.decode(entry.envelope)
            await self.bus.publish(SR_ACCEPTED, Envelope(kept.kind, kept.request_id, kept.body))
            now = self._clock()
            statement = (
                _TABLE.update()
                .where(_TABLE.c.id == event_ref)
                .values(status=RELEASED, released_at=now)
            )
            await self.writes.run(lambda conn: conn.execute(statement))
            entry.status, entry.released_at = RELEASED, now
            self.metrics.released.labels(entry.srv).inc()
            self.bus.emit_timeline(entry.request_id, "released", srv=entry.srv)
            log.info(
                "quarantined request released",
                extra={"quarantine_event_ref": event_ref, "user_id": entry.user_id},
            )
            return entry
        finally:
            self._releasing.discard(event_ref)


def _entry(row: Any) -> QuarantineEntry:
    values = dict(row._mapping)
    return QuarantineEntry(**values)


# ---------------------------------------------------------------------- the admin API

QUARANTINE: web.AppKey[Quarantine] = web.AppKey("quarantine", Quarantine)


def build_admin_app(quarantine: Quarantine) -> web.Application:
    """``GET /quarantine[?status=&user_id=]``, ``GET /quarantine/{ref}``,
    ``POST /quarantine/{ref}/release``: JSON, for the operator on localhost."""
    app = web.Application()
    app[QUARANTINE] = quarantine

    def _ref(request: web.Request) -> int:
        try:
            return int(request.match_info["ref"])
        except ValueError:
            raise web.HTTPBadRequest(text="the quarantine reference is a number") from None

    async def list_entries(request: web.Request) -> web.Response:
        status = request.query.get("status")
        if status is not None and status not in (QUARANTINED, RELEASED):
            raise web.HTTPBadRequest(text=f"status is {QUARANTINED} or {RELEASED}")
        found = await request.app[QUARANTINE].entries(
            status=status, user_id=request.query.get("user_id")
        )
        return web.json_response({"entries": [entry_json(e) for e in found]})

    async def show(request: web.Request) -> web.Response:
        entry = await request.app[QUARANTINE].get(_ref(request))
        if entry is None:
            raise web.HTTPNotFound(text="no such quarantine entry")
        return web.json_response(entry_json(entry))

    async def release(request: web.Request) -> web.Response:
        try:
            entry = await request.app[QUARANTINE].release(_ref(request))
        except NotQuarantined as exc:
            raise web.HTTPConflict(text=str(exc)) from None
        return web.json_response(entry_json(entry))

    app.router.add_get("/quarantine", list_entries)
    app.router.add_get("/quarantine/{ref}", show)
    app.router.add_post("/quarantine/{ref}/release", release)
    return app


async def start_admin_server(
    quarantine: Quarantine, host: str, port: int
) -> Callable[[], Awaitable[None]] | None:
    """Serve the admin API; returns its cleanup, or None when the port could not be bound (the
    User Gateway runs on without it, and says so)."""
    runner = web.AppRunner(build_admin_app(quarantine), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        log.warning(
            "the quarantine admin API could not listen; running without it",
            extra={"host": host, "port": port, "error": str(exc)},
        )
        with contextlib.suppress(Exception):
            await runner.cleanup()
        return None
    log.info("quarantine admin API listening", extra={"url": f"http://{host}:{port}/quarantine"})
    return runner.cleanup
