"""The DCCKI PMA register (consultation chapter 5): the DCCKI Policy Management Authority
function's reviews, notifications and recommendations to DCC, DCC's decision on each
recommendation whether to raise a Modification Proposal (during transition, notified to the
Secretary of State instead), and the SSC's and SMKI PMA's requests to see entries.

Who may do and see what (:func:`can_view`, and the checks in :class:`PmaRegister`):

- the DCCKI PMA records entries, sees every entry and every request, and grants requests;
- DCC sees every entry and request, and decides on recommendations;
- the Secretary of State sees the entries DCC notified during transition;
- the SSC and the SMKI PMA ask to see an entry and see it once their request is granted;
- anyone else sees nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.testing import store
from services.testing.phases import utc


class Actor(StrEnum):
    DCCKI_PMA = "dccki_pma"
    DCC = "dcc"
    SECRETARY_OF_STATE = "secretary_of_state"
    SSC = "ssc"  # the Security Sub-Committee
    SMKI_PMA = "smki_pma"
    PARTICIPANT = "participant"


class EntryKind(StrEnum):
    REVIEW = "review"
    NOTIFICATION = "notification"
    RECOMMENDATION = "recommendation"


class Decision(StrEnum):
    RAISE_MODIFICATION_PROPOSAL = "raise_modification_proposal"
    NO_MODIFICATION_PROPOSAL = "no_modification_proposal"


REQUESTERS = frozenset({Actor.SSC, Actor.SMKI_PMA})
SEE_EVERYTHING = frozenset({Actor.DCCKI_PMA, Actor.DCC})


class PmaError(Exception):
    """An operation the register refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class PmaEntry:
    id: int
    kind: EntryKind
    title: str
    body: str
    created_at: dt.datetime
    decision: Decision | None
    decision_reason: str | None
    decided_at: dt.datetime | None
    notified_to_sos: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "title": self.title,
            "body": self.body,
            "created_at": self.created_at.isoformat(),
            "decision": self.decision.value if self.decision else None,
            "decision_reason": self.decision_reason,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "notified_to_secretary_of_state": self.notified_to_sos,
        }


@dataclass(frozen=True)
class AccessRequest:
    id: int
    entry_id: int
    requester: Actor
    reason: str
    requested_at: dt.datetime
    granted_at: dt.datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "entry_id": self.entry_id,
            "requester": self.requester.value,
            "reason": self.reason,
            "requested_at": self.requested_at.isoformat(),
            "granted_at": self.granted_at.isoformat() if self.granted_at else None,
        }


def can_view(actor: Actor, entry: PmaEntry, granted_to: frozenset[Actor]) -> bool:
    """Whether ``actor`` may see ``entry``; ``granted_to`` are the requesters whose request
    to see it has been granted."""
    if actor in SEE_EVERYTHING:
        return True
    if actor is Actor.SECRETARY_OF_STATE:
        return entry.notified_to_sos
    if actor in REQUESTERS:
        return actor in granted_to
    return False


def _entry(row: Any) -> PmaEntry:
    return PmaEntry(
        id=row.id,
        kind=EntryKind(row.kind),
        title=row.title,
        body=row.body,
        created_at=utc(row.created_at),
        decision=Decision(row.decision) if row.decision else None,
        decision_reason=row.decision_reason,
        decided_at=utc(row.decided_at) if row.decided_at else None,
        notified_to_sos=bool(row.notified_to_sos),
    )


