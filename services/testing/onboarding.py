"""Participants' applications, onboarding and status (applied, active, suspended).

A participant applies (``apply``) as a SEC Party, an RDP or a non-SEC party testing under a
bilateral agreement, with its EUI-64, User Roles and Receive Response Service URL. Onboarding
(``onboard``) issues its test certificate bundle (:func:`dccsim.seed.seed_participant`: DCCKI
TLS client, SMKI DS/KA/XML-signing, a Receive Response Service server certificate), registers it
in the shared register, allocates N new premises of the test estate registered to it in every
role it holds, and makes it active. Suspension takes it out of the shared register, which every
service reads, so the User Gateway, the rules and the portal stop serving it at once; the testing
database keeps what it applied with, and re-activation puts it back.

New premises are appended to ``$DCCSIM_HOME/estate.json`` (numbered after the highest premises
there, each a Communications Hub and an ESME, the device models the gateway emulates). The API
(``services.testing.app``) then publishes ``estate.changed``, on which the inventory imports the
new premises, and asks the SM WAN gateway's control API to host them (it also notices the
replaced file by itself): no service restarts. The device certificates are issued into the key
store before the file names the devices, so nothing looks for keys that are not there yet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from dccsim import estate, participants
from dccsim.duis.catalogue import UserRole
from dccsim.duis.requestid import parse_eui
from dccsim.pki.smki import Role
from dccsim.smi import DeviceType
from services.testing import store
from services.testing.phases import ParticipantKind, participant_kind, set_participant_kind, utc

MAX_PREMISES = 1000  # per onboarding call
_USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# The SMKI organisation role a participant's certificates are issued for (GBCS remote party).
_NETWORK_ROLES = frozenset({UserRole.ELECTRICITY_DISTRIBUTOR, UserRole.GAS_TRANSPORTER})


class ParticipantStatus(StrEnum):
    APPLIED = "applied"
    ACTIVE = "active"
    SUSPENDED = "suspended"


class OnboardingError(Exception):
    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def check_response_url(url: str | None) -> str | None:
    """A Receive Response Service URL: https with a host (delivery is over TLS), or None."""
    if url in (None, ""):
        return None
    parts = urlsplit(str(url))
    if parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in str(url)):
        raise OnboardingError("a Receive Response Service URL is https://host[:port]/path")
    return str(url)


def check_response_urls(urls: Any) -> tuple[str, ...]:
    """Receive Response Service URLs in delivery order (a User may register several: the DCC
    tries them in turn); one URL, a list of them, or none (None, "" or [])."""
    if urls is None or isinstance(urls, str):
        one = check_response_url(urls)
        return (one,) if one else ()
    if not isinstance(urls, list | tuple) or not all(isinstance(u, str) for u in urls):
        raise OnboardingError("Receive Response Service URLs are a list of https URLs")
    checked = [check_response_url(u) for u in urls]
    return tuple(dict.fromkeys(u for u in checked if u))


def _stored_urls(text: str | None) -> tuple[str, ...]:
    """The URLs as the database holds them: one per line (a URL never contains whitespace)."""
    return tuple(text.split()) if text else ()


def _storable(urls: tuple[str, ...]) -> str | None:
    return "\n".join(urls) if urls else None


def _roles(values: Any) -> frozenset[UserRole]:
    if not isinstance(values, list | tuple | set | frozenset):
        raise OnboardingError("roles must be a list of User Role codes")
    try:
        return frozenset(UserRole(str(v).upper()) for v in values)
    except ValueError as exc:
        raise OnboardingError(
            f"User Roles are {', '.join(r.value for r in UserRole)}: {exc}"
        ) from exc


def smki_role(roles: frozenset[UserRole]) -> Role:
    """The GBCS remote-party role for a participant's SMKI organisation certificates."""
    return Role.NETWORK_OPERATOR if roles and roles <= _NETWORK_ROLES else Role.SUPPLIER


