"""DSP-held future-dated requests: held in their database until due, sent once, kept across a
restart; with an injected clock, so nothing sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dccsim.bus import Envelope
from dccsim.bus.topology import SR_ACCEPTED
from dccsim.metrics import ServiceMetrics
from dccsim.storage import Database
from services.user_gateway.future_dated import FutureDatedRequests

RID = "90-B3-D5-1F-30-01-D0-00:00-DB-12-34-56-78-90-A0:1001"
RID2 = "90-B3-D5-1F-30-01-D0-00:00-DB-12-34-56-78-90-A0:1002"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeBus:
    def __init__(self) -> None:
        self.published: list[tuple[str, Envelope]] = []
        self.fail = False

    async def publish(self, routing_key: str, envelope: Envelope) -> None:
        if self.fail:
            raise RuntimeError("broker down (test)")
        self.published.append((routing_key, envelope))

    def emit_timeline(self, request_id: str, stage: str, **_: Any) -> None:
        pass


def _body(counter: int = 1001) -> dict[str, Any]:
    return {
        "srv": "4.1.1",
        "cv": 1,
        "user_id": "supplier",
        "user_eui": "90-B3-D5-1F-30-01-D0-00",
        "counter": counter,
        "body_xml": b"<x/>",
    }


class Installation:
    """One database file; each ``start`` is a User Gateway process start."""

    def __init__(self, path: Path) -> None:
        self.url = f"sqlite+aiosqlite:///{path / 'future_dated.db'}"
        self.clock = Clock()
        self.bus = FakeBus()
        self.dbs: list[Database] = []

    async def start(self) -> FutureDatedRequests:
        db = Database(self.url)
        self.dbs.append(db)
        store = FutureDatedRequests(
            db,
            self.bus,  # type: ignore[arg-type]
            ServiceMetrics(f"user_gateway_test_{len(self.dbs)}"),
            clock=self.clock,
            max_wait_s=0.01,
        )
        await store.create_schema()
        return store

    async def close(self) -> None:
        for db in self.dbs:
            await db.dispose()


@pytest.fixture
async def installation(tmp_path: Path) -> AsyncIterator[Installation]:
    inst = Installation(tmp_path)
    yield inst
    await inst.close()


async def test_a_held_request_is_not_sent_before_its_time(installation: Installation) -> None:
    store = await installation.start()
    await store.hold(request_id=RID, srv="4.1.1", execute_at=1010.0, accepted_body=_body())
    installation.clock.now = 1009.999
    assert await store.release_due() == 0
    assert installation.bus.published == []
    assert await store.held() == [(RID, 1010.0)]


async def test_a_held_request_is_sent_at_its_time_as_sr_accepted(
    installation: Installation,
) -> None:
    store = await installation.start()
    await store.hold(request_id=RID, srv="4.1.1", execute_at=1010.0, accepted_body=_body())
    installation.clock.now = 1010.0
    assert await store.release_due() == 1
    [(key, env)] = installation.bus.published
    assert key == SR_ACCEPTED
    assert env.kind == "sr.accepted" and env.request_id == RID
    assert env.body["counter"] == 1001 and env.body["body_xml"] == b"<x/>"
    assert await store.held() == []


async def test_a_sent_request_is_not_sent_again(installation: Installation) -> None:
    store = await installation.start()
    await store.hold(request_id=RID, srv="4.1.1", execute_at=1010.0, accepted_body=_body())
    installation.clock.now = 2000.0
    assert await store.release_due() == 1
    assert await store.release_due() == 0
    again = await installation.start()  # a restart after sending
    assert await again.release_due() == 0
    assert len(installation.bus.published) == 1


async def test_a_restart_before_the_time_loses_nothing(installation: Installation) -> None:
    first = await installation.start()
    await first.hold(request_id=RID, srv="4.1.1", execute_at=1010.0, accepted_body=_body())
    await first.hold(request_id=RID2, srv="4.1.1", execute_at=1005.0, accepted_body=_body(1002))
    restarted = await installation.start()
    assert await restarted.held() == [(RID2, 1005.0), (RID, 1010.0)]
    installation.clock.now = 1010.0
    assert await restarted.release_due() == 2
    assert [env.request_id for _, env in installation.bus.published] == [RID2, RID]


async def test_a_failed_publication_keeps_the_request_held(installation: Installation) -> None:
    store = await installation.start()
    await store.hold(request_id=RID, srv="4.1.1", execute_at=1010.0, accepted_body=_body())
    installation.clock.now = 1010.0
    installation.bus.fail = True
    with pytest.raises(RuntimeError):
        await store.release_due()
    assert await store.held() == [(RID, 1010.0)]
    installation.bus.fail = False
    assert await store.release_due() == 1


async def test_holding_the_same_request_twice_keeps_it_once(installation: Installation) -> None:
    store = await installation.start()
    for _ in range(2):
        await store.hold(request_id=RID, srv="4.1.1", execute_at=1010.0, accepted_body=_body())
    assert await store.held() == [(RID, 1010.0)]


async def test_the_loop_sends_when_the_injected_clock_reaches_the_time(
    installation: Installation,
) -> None:
    store = await installation.start()
    await store.hold(request_id=RID, srv="4.1.1", execute_at=5000.0, accepted_body=_body())
    task = asyncio.create_task(store.run())
    try:
        await asyncio.sleep(0.1)
        assert installation.bus.published == []
        installation.clock.now = 5000.0
        async with asyncio.timeout(10):
            while not installation.bus.published:
                await asyncio.sleep(0.01)
        assert [env.request_id for _, env in installation.bus.published] == [RID]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
