"""Service Request timelines from ``request.timeline`` events: stored, attributed by the
RequestID's originator, shown by API and portal; and consumed from real RabbitMQ."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dccsim.bus import Bus
from dccsim.config import CommonSettings, TestingSettings
from dccsim.metrics import ServiceMetrics
from dccsim.seed import DEMO_SUPPLIER_EUI, DEMO_SUPPLIER_ID, seed_demo
from services.testing.app import STATE, build_app
from services.testing.timeline import TIMELINE_EVENT, routing_key, timeline_envelope
from tests.broker import create_vhost, delete_vhost, rabbitmqctl_available

Client = TestClient[web.Request, web.Application]
T0 = dt.datetime(2026, 1, 7, 10, 0, tzinfo=dt.UTC)
RID = f"{DEMO_SUPPLIER_EUI}:00-DC-C5-00-00-00-01-02:1000"
STAGES = [
    ("received", 0.000, None),
    ("acknowledged", 0.012, "I99"),
    ("command_sent", 0.030, None),
    ("device_answered", 0.480, "I0"),
    ("response_delivered", 0.525, "I0"),
]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    seed_demo(home, premises=1)
    return home


@pytest.fixture
async def client(seeded: Path, tmp_path: Path) -> AsyncIterator[Client]:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(seeded, home)
    async with TestClient(TestServer(build_app(TestingSettings(home=home)))) as test_client:
        yield test_client


async def _record_all(client: Client, request_id: str = RID) -> None:
    timelines = client.app[STATE].timelines
    for stage, offset, code in reversed(STAGES):  # out of order on purpose
        envelope = timeline_envelope(
            request_id,
            stage,
            at=T0 + dt.timedelta(seconds=offset),
            code=code,
            srv="4.1.1" if stage == "received" else None,
            user_id=DEMO_SUPPLIER_ID if stage == "received" else None,
        )
        assert await timelines.record(envelope)


async def test_timeline_is_in_pipeline_order_with_codes_and_timings(client: Client) -> None:
    await _record_all(client)
    body = await (await client.get(f"/api/v1/requests/{RID}")).json()
    assert [s["stage"] for s in body["stages"]] == [s for s, _, _ in STAGES]
    assert body["srv"] == "4.1.1" and body["code"] == "I0" and body["complete"] is True
    assert body["stages"][1]["code"] == "I99"
    assert body["stages"][-1]["elapsed_ms"] == pytest.approx(525.0)
    listed = await (await client.get(f"/api/v1/requests?participant={DEMO_SUPPLIER_ID}")).json()
    assert [t["request_id"] for t in listed] == [RID]


async def test_a_redelivered_or_unknown_event_changes_nothing(client: Client) -> None:
    timelines = client.app[STATE].timelines
    assert await timelines.record(timeline_envelope(RID, "received", at=T0))
    assert not await timelines.record(timeline_envelope(RID, "received", at=T0))
    unknown = timeline_envelope(RID, "received", at=T0)
    unknown.body["stage"] = "teleported"
    assert not await timelines.record(unknown)
    found = await timelines.timeline(RID)
    assert found is not None and [e.stage for e in found.events] == ["received"]
    assert found.to_json()["missing"] == [
        "acknowledged",
        "command_sent",
        "device_answered",
        "response_delivered",
    ]


async def test_portal_shows_only_the_participants_own_requests(client: Client) -> None:
    await _record_all(client)
    others = "90-B3-D5-1F-30-01-D0-07:00-DC-C5-00-00-00-01-02:5"
    await client.app[STATE].timelines.record(timeline_envelope(others, "received", at=T0))
    token = await client.app[STATE].logins.create_link(DEMO_SUPPLIER_ID)
    await client.get(f"/ssi/login?token={token}")
    listing = await (await client.get("/ssi/requests")).text()
    assert RID in listing and others not in listing
    page = await (await client.get(f"/ssi/requests/{RID}")).text()
    assert "Device answered" in page and "I99" in page and "525 ms" in page
    assert (await client.get(f"/ssi/requests/{others}")).status == 404


@pytest.fixture
def vhost() -> Iterator[str]:
    if not rabbitmqctl_available():
        pytest.skip("rabbitmqctl not installed")
    name, url = create_vhost()
    yield url
    delete_vhost(name)


@pytest.mark.rabbitmq
async def test_events_published_on_the_bus_reach_the_timeline(
    vhost: str, seeded: Path, tmp_path: Path
) -> None:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(seeded, home)
    settings = TestingSettings(home=home, amqp_url=vhost)
    consumer = Bus(settings, ServiceMetrics("testing"), name="testing")
    emitter = Bus(CommonSettings(amqp_url=vhost), ServiceMetrics("emitter"), name="emitter")
    await consumer.connect()
    await emitter.connect()
    try:
        async with TestClient(TestServer(build_app(settings, bus=consumer))) as client:
            for stage, offset, code in STAGES:
                envelope = timeline_envelope(
                    RID, stage, at=T0 + dt.timedelta(seconds=offset), code=code
                )
                assert envelope.kind == TIMELINE_EVENT
                await emitter.publish_event(routing_key(stage), envelope)
            async with asyncio.timeout(10):
                while True:
                    resp = await client.get(f"/api/v1/requests/{RID}")
                    if resp.status == 200 and (await resp.json())["complete"]:
                        break
                    await asyncio.sleep(0.05)
            body = await resp.json()
            assert len(body["stages"]) == 5 and body["stages"][3]["code"] == "I0"
    finally:
        await emitter.close()
        await consumer.close()


async def test_a_batch_is_stored_in_one_go_skipping_repeats_and_malformed_events(
    client: Client,
) -> None:
    from dccsim.bus.client import TIMELINE_BATCH_KIND
    from dccsim.bus.envelope import Envelope

    timelines = client.app[STATE].timelines
    assert await timelines.record(timeline_envelope(RID, "received", at=T0))
    other = "90-B3-D5-1F-30-01-D0-07:00-DC-C5-00-00-00-01-02:5"
    events = [
        {"rid": RID, "stage": "received", "at": T0.timestamp() + 9},  # a repeat: ignored
        {"rid": RID, "stage": "acknowledged", "at": T0.timestamp() + 0.012, "code": "I99"},
        {"rid": other, "stage": "received", "at": T0.timestamp(), "srv": "4.1.1"},
        {"rid": "not-a-request-id", "stage": "received", "at": T0.timestamp()},  # malformed
        {"rid": RID, "stage": "teleported", "at": T0.timestamp()},  # unknown stage
        "not even a map",
    ]
    batch = Envelope(kind=TIMELINE_BATCH_KIND, request_id="", body={"events": events})
    await timelines.handle(batch)
    mine = await timelines.timeline(RID)
    assert mine is not None
    assert [(e.stage, e.at, e.code) for e in mine.events] == [
        ("received", T0, None),  # the first one stored wins
        ("acknowledged", T0 + dt.timedelta(seconds=0.012), "I99"),
    ]
    theirs = await timelines.timeline(other)
    assert theirs is not None and theirs.srv == "4.1.1"
    assert await timelines.timeline("not-a-request-id") is None


@pytest.mark.rabbitmq
async def test_pipeline_services_emit_batched_timelines_that_reach_the_portal(
    vhost: str, seeded: Path, tmp_path: Path
) -> None:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(seeded, home)
    settings = TestingSettings(home=home, amqp_url=vhost)
    consumer = Bus(settings, ServiceMetrics("testing"), name="testing")
    emitter = Bus(CommonSettings(amqp_url=vhost), ServiceMetrics("emitter"), name="emitter")
    await consumer.connect()
    await emitter.connect()
    rids = [f"{DEMO_SUPPLIER_EUI}:00-DC-C5-00-00-00-01-02:{2000 + i}" for i in range(50)]
    try:
        async with TestClient(TestServer(build_app(settings, bus=consumer))) as client:
            for rid in rids:
                for stage, _, code in STAGES:
                    emitter.emit_timeline(rid, stage, code=code)
            async with asyncio.timeout(15):
                while True:
                    found = [await client.app[STATE].timelines.timeline(r) for r in rids]
                    if all(t is not None and t.complete for t in found):
                        break
                    await asyncio.sleep(0.05)
            assert all(t is not None and len(t.events) == 5 for t in found)
    finally:
        await emitter.close()
        await consumer.close()


@pytest.mark.rabbitmq
async def test_timeline_events_go_out_in_few_messages_and_the_last_ones_on_close(
    vhost: str,
) -> None:
    import aio_pika

    from dccsim.bus.client import TIMELINE_BATCH_KEY, TIMELINE_BATCH_KIND
    from dccsim.bus.envelope import Envelope

    emitter = Bus(CommonSettings(amqp_url=vhost), ServiceMetrics("emitter"), name="emitter")
    await emitter.connect()
    connection = await aio_pika.connect(vhost)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(await channel.get_exchange("dccsim.events"), "timeline.*")
        for i in range(200):
            emitter.emit_timeline(f"{RID}{i}", "received", srv="4.1.1")
        await emitter.close()  # before the flush timer: close sends what was gathered
        messages, events = 0, []
        async with asyncio.timeout(10):
            while len(events) < 200:
                message = await queue.get(timeout=5, fail=True)
                assert message is not None
                await message.ack()
                assert message.routing_key == TIMELINE_BATCH_KEY
                env = Envelope.decode(message.body)
                assert env.kind == TIMELINE_BATCH_KIND
                events.extend(env.body["events"])
                messages += 1
    assert messages < 10
    assert [e["rid"] for e in events] == [f"{RID}{i}" for i in range(200)]
    assert all(e["stage"] == "received" and e["srv"] == "4.1.1" for e in events)