@dataclass(frozen=True)
class ParticipantRecord:
    user_id: str
    eui: str
    roles: frozenset[UserRole]
    kind: ParticipantKind
    status: ParticipantStatus
    response_urls: tuple[str, ...]
    premises: tuple[str, ...] = ()

    @property
    def response_url(self) -> str | None:
        """The first Receive Response Service URL (the one tried first)."""
        return self.response_urls[0] if self.response_urls else None

    def registered(self) -> participants.Participant:
        """This participant as the participant register holds it."""
        return participants.Participant.with_urls(
            self.user_id, self.eui, self.roles, self.response_urls
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "eui": self.eui,
            "roles": sorted(r.value for r in self.roles),
            "kind": self.kind.value,
            "status": self.status.value,
            "response_url": self.response_url,
            "response_urls": list(self.response_urls),
            "premises": list(self.premises),
        }


def allocate_premises(
    current: list[estate.Premises], eui: str, roles: frozenset[UserRole], count: int
) -> list[estate.Premises]:
    """``count`` new premises numbered after the highest in ``current``, each a CHF and an
    ESME registered to ``eui`` in every role of ``roles``."""
    numbers = [int(p.premises_id[1:]) for p in current if p.premises_id[1:].isdigit()]
    first = max(numbers, default=0) + 1
    regs = {r.value: eui for r in sorted(roles)}
    out = []
    for n in range(first, first + count):
        hub = estate.device_eui(n, 0)
        out.append(
            estate.Premises(
                premises_id=f"P{n:07d}",
                region=estate.REGIONS[n % len(estate.REGIONS)],
                postcode=f"DC{n % 90 + 1} {n % 9 + 1}SM",
                mpan=f"{1_000_000_000_000 + n:013d}",
                hub_eui=hub,
                devices=(
                    estate.EstateDevice(hub, DeviceType.CHF),
                    estate.EstateDevice(
                        estate.device_eui(n, 2),
                        DeviceType.ESME,
                        import_wh_base=1_000_000 + 7919 * n,
                    ),
                ),
                registrations=dict(regs),
            )
        )
    return out


def _issue_and_allocate(
    home: Path, record: ParticipantRecord, premises: int
) -> tuple[Path, list[str]]:
    """Blocking: the bundle, the register entry and the new premises (run in a thread)."""
    from dccsim.pki.devpki import issue_devices
    from dccsim.seed import seed_participant

    bundle = seed_participant(
        home,
        eui=record.eui,
        user_id=record.user_id,
        roles=record.roles,
        role=smki_role(record.roles),
        response_url=record.response_url,
    )
    if len(record.response_urls) > 1:  # the seed registers the first; the rest in order
        participants.set_response_urls(home, record.user_id, record.response_urls)
    added: list[str] = []
    if premises:
        with estate.locked(home):  # another onboarding numbers its premises after these
            current = estate.load(home)
            new = allocate_premises(current, record.eui, record.roles, premises)
            issue_devices(home, [parse_eui(d.eui) for p in new for d in p.devices])
            estate.save(home, current + new)
        added = [p.premises_id for p in new]
    return bundle, added


