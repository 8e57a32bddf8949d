"""Unsolicited alerts are at least once end to end, and a repeat collapses: an alert raised while
the wan service is down survives the gateway being killed (SIGKILL) and restarted, reaches the
User as one DUIS DeviceAlertMessage once wan is back, and is acknowledged (the gateway's journal
empties). An alert sent again because its acknowledgement was lost (the journal put back as it
was before the ack, as if the gateway died before writing it) carries the same frame, so the
User still receives it once."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from dccsim.duis.requestid import parse_eui
from dccsim.testuser import ReceivedResponse, ResponseReceiver
from gateway.server import alert_journal_file, state_file
from tests.broker import rabbitmqctl_available
from tests.system import System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]

TAMPER = "8F3E"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    sys_ = System(tmp_path_factory.mktemp("dccsim-home"), premises=1)
    try:
        sys_.start()
        yield sys_
    finally:
        sys_.stop()


def device_alerts(receiver: ResponseReceiver, device: str) -> list[ReceivedResponse]:
    return [
        r
        for r in receiver.received
        if r.response.body_name == "DeviceAlertMessage"
        and r.response.response_id is not None
        and r.response.response_id.originator == parse_eui(device)
        and str(r.response.alert_code).upper() == TAMPER
    ]


async def raise_alert(system: System, device: str) -> None:
    url = json.loads((system.home / "gateway-control.json").read_text())["url"]
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/devices/{device}/alerts", json={"alert_code": "0x8F3E"}) as r:
            assert r.status == 202, await r.text()
            answer: dict[str, Any] = await r.json()
    assert answer["framed"] is True


async def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def unacknowledged(system: System) -> float:
    return system.metric("gateway", "dccsim_gateway_alert_outbox")


async def test_an_alert_survives_a_killed_gateway_and_reaches_the_user_once(
    system: System, receiver: ResponseReceiver
) -> None:
    device = system.esmes()[0]
    journal = alert_journal_file(state_file(system.home, []))

    system.kill("wan", signal.SIGTERM)
    await raise_alert(system, device)
    assert unacknowledged(system) == 1  # no WAN link: it waits in the journal
    system.kill("gateway")  # SIGKILL: nothing flushed on the way out
    assert journal.is_file() and journal.stat().st_size > 0

    system.start_service("gateway")
    assert unacknowledged(system) == 1  # reloaded from the journal
    before_ack = journal.read_bytes()  # the journal as it is before wan acknowledges
    await asyncio.sleep(1.0)
    assert device_alerts(receiver, device) == []  # nothing can deliver it while wan is down

    system.start_service("wan")
    await wait_for(lambda: len(device_alerts(receiver, device)) >= 1, 30, "the Device Alert")
    await wait_for(lambda: unacknowledged(system) == 0, 15, "the wan's acknowledgement")
    await asyncio.sleep(1.5)  # room for a duplicate to arrive, were there one
    (item,) = device_alerts(receiver, device)
    assert item.response.gbcs_payload is not None

    # the acknowledgement lost: the gateway dies before it is on disk and sends the alert again
    system.kill("gateway")
    journal.write_bytes(before_ack)
    resent_before = system.metric("wan", "dccsim_wan_alerts_total")
    assert resent_before >= 1
    duplicates = {"outcome": "duplicate"}
    duplicates_before = system.metric("user_gateway", "dccsim_delivery_attempts_total", duplicates)
    system.start_service("gateway")
    await wait_for(
        lambda: system.metric("wan", "dccsim_wan_alerts_total") > resent_before, 30, "the resend"
    )
    await wait_for(lambda: unacknowledged(system) == 0, 15, "the resend's acknowledgement")
    await wait_for(
        lambda: (
            system.metric("user_gateway", "dccsim_delivery_attempts_total", duplicates)
            > duplicates_before
        ),
        15,
        "the User Gateway to see the repeat as a duplicate",
    )
    await asyncio.sleep(1.5)
    (again,) = device_alerts(receiver, device)  # collapsed by its delivery key: still one
    assert again.response.gbcs_payload == item.response.gbcs_payload