def _request(row: Any) -> AccessRequest:
    return AccessRequest(
        id=row.id,
        entry_id=row.entry_id,
        requester=Actor(row.requester),
        reason=row.reason,
        requested_at=utc(row.requested_at),
        granted_at=utc(row.granted_at) if row.granted_at else None,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class PmaRegister:
    """The register, with the access rules above enforced on every call."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], dt.datetime] = _now) -> None:
        self.engine = engine
        self.clock = clock

    async def _load(self, conn: AsyncConnection, entry_id: int) -> PmaEntry:
        row = (
            await conn.execute(select(store.pma_entries).where(store.pma_entries.c.id == entry_id))
        ).first()
        if row is None:
            raise PmaError(f"no PMA entry {entry_id}", 404)
        return _entry(row)

    async def _granted(self, conn: AsyncConnection) -> dict[int, frozenset[Actor]]:
        rows = (
            await conn.execute(
                select(store.pma_access_requests).where(
                    store.pma_access_requests.c.granted_at.is_not(None)
                )
            )
        ).all()
        granted: dict[int, set[Actor]] = {}
        for row in rows:
            granted.setdefault(row.entry_id, set()).add(Actor(row.requester))
        return {k: frozenset(v) for k, v in granted.items()}

    async def record(self, actor: Actor, *, kind: EntryKind, title: str, body: str) -> PmaEntry:
        """The DCCKI PMA records a review, notification or recommendation."""
        if actor is not Actor.DCCKI_PMA:
            raise PmaError("only the DCCKI PMA records entries", 403)
        if not title.strip():
            raise PmaError("an entry needs a title", 400)
        now = self.clock()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                insert(store.pma_entries).values(
                    kind=kind.value, title=title, body=body, created_at=now, notified_to_sos=False
                )
            )
            (entry_id,) = result.inserted_primary_key or (0,)
            return await self._load(conn, int(entry_id))

    async def entries(self, actor: Actor) -> list[PmaEntry]:
        """The entries ``actor`` may see, oldest first."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(select(store.pma_entries).order_by(store.pma_entries.c.id))
            ).all()
            granted = await self._granted(conn)
        found = [_entry(row) for row in rows]
        return [e for e in found if can_view(actor, e, granted.get(e.id, frozenset()))]

    async def entry(self, actor: Actor, entry_id: int) -> PmaEntry:
        """One entry; 404 when there is none, 403 when ``actor`` may not see it."""
        async with self.engine.connect() as conn:
            entry = await self._load(conn, entry_id)
            granted = await self._granted(conn)
        if not can_view(actor, entry, granted.get(entry_id, frozenset())):
            raise PmaError(f"{actor} may not see PMA entry {entry_id}", 403)
        return entry

    async def decide(
        self, actor: Actor, entry_id: int, *, decision: Decision, reason: str, transition: bool
    ) -> PmaEntry:
        """DCC's decision on a recommendation; in ``transition`` it is notified to the
        Secretary of State (who may then see the entry). A decision is made once."""
        if actor is not Actor.DCC:
            raise PmaError("only DCC decides on a recommendation", 403)
        async with self.engine.begin() as conn:
            entry = await self._load(conn, entry_id)
            if entry.kind is not EntryKind.RECOMMENDATION:
                raise PmaError(f"PMA entry {entry_id} is a {entry.kind}, not a recommendation", 409)
            if entry.decision is not None:
                raise PmaError(f"PMA entry {entry_id} is already decided", 409)
            await conn.execute(
                update(store.pma_entries)
                .where(store.pma_entries.c.id == entry_id)
                .values(
                    decision=decision.value,
                    decision_reason=reason,
                    decided_at=self.clock(),
                    notified_to_sos=transition,
                )
            )
            return await self._load(conn, entry_id)

    async def request_access(self, actor: Actor, entry_id: int, *, reason: str) -> AccessRequest:
        """The SSC or the SMKI PMA asks to see an entry."""
        if actor not in REQUESTERS:
            raise PmaError("only the SSC and the SMKI PMA request to see PMA entries", 403)
        now = self.clock()
        async with self.engine.begin() as conn:
            await self._load(conn, entry_id)
            result = await conn.execute(
                insert(store.pma_access_requests).values(
                    entry_id=entry_id, requester=actor.value, reason=reason, requested_at=now
                )
            )
            (request_id,) = result.inserted_primary_key or (0,)
        return AccessRequest(int(request_id), entry_id, actor, reason, utc(now), None)

    async def grant(self, actor: Actor, request_id: int) -> AccessRequest:
        """The DCCKI PMA grants a request (idempotent)."""
        if actor is not Actor.DCCKI_PMA:
            raise PmaError("only the DCCKI PMA grants access requests", 403)
        async with self.engine.begin() as conn:
            table = store.pma_access_requests
            row = (await conn.execute(select(table).where(table.c.id == request_id))).first()
            if row is None:
                raise PmaError(f"no access request {request_id}", 404)
            if row.granted_at is None:
                await conn.execute(
                    update(table).where(table.c.id == request_id).values(granted_at=self.clock())
                )
                row = (await conn.execute(select(table).where(table.c.id == request_id))).first()
            assert row is not None
            return _request(row)

    async def access_requests(self, actor: Actor) -> list[AccessRequest]:
        """Every request (DCCKI PMA, DCC) or the requester's own (SSC, SMKI PMA)."""
        query = select(store.pma_access_requests).order_by(store.pma_access_requests.c.id)
        if actor in REQUESTERS:
            query = query.where(store.pma_access_requests.c.requester == actor.value)
        elif actor not in SEE_EVERYTHING:
            raise PmaError(f"{actor} may not see access requests", 403)
        async with self.engine.connect() as conn:
            return [_request(row) for row in (await conn.execute(query)).all()]
