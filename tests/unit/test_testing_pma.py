"""The DCCKI PMA register: who may record, decide, request and see what."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dccsim.storage import create_engine
from services.testing import store
from services.testing.pma import Actor, Decision, EntryKind, PmaError, PmaRegister


@pytest.fixture
async def pma(tmp_path: Path) -> AsyncIterator[PmaRegister]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'testing.db'}")
    await store.create_schema(engine)
    yield PmaRegister(engine)
    await engine.dispose()


async def _recommendation(pma: PmaRegister) -> int:
    entry = await pma.record(
        Actor.DCCKI_PMA,
        kind=EntryKind.RECOMMENDATION,
        title="Shorten DCCKI certificate validity",
        body="Recommend 2 years.",
    )
    return entry.id


@pytest.mark.parametrize("actor", [a for a in Actor if a is not Actor.DCCKI_PMA])
async def test_only_the_dccki_pma_records_entries(pma: PmaRegister, actor: Actor) -> None:
    with pytest.raises(PmaError) as caught:
        await pma.record(actor, kind=EntryKind.REVIEW, title="t", body="b")
    assert caught.value.status == 403


async def test_dccki_pma_and_dcc_see_everything(pma: PmaRegister) -> None:
    entry_id = await _recommendation(pma)
    for actor in (Actor.DCCKI_PMA, Actor.DCC):
        assert [e.id for e in await pma.entries(actor)] == [entry_id]
        assert (await pma.entry(actor, entry_id)).title.startswith("Shorten")


@pytest.mark.parametrize(
    "actor", [Actor.SSC, Actor.SMKI_PMA, Actor.SECRETARY_OF_STATE, Actor.PARTICIPANT]
)
async def test_others_see_nothing_by_default(pma: PmaRegister, actor: Actor) -> None:
    entry_id = await _recommendation(pma)
    assert await pma.entries(actor) == []
    with pytest.raises(PmaError) as caught:
        await pma.entry(actor, entry_id)
    assert caught.value.status == 403


async def test_ssc_sees_an_entry_once_its_request_is_granted(pma: PmaRegister) -> None:
    entry_id = await _recommendation(pma)
    request = await pma.request_access(Actor.SSC, entry_id, reason="security review")
    assert await pma.entries(Actor.SSC) == []
    with pytest.raises(PmaError):
        await pma.grant(Actor.SSC, request.id)  # a requester cannot grant itself
    granted = await pma.grant(Actor.DCCKI_PMA, request.id)
    assert granted.granted_at is not None
    assert [e.id for e in await pma.entries(Actor.SSC)] == [entry_id]
    # the grant is the SSC's alone
    assert await pma.entries(Actor.SMKI_PMA) == []


async def test_requesters_see_only_their_own_requests(pma: PmaRegister) -> None:
    entry_id = await _recommendation(pma)
    await pma.request_access(Actor.SSC, entry_id, reason="a")
    await pma.request_access(Actor.SMKI_PMA, entry_id, reason="b")
    assert [r.requester for r in await pma.access_requests(Actor.SSC)] == [Actor.SSC]
    assert len(await pma.access_requests(Actor.DCC)) == 2
    with pytest.raises(PmaError):
        await pma.access_requests(Actor.PARTICIPANT)
    with pytest.raises(PmaError):
        await pma.request_access(Actor.DCC, entry_id, reason="c")


async def test_dcc_decides_once_and_only_on_recommendations(pma: PmaRegister) -> None:
    entry_id = await _recommendation(pma)
    review = await pma.record(Actor.DCCKI_PMA, kind=EntryKind.REVIEW, title="Annual", body="")
    with pytest.raises(PmaError) as caught:
        await pma.decide(
            Actor.DCCKI_PMA,
            entry_id,
            decision=Decision.RAISE_MODIFICATION_PROPOSAL,
            reason="",
            transition=False,
        )
    assert caught.value.status == 403
    with pytest.raises(PmaError, match="not a recommendation"):
        await pma.decide(
            Actor.DCC,
            review.id,
            decision=Decision.NO_MODIFICATION_PROPOSAL,
            reason="",
            transition=False,
        )
    decided = await pma.decide(
        Actor.DCC,
        entry_id,
        decision=Decision.RAISE_MODIFICATION_PROPOSAL,
        reason="agreed",
        transition=False,
    )
    assert decided.decision is Decision.RAISE_MODIFICATION_PROPOSAL
    assert not decided.notified_to_sos
    with pytest.raises(PmaError, match="already decided"):
        await pma.decide(
            Actor.DCC,
            entry_id,
            decision=Decision.NO_MODIFICATION_PROPOSAL,
            reason="",
            transition=False,
        )


async def test_in_transition_the_decision_reaches_the_secretary_of_state(
    pma: PmaRegister,
) -> None:
    notified = await _recommendation(pma)
    await _recommendation(pma)  # decided outside transition: not the SoS's to see
    await pma.decide(
        Actor.DCC,
        notified,
        decision=Decision.NO_MODIFICATION_PROPOSAL,
        reason="covered by SEC T",
        transition=True,
    )
    seen = await pma.entries(Actor.SECRETARY_OF_STATE)
    assert [e.id for e in seen] == [notified]
    assert seen[0].notified_to_sos


async def test_unknown_entries_are_404(pma: PmaRegister) -> None:
    with pytest.raises(PmaError) as caught:
        await pma.entry(Actor.DCC, 99)
    assert caught.value.status == 404
