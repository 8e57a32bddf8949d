"""Each Service Request's timeline, from ``request.timeline`` events on the bus.

The event contract (the services along the pipeline emit, this module consumes):

- exchange ``dccsim.events`` (topic), transient (a lost event leaves a gap in a timeline, never
  a wrong answer to a User);
- the pipeline's services emit through :meth:`dccsim.bus.client.Bus.emit_timeline`, which
  gathers events for a few tens of milliseconds and publishes them together: routing key
  ``timeline.batch``, envelope ``kind`` ``request.timeline.batch``, body ``{"events": [event,
  ...]}`` where each event is the single-event body below plus ``"rid"``, its RequestID;
- a single event may also be published on its own: routing key ``timeline.<stage>``, envelope
  ``kind`` ``request.timeline``, ``rid`` the DUIS RequestID;
- body ``{"stage": str, "at": float, "code"?: str, "srv"?: str, "user_id"?: str}``: ``stage`` one
  of :data:`STAGES`, ``at`` when it happened (Unix seconds, UTC; an ISO 8601 string is also
  accepted), ``code`` the DUIS response code of that stage (``I99`` on acknowledged, the
  device's or the DCC's code on the later ones), ``srv`` the Service Reference Variant and
  ``user_id`` the originating User's id, either of which any stage may carry.

A request belongs to the participant whose EUI-64 is its RequestID's originator (the RequestID
is ``originator:target:counter``), so stages that carry no ``user_id`` are still attributed.
The first event for a (request, stage) is kept and later ones ignored, which makes the consumer
idempotent; events of a stage this code does not know are ignored, so a new stage can be
emitted before the portal shows it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from dccsim.bus.client import TIMELINE_BATCH_KIND
from dccsim.bus.envelope import Envelope
from services.testing import store
from services.testing.phases import utc

log = logging.getLogger(__name__)

TIMELINE_EVENT = "request.timeline"
TIMELINE_PATTERN = "timeline.*"

# The stages in the order a Service Request passes them, with what the portal calls them.
STAGES: dict[str, str] = {
    "received": "Received by the DCC User Gateway",
    "acknowledged": "Acknowledged to the User",
    "command_sent": "Command sent to the Communications Hub",
    "device_answered": "Device answered",
    "response_delivered": "Response delivered to the User",
}


class TimelineError(ValueError):
    """An event that does not follow the contract."""


def routing_key(stage: str) -> str:
    """The routing key a ``stage`` event is published with: ``timeline.<stage>``."""
    return f"timeline.{stage}"


def timeline_envelope(
    request_id: str,
    stage: str,
    *,
    at: dt.datetime | float | None = None,
    code: str | None = None,
    srv: str | None = None,
    user_id: str | None = None,
) -> Envelope:
    """The envelope an emitter publishes for ``stage`` of ``request_id`` (``at`` default now)."""
    if stage not in STAGES:
        raise TimelineError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    when = (
        at.timestamp()
        if isinstance(at, dt.datetime)
        else (float(at) if at is not None else dt.datetime.now(dt.UTC).timestamp())
    )
    body: dict[str, Any] = {"stage": stage, "at": when}
    for key, value in (("code", code), ("srv", srv), ("user_id", user_id)):
        if value is not None:
            body[key] = value
    return Envelope(kind=TIMELINE_EVENT, request_id=request_id, body=body)


def originator(request_id: str) -> str:
    """The originator EUI-64 of a DUIS RequestID, in DUIS form (upper case, '-' separated)."""
    head = request_id.split(":", 1)[0].strip().upper().replace("-", "")
    if len(head) != 16 or any(c not in "0123456789ABCDEF" for c in head):
        raise TimelineError(f"RequestID {request_id!r} does not start with an EUI-64")
    return "-".join(head[i : i + 2] for i in range(0, 16, 2))


def _at(value: Any) -> dt.datetime:
    if isinstance(value, bool):
        raise TimelineError("at must be Unix seconds or an ISO 8601 date-time")
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(float(value), dt.UTC)
    if isinstance(value, str):
        try:
            return utc(dt.datetime.fromisoformat(value))
        except ValueError as exc:
            raise TimelineError(f"at {value!r} is not an ISO 8601 date-time") from exc
    raise TimelineError("at must be Unix seconds or an ISO 8601 date-time")


def _text(body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    text = str(value)
    if len(text) > limit:
        raise TimelineError(f"{key} is longer than {limit} characters")
    return text


@dataclass(frozen=True)
class TimelineEvent:
    request_id: str
    stage: str
    at: dt.datetime
    code: str | None
    srv: str | None
    user_id: str | None

    @property
    def title(self) -> str:
        return STAGES.get(self.stage, self.stage)

    def to_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "at": self.at.isoformat(),
            "code": self.code,
            "srv": self.srv,
            "user_id": self.user_id,
        }


@dataclass(frozen=True)
class Timeline:
    """One request's stages in pipeline order, with the time each took from receipt."""

    request_id: str
    events: tuple[TimelineEvent, ...]

    @property
    def srv(self) -> str | None:
        return next((e.srv for e in self.events if e.srv), None)

    @property
    def started(self) -> dt.datetime:
        return min(e.at for e in self.events)

    @property
    def last(self) -> TimelineEvent:
        return self.events[-1]

    @property
    def code(self) -> str | None:
        """The latest code any stage carried (the request's outcome so far)."""
        return next((e.code for e in reversed(self.events) if e.code), None)

    @property
    def complete(self) -> bool:
        return any(e.stage == "response_delivered" for e in self.events)

    def elapsed_ms(self, event: TimelineEvent) -> float:
        """Milliseconds from the first stage seen to ``event``."""
        return (event.at - self.started).total_seconds() * 1000.0

    def step_ms(self, index: int) -> float | None:
        """Milliseconds from the previous stage to stage ``index`` (None for the first)."""
        if index == 0:
            return None
        return (self.events[index].at - self.events[index - 1].at).total_seconds() * 1000.0

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "srv": self.srv,
            "code": self.code,
            "complete": self.complete,
            "missing": [s for s in STAGES if s not in {e.stage for e in self.events}],
            "stages": [
                {**e.to_json(), "elapsed_ms": round(self.elapsed_ms(e), 3)} for e in self.events
            ],
        }


