"""Test phases and their notices (consultation chapter 3; SEC T2.11, T3.13, T4.9, T5.11).

Each phase has a notified commencement date. DCC notifies the first date; once notified, a date
changes only when the Secretary of State directs DCC to re-notify it: the direction is recorded
(with the new date it asks for, if any), DCC's re-notification sets the date and fulfils the
direction, and each notification issues a notice to the phase's audience. Nothing is ever
overwritten: :meth:`PhaseRegister.history` returns every date, direction and notice in order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.testing import store


class Phase(StrEnum):
    SIT = "SIT"
    IT = "IT"
    E2E = "E2E"
    SRT = "SRT"
    PRE_UIT = "pre-UIT"
    GFI = "GFI"


class Audience(StrEnum):
    """Who a phase's notices go to."""

    RDPS = "RDPs"  # Registration Data Providers
    PARTIES = "Parties"  # SEC Parties
    TESTING_PARTICIPANTS = "Testing Participants"  # everyone testing, SEC Party or not


# The SEC names the audience for SIT (T2.11: RDPs), IT (T3.13: Parties), E2E (T4.9: Testing
# Participants) and SRT (T5.11: Parties). It names none for the informal services; their
# notices go to everyone who tests, since non-SEC device makers use GFI and pre-UIT too.
AUDIENCES: dict[Phase, Audience] = {
    Phase.SIT: Audience.RDPS,
    Phase.IT: Audience.PARTIES,
    Phase.E2E: Audience.TESTING_PARTICIPANTS,
    Phase.SRT: Audience.PARTIES,
    Phase.PRE_UIT: Audience.TESTING_PARTICIPANTS,
    Phase.GFI: Audience.TESTING_PARTICIPANTS,
}

PHASE_TITLES: dict[Phase, str] = {
    Phase.SIT: "Systems Integration Testing",
    Phase.IT: "Interface Testing",
    Phase.E2E: "End-to-End Testing",
    Phase.SRT: "SMKI and Repository Testing",
    Phase.PRE_UIT: "pre-User Integration Testing",
    Phase.GFI: "GBCS Interface Testing for Industry",
}


class ParticipantKind(StrEnum):
    SEC_PARTY = "sec_party"
    RDP = "rdp"  # a Registration Data Provider (also a SEC Party)
    NON_SEC_PARTY = "non_sec_party"  # e.g. a device maker under a bilateral agreement


def in_audience(kind: ParticipantKind, audience: Audience) -> bool:
    """True when a participant of ``kind`` receives notices addressed to ``audience``."""
    if audience is Audience.TESTING_PARTICIPANTS:
        return True
    if audience is Audience.PARTIES:
        return kind in (ParticipantKind.SEC_PARTY, ParticipantKind.RDP)
    return kind is ParticipantKind.RDP


class PhaseError(Exception):
    """A phase operation the rules forbid; ``status`` is the HTTP status to answer with."""

    def __init__(self, reason: str, status: int = 409) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Notice:
    id: int
    phase: Phase
    audience: Audience
    title: str
    body: str
    commencement: dt.date
    issued_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "phase": self.phase.value,
            "audience": self.audience.value,
            "title": self.title,
            "body": self.body,
            "commencement": self.commencement.isoformat(),
            "issued_at": self.issued_at.isoformat(),
        }


@dataclass(frozen=True)
class Direction:
    id: int
    phase: Phase
    requested_date: dt.date | None
    reason: str
    directed_at: dt.datetime
    fulfilled_at: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "phase": self.phase.value,
            "requested_date": self.requested_date.isoformat() if self.requested_date else None,
            "reason": self.reason,
            "directed_at": self.directed_at.isoformat(),
            "fulfilled_at": self.fulfilled_at.isoformat() if self.fulfilled_at else None,
        }


@dataclass(frozen=True)
class PhaseStatus:
    phase: Phase
    title: str
    audience: Audience
    commencement: dt.date | None  # the date currently notified, None before the first notice
    open_direction: Direction | None

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "title": self.title,
            "audience": self.audience.value,
            "commencement": self.commencement.isoformat() if self.commencement else None,
            "open_direction": self.open_direction.to_json() if self.open_direction else None,
        }


@dataclass(frozen=True)
class HistoryEvent:
    at: dt.datetime
    event: str  # "notified" | "direction" | "renotified"
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "event": self.event, **self.detail}


