"""Test phases, the Secretary of State's directions, re-notification and notices."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from dccsim.storage import create_engine
from services.testing import store
from services.testing.phases import (
    AUDIENCES,
    Audience,
    Notice,
    ParticipantKind,
    Phase,
    PhaseError,
    PhaseRegister,
    in_audience,
    participant_kind,
    set_participant_kind,
)


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(minutes=1)
        return self.now


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    db = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'testing.db'}")
    await store.create_schema(db)
    yield db
    await db.dispose()


@pytest.fixture
def register(engine: AsyncEngine) -> PhaseRegister:
    return PhaseRegister(engine, clock=Clock())


def test_audiences_are_the_ones_the_sec_names() -> None:
    assert AUDIENCES[Phase.SIT] is Audience.RDPS
    assert AUDIENCES[Phase.IT] is Audience.PARTIES
    assert AUDIENCES[Phase.SRT] is Audience.PARTIES
    assert AUDIENCES[Phase.E2E] is Audience.TESTING_PARTICIPANTS
    assert set(AUDIENCES) == set(Phase)


def test_audience_membership() -> None:
    assert in_audience(ParticipantKind.RDP, Audience.RDPS)
    assert not in_audience(ParticipantKind.SEC_PARTY, Audience.RDPS)
    assert in_audience(ParticipantKind.RDP, Audience.PARTIES)
    assert not in_audience(ParticipantKind.NON_SEC_PARTY, Audience.PARTIES)
    assert in_audience(ParticipantKind.NON_SEC_PARTY, Audience.TESTING_PARTICIPANTS)


async def test_first_notification_sets_the_date_and_notifies_the_audience(
    register: PhaseRegister,
) -> None:
    notice = await register.notify(Phase.SIT, dt.date(2026, 3, 2))
    assert notice.audience is Audience.RDPS
    assert notice.commencement == dt.date(2026, 3, 2)
    status = await register.status(Phase.SIT)
    assert status.commencement == dt.date(2026, 3, 2)
    assert status.open_direction is None


async def test_a_notified_date_cannot_simply_be_renotified(register: PhaseRegister) -> None:
    await register.notify(Phase.IT, dt.date(2026, 4, 1))
    with pytest.raises(PhaseError, match="Secretary of State"):
        await register.notify(Phase.IT, dt.date(2026, 5, 1))


async def test_renotification_needs_the_open_direction(register: PhaseRegister) -> None:
    await register.notify(Phase.IT, dt.date(2026, 4, 1))
    with pytest.raises(PhaseError, match="not an open direction"):
        await register.renotify(Phase.IT, direction_id=1, commencement=dt.date(2026, 6, 1))


async def test_direction_then_renotification_changes_the_date_and_keeps_history(
    register: PhaseRegister,
) -> None:
    await register.notify(Phase.SRT, dt.date(2026, 4, 1))
    direction = await register.direct(
        Phase.SRT, reason="SMKI readiness", requested_date=dt.date(2026, 6, 1)
    )
    assert (await register.status(Phase.SRT)).open_direction == direction
    assert (await register.status(Phase.SRT)).commencement == dt.date(2026, 4, 1)
    notice = await register.renotify(
        Phase.SRT, direction_id=direction.id, commencement=dt.date(2026, 6, 1)
    )
    assert "SMKI readiness" in notice.body and "2026-04-01" in notice.body
    status = await register.status(Phase.SRT)
    assert status.commencement == dt.date(2026, 6, 1)
    assert status.open_direction is None
    history = await register.history(Phase.SRT)
    assert [e.event for e in history] == ["notified", "direction", "renotified"]
    assert history[0].detail["commencement"] == "2026-04-01"
    assert history[2].detail["direction_id"] == direction.id
    assert len(await register.notices(phase=Phase.SRT)) == 2


async def test_a_second_direction_waits_for_the_first(register: PhaseRegister) -> None:
    await register.notify(Phase.E2E, dt.date(2026, 4, 1))
    await register.direct(Phase.E2E, reason="first")
    with pytest.raises(PhaseError, match="open direction"):
        await register.direct(Phase.E2E, reason="second")


async def test_direction_needs_a_notified_date(register: PhaseRegister) -> None:
    with pytest.raises(PhaseError, match="no notified date"):
        await register.direct(Phase.GFI, reason="too early")


async def test_notices_reach_only_their_audience(
    register: PhaseRegister, engine: AsyncEngine
) -> None:
    await register.notify(Phase.SIT, dt.date(2026, 3, 2))  # RDPs
    await register.notify(Phase.IT, dt.date(2026, 4, 1))  # Parties
    await register.notify(Phase.GFI, dt.date(2026, 2, 1))  # everyone testing
    maker = await register.notices(kind=ParticipantKind.NON_SEC_PARTY)
    assert [n.phase for n in maker] == [Phase.GFI]
    party = await register.notices(kind=ParticipantKind.SEC_PARTY)
    assert {n.phase for n in party} == {Phase.IT, Phase.GFI}
    rdp = await register.notices(kind=ParticipantKind.RDP)
    assert {n.phase for n in rdp} == {Phase.SIT, Phase.IT, Phase.GFI}
    assert await participant_kind(engine, "maker") is ParticipantKind.SEC_PARTY
    await set_participant_kind(engine, "maker", ParticipantKind.NON_SEC_PARTY)
    assert await participant_kind(engine, "maker") is ParticipantKind.NON_SEC_PARTY


async def test_listeners_hear_each_notice_after_it_is_stored(engine: AsyncEngine) -> None:
    heard: list[Notice] = []

    async def listen(notice: Notice) -> None:
        stored = await phases.notices(phase=notice.phase)
        assert notice.id in {n.id for n in stored}
        heard.append(notice)

    phases = PhaseRegister(engine, clock=Clock(), listeners=[listen])
    await phases.notify(Phase.PRE_UIT, dt.date(2026, 2, 1))
    assert [n.phase for n in heard] == [Phase.PRE_UIT]