def _row(request_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The database row of one event; None for a stage this code does not know."""
    stage = str(body.get("stage", ""))
    if stage not in STAGES:
        log.debug("ignoring timeline event of unknown stage %r", stage)
        return None
    if not request_id or len(request_id) > 96:
        raise TimelineError("a timeline event needs its RequestID (at most 96 characters)")
    return {
        "request_id": request_id,
        "originator": originator(request_id),
        "stage": stage,
        "at": _at(body.get("at")),
        "code": _text(body, "code", 8),
        "srv": _text(body, "srv", 16),
        "user_id": _text(body, "user_id", 128),
    }


def _insert_ignoring_repeats(engine: AsyncEngine) -> Any:
    """INSERT that skips a (request, stage) already stored, on SQLite and PostgreSQL."""
    table = store.timeline_events
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(
            constraint="uq_timeline_request_stage"
        )
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=["request_id", "stage"])


def _order(event: TimelineEvent) -> tuple[int, dt.datetime]:
    return (list(STAGES).index(event.stage), event.at)


class TimelineStore:
    """Timeline events in the testing database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(self, envelope: Envelope) -> bool:
        """Store one ``request.timeline`` event; False when it was ignored (another kind, an
        unknown stage, or a stage this request already has). TimelineError when malformed."""
        if envelope.kind != TIMELINE_EVENT:
            return False
        row = _row(envelope.request_id, envelope.body)
        if row is None:
            return False
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(store.timeline_events).values(**row))
        except IntegrityError:
            return False  # this stage is already recorded: a redelivery or a repeat
        return True

    async def record_batch(self, envelope: Envelope) -> int:
        """Store the events of a ``request.timeline.batch`` in one transaction; the number
        stored. A malformed event is logged and skipped (the others still count); a stage a
        request already has is ignored, as in :meth:`record`."""
        events = envelope.body.get("events")
        if not isinstance(events, list):
            raise TimelineError("a timeline batch needs a list of events")
        rows: list[dict[str, Any]] = []
        for event in events:
            try:
                if not isinstance(event, dict):
                    raise TimelineError("a timeline event is a map")
                row = _row(str(event.get("rid") or ""), event)
            except TimelineError as exc:
                log.warning("ignoring a malformed timeline event: %s", exc)
                continue
            if row is not None:
                rows.append(row)
        if not rows:
            return 0
        async with self.engine.begin() as conn:
            result = await conn.execute(_insert_ignoring_repeats(self.engine), rows)
        return max(result.rowcount, 0) if result.rowcount is not None else len(rows)

    async def handle(self, envelope: Envelope) -> None:
        """The bus handler: store the event(s), log (not raise) what breaks the contract."""
        try:
            if envelope.kind == TIMELINE_BATCH_KIND:
                await self.record_batch(envelope)
            else:
                await self.record(envelope)
        except TimelineError as exc:
            log.warning(
                "ignoring a malformed timeline event: %s",
                exc,
                extra={"request_id": envelope.request_id},
            )

    async def timeline(self, request_id: str) -> Timeline | None:
        found = await self._timelines([request_id])
        return found[0] if found else None

    async def recent(self, originator_eui: str, *, limit: int = 50) -> list[Timeline]:
        """The latest ``limit`` requests ``originator_eui`` sent, newest first."""
        table = store.timeline_events
        latest = func.max(table.c.at).label("latest")
        async with self.engine.connect() as conn:
            ids = (
                await conn.execute(
                    select(table.c.request_id, latest)
                    .where(table.c.originator == originator_eui.upper())
                    .group_by(table.c.request_id)
                    .order_by(latest.desc())
                    .limit(limit)
                )
            ).all()
        return await self._timelines([row.request_id for row in ids])

    async def _timelines(self, request_ids: list[str]) -> list[Timeline]:
        """The timelines of ``request_ids`` (those with any event), in the order given."""
        if not request_ids:
            return []
        table = store.timeline_events
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(table).where(table.c.request_id.in_(request_ids)))
            ).all()
        by_request: dict[str, list[TimelineEvent]] = {}
        for r in rows:
            by_request.setdefault(r.request_id, []).append(
                TimelineEvent(
                    request_id=r.request_id,
                    stage=r.stage,
                    at=utc(r.at),
                    code=r.code,
                    srv=r.srv,
                    user_id=r.user_id,
                )
            )
        return [
            Timeline(rid, tuple(sorted(by_request[rid], key=_order)))
            for rid in request_ids
            if rid in by_request
        ]
