"""The alert acknowledgement over a real link (plain TCP): services/wan's GatewayLink against the
gateway's own connection handler. An alert is acknowledged only once its publish (``on_alert``)
has returned, is not acknowledged when the publish fails (and is sent again), and a publish in
progress does not hold up command responses on the same connection."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dccsim.estate import REGIONS
from dccsim.pki.keystore import KeyStore
from gateway.alert_journal import AlertJournal
from gateway.hosting import DeviceModels, EstateIndex
from gateway.network import NetworkModel
from gateway.server import GatewayServer
from services.wan.app import GatewayLink

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
OnAlert = Callable[[dict[str, Any]], Awaitable[None]]


def alert(n: int) -> dict[str, Any]:
    return {
        "t": "alert",
        "device": f"00-00-00-00-00-00-00-{n:02X}",
        "alert_code": 0x8F3E,
        "frame": bytes([n]) * 16,
        "rid": "",
    }


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        index = EstateIndex()
        models = DeviceModels(index, KeyStore(tmp_path / "keys"), lambda: NOW)
        network = NetworkModel.from_config(list(REGIONS), seed=1)
        self.journal_path = tmp_path / "alerts.journal"
        self.gateway = GatewayServer(
            index,
            models,
            network,
            clock=lambda: NOW,
            alert_journal=AlertJournal(self.journal_path),
            alert_ack_timeout_s=0.2,
        )
        self.server: asyncio.Server | None = None
        self.links: list[GatewayLink] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.gateway.handle_connection, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def link(self, port: int, on_alert: OnAlert) -> GatewayLink:
        link = GatewayLink("127.0.0.1", port, None, 2.0, on_alert)  # type: ignore[arg-type]
        self.links.append(link)
        await link._connect()
        return link

    async def close(self) -> None:
        for link in self.links:
            await link.close()
        if self.server is not None:
            self.server.close()
        for task in list(self.gateway.tasks):
            task.cancel()
        self.gateway.alert_journal.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(tmp_path)
    yield r
    await r.close()


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_an_alert_is_acknowledged_only_after_its_publish(rig: Rig) -> None:
    port = await rig.start()
    release = asyncio.Event()
    published: list[dict[str, Any]] = []

    async def on_alert(message: dict[str, Any]) -> None:
        await release.wait()  # the broker's confirm has not come yet
        published.append(message)

    await rig.link(port, on_alert)
    await eventually(lambda: bool(rig.gateway.links))
    await rig.gateway.send_alert(alert(1))
    await asyncio.sleep(0.1)
    assert len(rig.gateway.alert_journal) == 1  # in flight, not acknowledged
    # a command on the same connection is answered meanwhile (an unknown device: E20)
    link = rig.links[0]
    reply = await asyncio.wait_for(
        link.send({"device": "00-00-00-00-00-00-00-FF", "frame": b"x"}, 2.0), 1.0
    )
    assert reply["t"] == "err" and reply["code"] == "E20"
    release.set()
    await eventually(lambda: len(rig.gateway.alert_journal) == 0)
    assert published[0]["id"] == 1 and published[0]["frame"] == alert(1)["frame"]
    assert AlertJournal(rig.journal_path).pending() == []


async def test_an_alert_whose_publish_fails_is_sent_again_until_one_succeeds(rig: Rig) -> None:
    port = await rig.start()
    attempts: list[dict[str, Any]] = []

    async def on_alert(message: dict[str, Any]) -> None:
        attempts.append(message)
        if len(attempts) < 3:
            raise ConnectionError("publish not confirmed")

    link = await rig.link(port, on_alert)
    await eventually(lambda: bool(rig.gateway.links))
    await rig.gateway.send_alert(alert(2))
    watcher = asyncio.create_task(rig.gateway.watch_alert_acks(asyncio.Event()))
    try:
        await eventually(lambda: len(rig.gateway.alert_journal) == 0)
    finally:
        watcher.cancel()
    assert len(attempts) == 3
    assert {m["id"] for m in attempts} == {1}
    assert all(m["frame"] == alert(2)["frame"] for m in attempts)  # the same alert each time
    assert link.alerts_unpublished == 2


async def test_alerts_raised_with_no_link_go_out_in_order_when_one_connects(rig: Rig) -> None:
    port = await rig.start()
    for n in range(5):
        await rig.gateway.send_alert(alert(n))
    published: list[int] = []

    async def on_alert(message: dict[str, Any]) -> None:
        published.append(int(message["id"]))

    await rig.link(port, on_alert)
    await eventually(lambda: len(rig.gateway.alert_journal) == 0)
    assert published == [1, 2, 3, 4, 5]


async def test_a_repeat_that_arrives_while_the_publish_is_pending_is_not_published_twice(
    rig: Rig,
) -> None:
    port = await rig.start()
    release = asyncio.Event()
    published: list[int] = []

    async def on_alert(message: dict[str, Any]) -> None:
        await release.wait()
        published.append(int(message["id"]))

    await rig.link(port, on_alert)
    await eventually(lambda: bool(rig.gateway.links))
    await rig.gateway.send_alert(alert(3))
    await asyncio.sleep(0.25)  # past the gateway's acknowledgement timeout
    assert await rig.gateway.resend_unacknowledged() == 1  # the gateway sends it again
    await asyncio.sleep(0.1)
    release.set()
    await eventually(lambda: len(rig.gateway.alert_journal) == 0)
    await asyncio.sleep(0.1)
    assert published == [1]