def utc(value: dt.datetime) -> dt.datetime:
    """``value`` as an aware UTC datetime (SQLite hands back naive ones)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


NoticeListener = Callable[[Notice], Awaitable[None]]


def _notice(row: Any) -> Notice:
    return Notice(
        id=row.id,
        phase=Phase(row.phase),
        audience=Audience(row.audience),
        title=row.title,
        body=row.body,
        commencement=row.commencement,
        issued_at=utc(row.issued_at),
    )


def _direction(row: Any) -> Direction:
    return Direction(
        id=row.id,
        phase=Phase(row.phase),
        requested_date=row.requested_date,
        reason=row.reason,
        directed_at=utc(row.directed_at),
        fulfilled_at=utc(row.fulfilled_at) if row.fulfilled_at else None,
    )


class PhaseRegister:
    """The phases, their dates, the Secretary of State's directions and the notices.

    ``clock`` is injectable for tests; ``listeners`` are awaited with each notice once it is
    committed (the service publishes them on the bus).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], dt.datetime] = _now,
        listeners: Iterable[NoticeListener] = (),
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.listeners = list(listeners)

    async def _current(self, conn: AsyncConnection, phase: Phase) -> dt.date | None:
        row = (
            await conn.execute(
                select(store.phase_dates.c.commencement)
                .where(store.phase_dates.c.phase == phase.value)
                .order_by(store.phase_dates.c.id.desc())
                .limit(1)
            )
        ).first()
        return row.commencement if row else None

    async def _open_direction(self, conn: AsyncConnection, phase: Phase) -> Direction | None:
        row = (
            await conn.execute(
                select(store.directions)
                .where(
                    store.directions.c.phase == phase.value,
                    store.directions.c.fulfilled_at.is_(None),
                )
                .order_by(store.directions.c.id)
                .limit(1)
            )
        ).first()
        return _direction(row) if row else None

    async def status(self, phase: Phase) -> PhaseStatus:
        async with self.engine.connect() as conn:
            return PhaseStatus(
                phase,
                PHASE_TITLES[phase],
                AUDIENCES[phase],
                await self._current(conn, phase),
                await self._open_direction(conn, phase),
            )

    async def statuses(self) -> list[PhaseStatus]:
        return [await self.status(phase) for phase in Phase]

    async def _issue_notice(
        self, conn: AsyncConnection, phase: Phase, commencement: dt.date, title: str, body: str
    ) -> Notice:
        now = self.clock()
        result = await conn.execute(
            insert(store.notices).values(
                phase=phase.value,
                audience=AUDIENCES[phase].value,
                title=title,
                body=body,
                commencement=commencement,
                issued_at=now,
            )
        )
        (notice_id,) = result.inserted_primary_key or (0,)
        return Notice(int(notice_id), phase, AUDIENCES[phase], title, body, commencement, utc(now))

    async def _announce(self, notice: Notice) -> None:
        for listener in self.listeners:
            await listener(notice)

    async def notify(self, phase: Phase, commencement: dt.date, note: str = "") -> Notice:
        """DCC's first notification of ``phase``'s commencement date.

        :class:`PhaseError` when a date is already notified (a change needs a direction)."""
        async with self.engine.begin() as conn:
            if await self._current(conn, phase) is not None:
                raise PhaseError(
                    f"{phase} already has a notified commencement date; it changes only on a "
                    "direction from the Secretary of State"
                )
            await conn.execute(
                insert(store.phase_dates).values(
                    phase=phase.value,
                    commencement=commencement,
                    kind="notified",
                    direction_id=None,
                    recorded_at=self.clock(),
                    note=note,
                )
            )
            notice = await self._issue_notice(
                conn,
                phase,
                commencement,
                f"{PHASE_TITLES[phase]} ({phase}) commences on {commencement.isoformat()}",
                note or f"DCC notifies the commencement date of {phase}.",
            )
        await self._announce(notice)
        return notice

    async def direct(
        self, phase: Phase, *, reason: str, requested_date: dt.date | None = None
    ) -> Direction:
        """Record a direction from the Secretary of State to re-notify ``phase``'s date.

        :class:`PhaseError` when the phase has no notified date yet or a direction is open."""
        if not reason.strip():
            raise PhaseError("a direction needs a reason", status=400)
        async with self.engine.begin() as conn:
            if await self._current(conn, phase) is None:
                raise PhaseError(f"{phase} has no notified date to re-notify")
            if await self._open_direction(conn, phase) is not None:
                raise PhaseError(f"{phase} already has an open direction")
            now = self.clock()
            result = await conn.execute(
                insert(store.directions).values(
                    phase=phase.value,
                    requested_date=requested_date,
                    reason=reason,
                    directed_at=now,
                    fulfilled_at=None,
                )
            )
            (direction_id,) = result.inserted_primary_key or (0,)
        return Direction(int(direction_id), phase, requested_date, reason, utc(now), None)

    async def renotify(
        self, phase: Phase, *, direction_id: int, commencement: dt.date, note: str = ""
    ) -> Notice:
        """DCC's re-notification under direction ``direction_id``: sets the new date, fulfils
        the direction and notifies the audience. :class:`PhaseError` when the direction is not
        the phase's open one."""
        async with self.engine.begin() as conn:
            direction = await self._open_direction(conn, phase)
            if direction is None or direction.id != direction_id:
                raise PhaseError(f"direction {direction_id} is not an open direction for {phase}")
            previous = await self._current(conn, phase)
            now = self.clock()
            await conn.execute(
                insert(store.phase_dates).values(
                    phase=phase.value,
                    commencement=commencement,
                    kind="renotified",
                    direction_id=direction_id,
                    recorded_at=now,
                    note=note,
                )
            )
            await conn.execute(
                update(store.directions)
                .where(store.directions.c.id == direction_id)
                .values(fulfilled_at=now)
            )
            notice = await self._issue_notice(
                conn,
                phase,
                commencement,
                f"{PHASE_TITLES[phase]} ({phase}) re-notified: now commences on "
                f"{commencement.isoformat()}",
                note
                or (
                    f"At the direction of the Secretary of State ({direction.reason}), DCC "
                    f"re-notifies the commencement date of {phase}: "
                    f"{previous.isoformat() if previous else '-'} becomes "
                    f"{commencement.isoformat()}."
                ),
            )
        await self._announce(notice)
        return notice

    async def history(self, phase: Phase) -> list[HistoryEvent]:
        """Every notification, direction and re-notification of ``phase``, oldest first."""
        async with self.engine.connect() as conn:
            dates = (
                await conn.execute(
                    select(store.phase_dates)
                    .where(store.phase_dates.c.phase == phase.value)
                    .order_by(store.phase_dates.c.id)
                )
            ).all()
            directions = (
                await conn.execute(
                    select(store.directions)
                    .where(store.directions.c.phase == phase.value)
                    .order_by(store.directions.c.id)
                )
            ).all()
        events = [
            HistoryEvent(
                utc(row.recorded_at),
                row.kind,
                {
                    "commencement": row.commencement.isoformat(),
                    "direction_id": row.direction_id,
                    "note": row.note,
                },
            )
            for row in dates
        ] + [
            HistoryEvent(utc(row.directed_at), "direction", _direction(row).to_json())
            for row in directions
        ]
        # Stable: a re-notification recorded in the same instant as its direction stays after it.
        order = {"notified": 0, "direction": 1, "renotified": 2}
        return sorted(events, key=lambda e: (e.at, order[e.event]))

    async def notices(
        self, *, phase: Phase | None = None, kind: ParticipantKind | None = None
    ) -> list[Notice]:
        """Notices, newest first: all, one phase's, or those a participant of ``kind`` gets."""
        query = select(store.notices).order_by(store.notices.c.id.desc())
        if phase is not None:
            query = query.where(store.notices.c.phase == phase.value)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        found = [_notice(row) for row in rows]
        if kind is not None:
            found = [n for n in found if in_audience(kind, n.audience)]
        return found


async def participant_kind(engine: AsyncEngine, user_id: str) -> ParticipantKind:
    """A participant's kind from its testing profile (a SEC Party when it has none)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(store.participant_profiles.c.kind).where(
                    store.participant_profiles.c.user_id == user_id
                )
            )
        ).first()
    return ParticipantKind(row.kind) if row else ParticipantKind.SEC_PARTY


async def set_participant_kind(
    engine: AsyncEngine, user_id: str, kind: ParticipantKind, status: str = "active"
) -> None:
    """Record (or change) a participant's kind and status in the testing profile."""
    async with engine.begin() as conn:
        await conn.execute(
            store.participant_profiles.delete().where(
                store.participant_profiles.c.user_id == user_id
            )
        )
        await conn.execute(
            insert(store.participant_profiles).values(
                user_id=user_id, kind=kind.value, status=status
            )
        )