class Onboarding:
    """Applications, onboarding and status changes; the testing database plus the shared
    participant register and estate file under ``home``."""

    def __init__(
        self, engine: AsyncEngine, home: Path, *, clock: Callable[[], dt.datetime] = _now
    ) -> None:
        self.engine = engine
        self.home = home
        self.clock = clock
        # one onboarding at a time in this process: the estate file is read, extended, rewritten
        self._lock = asyncio.Lock()

    async def _status_of(self, user_id: str) -> ParticipantStatus | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(store.participant_profiles.c.status).where(
                        store.participant_profiles.c.user_id == user_id
                    )
                )
            ).first()
        return ParticipantStatus(row.status) if row else None

    async def _application(self, user_id: str) -> Any:
        table = store.participant_applications
        async with self.engine.connect() as conn:
            return (await conn.execute(select(table).where(table.c.user_id == user_id))).first()

    async def _history(self, user_id: str, status: ParticipantStatus, reason: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(store.participant_status_history).values(
                    user_id=user_id, status=status.value, reason=reason, at=self.clock()
                )
            )

    def _owned(self, eui: str) -> tuple[str, ...]:
        return tuple(
            p.premises_id for p in estate.load(self.home) if eui in p.registrations.values()
        )

    async def get(self, user_id: str) -> ParticipantRecord | None:
        """A participant: from its application, else from the shared register (participants
        registered before onboarding existed, such as the seeded demo Suppliers: active)."""
        row = await self._application(user_id)
        kind = await participant_kind(self.engine, user_id)
        status = await self._status_of(user_id)
        if row is not None:
            eui = str(row.eui)
            return ParticipantRecord(
                user_id=user_id,
                eui=eui,
                roles=frozenset(UserRole(r) for r in str(row.roles).split(",") if r),
                kind=kind,
                status=status or ParticipantStatus.APPLIED,
                response_urls=_stored_urls(row.response_url),
                premises=self._owned(eui),
            )
        registered = participants.load(self.home).get(user_id)
        if registered is None:
            return None
        return ParticipantRecord(
            user_id=user_id,
            eui=registered.eui,
            roles=registered.roles,
            kind=kind,
            status=status or ParticipantStatus.ACTIVE,
            response_urls=registered.response_urls,
            premises=self._owned(registered.eui),
        )

    async def all(self) -> list[ParticipantRecord]:
        table = store.participant_applications
        async with self.engine.connect() as conn:
            applied = [r.user_id for r in (await conn.execute(select(table.c.user_id))).all()]
        ids = sorted(set(applied) | set(participants.load(self.home)))
        found = [await self.get(user_id) for user_id in ids]
        return [r for r in found if r is not None]

    async def apply(
        self,
        *,
        user_id: str,
        eui: str,
        roles: Any,
        kind: str,
        response_url: Any = None,
    ) -> ParticipantRecord:
        """Record an application (status applied). 409 when the id or EUI-64 is taken.
        ``response_url`` is one Receive Response Service URL or a list of them, in order."""
        if not _USER_ID.match(user_id):
            raise OnboardingError("user_id is 1-64 letters, digits, '.', '_' or '-'")
        try:
            eui_text = "-".join(f"{b:02X}" for b in parse_eui(eui))
        except Exception as exc:
            raise OnboardingError(f"eui {eui!r} is not an EUI-64") from exc
        try:
            participant_kind_ = ParticipantKind(kind)
        except ValueError as exc:
            raise OnboardingError(
                f"kind must be one of {', '.join(k.value for k in ParticipantKind)}"
            ) from exc
        held = _roles(roles)
        urls = check_response_urls(response_url)
        if participant_kind_ is not ParticipantKind.NON_SEC_PARTY and not held:
            raise OnboardingError("a SEC Party applies with at least one User Role")
        taken = {p.user_id: p.eui for p in participants.load(self.home).values()}
        if user_id in taken or await self._application(user_id) is not None:
            raise OnboardingError(f"participant {user_id!r} already exists", 409)
        table = store.participant_applications
        async with self.engine.connect() as conn:
            same_eui = (await conn.execute(select(table).where(table.c.eui == eui_text))).first()
        if same_eui is not None or eui_text in taken.values():
            raise OnboardingError(f"EUI-64 {eui_text} is already a participant's", 409)
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(table).values(
                    user_id=user_id,
                    eui=eui_text,
                    roles=",".join(sorted(r.value for r in held)),
                    response_url=_storable(urls),
                    applied_at=self.clock(),
                )
            )
        await set_participant_kind(
            self.engine, user_id, participant_kind_, ParticipantStatus.APPLIED.value
        )
        await self._history(user_id, ParticipantStatus.APPLIED, "application")
        record = await self.get(user_id)
        assert record is not None
        return record

    async def _adopt(self, record: ParticipantRecord) -> None:
        """Give a participant registered before onboarding existed an application row, so
        that suspension can take it out of the register and re-activation put it back."""
        if await self._application(record.user_id) is not None:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(store.participant_applications).values(
                    user_id=record.user_id,
                    eui=record.eui,
                    roles=",".join(sorted(r.value for r in record.roles)),
                    response_url=_storable(record.response_urls),
                    applied_at=self.clock(),
                )
            )
        await set_participant_kind(self.engine, record.user_id, record.kind, record.status.value)

    async def onboard(self, user_id: str, *, premises: int = 0) -> tuple[ParticipantRecord, Path]:
        """Issue the bundle, register, allocate ``premises`` new premises, make active.
        Idempotent for the bundle; each call allocates ``premises`` more."""
        if not 0 <= premises <= MAX_PREMISES:
            raise OnboardingError(f"premises must be 0 to {MAX_PREMISES}")
        record = await self.get(user_id)
        if record is None:
            raise OnboardingError(f"no participant {user_id!r}", 404)
        if record.status is ParticipantStatus.SUSPENDED:
            raise OnboardingError(f"{user_id} is suspended; re-activate it first", 409)
        if premises and not record.roles:
            raise OnboardingError(
                "premises are registered in User Roles; this participant holds none"
            )
        await self._adopt(record)
        async with self._lock:
            bundle, _ = await asyncio.to_thread(_issue_and_allocate, self.home, record, premises)
        if record.status is not ParticipantStatus.ACTIVE:
            await self._set_status(record, ParticipantStatus.ACTIVE, "onboarded")
        else:
            await self._history(user_id, ParticipantStatus.ACTIVE, f"{premises} premises added")
        done = await self.get(user_id)
        assert done is not None
        return done, bundle

    async def _set_status(
        self, record: ParticipantRecord, status: ParticipantStatus, reason: str
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(store.participant_profiles)
                .where(store.participant_profiles.c.user_id == record.user_id)
                .values(status=status.value)
            )
        await self._history(record.user_id, status, reason)

    async def set_status(self, user_id: str, status: str, reason: str = "") -> ParticipantRecord:
        """Suspend an active participant or re-activate a suspended one."""
        try:
            wanted = ParticipantStatus(status)
        except ValueError as exc:
            raise OnboardingError("status must be active or suspended") from exc
        record = await self.get(user_id)
        if record is None:
            raise OnboardingError(f"no participant {user_id!r}", 404)
        if wanted is ParticipantStatus.APPLIED or record.status is ParticipantStatus.APPLIED:
            raise OnboardingError("an applied participant becomes active by onboarding", 409)
        if wanted is record.status:
            return record
        await self._adopt(record)
        if wanted is ParticipantStatus.SUSPENDED:
            participants.remove(self.home, user_id)
        else:
            participants.upsert(self.home, record.registered())
        await self._set_status(record, wanted, reason or wanted.value)
        done = await self.get(user_id)
        assert done is not None
        return done

    async def set_response_url(self, user_id: str, url: Any) -> ParticipantRecord:
        """Register (or clear) a participant's Receive Response Service URL(s): one URL, or a
        list in the order the DCC is to try them; they replace those registered before."""
        checked = check_response_urls(url)
        record = await self.get(user_id)
        if record is None:
            raise OnboardingError(f"no participant {user_id!r}", 404)
        await self._adopt(record)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(store.participant_applications)
                .where(store.participant_applications.c.user_id == user_id)
                .values(response_url=_storable(checked))
            )
        if record.status is ParticipantStatus.ACTIVE:
            participants.upsert(
                self.home,
                participants.Participant.with_urls(user_id, record.eui, record.roles, checked),
            )
        done = await self.get(user_id)
        assert done is not None
        return done

    async def status_history(self, user_id: str) -> list[dict[str, Any]]:
        table = store.participant_status_history
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(table).where(table.c.user_id == user_id).order_by(table.c.id)
                )
            ).all()
        return [{"status": r.status, "reason": r.reason, "at": utc(r.at).isoformat()} for r in rows]
