"""The network model and device faults through the whole pipeline: every service a separate
process, the real RabbitMQ, the gateway's control API changing conditions at run time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import aiohttp
import pytest

from dccsim.bus.envelope import Envelope
from dccsim.bus.topology import EXCHANGE, GBCS_ALERT
from dccsim.duis import xmldsig
from dccsim.duis.requestid import RequestId, parse_eui
from dccsim.duis.xml import parse_safely
from dccsim.gbcs.frames import CRA_ALERT, GeneralSigning, decode_message
from dccsim.pki.files import load_certificate
from dccsim.testuser import ResponseReceiver, TestUser, post
from tests.broker import rabbitmqctl_available
from tests.system import System, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]

DEADLINE_S = 3.0


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    sys_ = System(
        tmp_path_factory.mktemp("dccsim-estate"),
        premises=7,
        extra_env={
            "DCCSIM_GATEWAY_CONTROL_PORT": str(free_port()),
            "DCCSIM_WAN_DEADLINE_S": str(DEADLINE_S),
            "DCCSIM_GATEWAY_RESTORE_ALERT_DELAY_S": "0.2",
        },
    )
    try:
        sys_.start()
        yield sys_
    finally:
        sys_.stop()


class Control:
    def __init__(self, system: System) -> None:
        self.system = system

    @property
    def url(self) -> str:
        # the gateway writes where its control API listens (its port may change on restart)
        return str(json.loads((self.system.home / "gateway-control.json").read_text())["url"])

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with aiohttp.ClientSession() as s:
            async with s.request(method, self.url + path, json=body) as resp:
                assert resp.status < 300, await resp.text()
                return await resp.json()


@pytest.fixture
async def control(system: System) -> AsyncIterator[Control]:
    ctl = Control(system)
    yield ctl
    await ctl.call("POST", "/network/reset")


async def outcome(
    user: TestUser, session: aiohttp.ClientSession, system: System, rx: ResponseReceiver, eui: str
) -> tuple[str, float]:
    """Send 4.1.1 to ``eui``; the async response code and how long it took."""
    rid, document = user.service_request("4.1.1", eui)
    assert (await post(session, system.service_s, document)).response_code == "I99"
    loop = asyncio.get_running_loop()
    start = loop.time()
    item = await rx.wait_for(str(rid), timeout=30)
    return item.response.response_code, loop.time() - start


async def test_offline_device_is_e20_to_the_user(
    system: System,
    user: TestUser,
    receiver: ResponseReceiver,
    session: aiohttp.ClientSession,
    control: Control,
) -> None:
    esme = system.esmes()[0]
    view = await control.call("PUT", f"/devices/{esme}", {"offline": "unreachable"})
    assert view["offline"] == "unreachable"
    code, elapsed = await outcome(user, session, system, receiver, esme)
    assert code == "E20"
    assert elapsed < DEADLINE_S  # the CSP knows at once that it has no session
    await control.call("PUT", f"/devices/{esme}", {"offline": None})
    assert (await outcome(user, session, system, receiver, esme))[0] == "I0"


async def test_silent_device_is_e21_at_the_deadline(
    system: System,
    user: TestUser,
    receiver: ResponseReceiver,
    session: aiohttp.ClientSession,
    control: Control,
) -> None:
    esme = system.esmes()[1]
    await control.call("PUT", f"/devices/{esme}", {"offline": "silent"})
    code, elapsed = await outcome(user, session, system, receiver, esme)
    assert code == "E21"
    assert elapsed >= DEADLINE_S * 0.9


async def test_total_loss_in_a_region_is_e21_at_the_deadline(
    system: System,
    user: TestUser,
    receiver: ResponseReceiver,
    session: aiohttp.ClientSession,
    control: Control,
) -> None:
    esme = system.esmes()[2]
    region = (await control.call("GET", f"/devices/{esme}"))["region"]
    await control.call("PUT", f"/network/regions/{region}", {"loss": 1.0})
    code, elapsed = await outcome(user, session, system, receiver, esme)
    assert code == "E21"
    assert elapsed >= DEADLINE_S * 0.9


async def test_region_outage_is_e20(
    system: System,
    user: TestUser,
    receiver: ResponseReceiver,
    session: aiohttp.ClientSession,
    control: Control,
) -> None:
    esme = system.esmes()[3]
    region = (await control.call("GET", f"/devices/{esme}"))["region"]
    await control.call("PUT", f"/network/regions/{region}", {"outage": True})
    assert (await outcome(user, session, system, receiver, esme))[0] == "E20"


async def test_forced_dlms_error_reaches_the_user_as_a_device_response(
    system: System,
    user: TestUser,
    receiver: ResponseReceiver,
    session: aiohttp.ClientSession,
    control: Control,
) -> None:
    esme = system.esmes()[4]
    await control.call("PUT", f"/devices/{esme}", {"error": {"dlms_result": 1}})
    rid, document = user.service_request("4.1.1", esme)
    assert (await post(session, system.service_s, document)).response_code == "I99"
    item = await receiver.wait_for(str(rid), timeout=30)
    assert item.response.response_code == "I0"  # the device answered, with a failure result
    assert item.response.gbcs_payload is not None
    # and only once: the next command succeeds
    assert (await outcome(user, session, system, receiver, esme))[0] == "I0"


async def test_outage_raises_interrupted_then_restored_alerts(
    system: System, control: Control
) -> None:
    connection = await aio_pika.connect(system.env["DCCSIM_AMQP_URL"])
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        exchange = await channel.get_exchange(EXCHANGE)
        await queue.bind(exchange, GBCS_ALERT)
        esme = system.esmes()[5]
        await control.call("POST", f"/premises/{esme}/outage", {"duration_s": 0.5})
        alerts: list[dict[str, Any]] = []
        async with asyncio.timeout(20):
            async with queue.iterator() as messages:
                async for message in messages:
                    async with message.process():
                        body = Envelope.decode(message.body).body
                        if body.get("device_eui") == esme:
                            alerts.append(body)
                    if len(alerts) == 2:
                        break
    assert [a["alert_code"] for a in alerts] == [0x8F57, 0x8F35]
    restored = decode_message(alerts[1]["frame"])
    assert isinstance(restored, GeneralSigning)  # ECS80 is signed, not MAC'd
    assert restored.cra_flag == CRA_ALERT and restored.message_code == 0x0067
    assert restored.signature_field == "signed"


async def test_gateway_restart_mid_load_answers_every_accepted_command(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    devices = system.esmes()
    sent: list[RequestId] = []
    for i in range(30):
        rid, document = user.service_request("4.1.1", devices[i % len(devices)])
        assert (await post(session, system.service_s, document)).response_code == "I99"
        sent.append(rid)
        if i == 10:
            system.kill("gateway")  # SIGKILL: in-flight commands lose their link
            system.start_service("gateway", wait=False)
    system.wait_ready("gateway")
    codes = []
    for rid in sent:
        codes.append((await receiver.wait_for(str(rid), timeout=60)).response.response_code)
    await asyncio.sleep(1.0)
    assert all(len(receiver.by_request[str(rid)]) == 1 for rid in sent)
    # Each got exactly one answer: I0 when the WAN's resend reached the restarted gateway
    # within the deadline, E20/E21 when the restart (a few seconds) outlasted it.
    assert set(codes) <= {"I0", "E20", "E21"}
    assert codes.count("I0") >= 10


async def test_outage_alerts_reach_the_supplier_as_signed_duis_device_alerts(
    system: System, user: TestUser, receiver: ResponseReceiver, control: Control
) -> None:
    esme = system.esmes()[6]  # a premises no other test uses
    await control.call("POST", f"/premises/{esme}/outage", {"duration_s": 0.5})

    def alerts_for_device() -> list[Any]:
        return [
            r
            for r in receiver.received
            if r.response.alert_code is not None
            and r.response.response_id is not None
            and r.response.response_id.originator == parse_eui(esme)
        ]

    async with asyncio.timeout(30):
        while len(alerts_for_device()) < 2:
            await asyncio.sleep(0.1)
    got = alerts_for_device()
    cert = load_certificate(user.bundle / "dcc-xml-sign.pem")

    def find(serial: int) -> Any:
        return cert if serial == cert.serial_number else None

    assert sorted(str(a.response.alert_code).upper() for a in got) == ["8F35", "8F57"]
    for item in got:
        assert item.response.body_name == "DeviceAlertMessage"
        assert item.response.response_id is not None
        assert item.response.response_id.target == parse_eui(user.eui)
        assert item.response.gbcs_payload is not None
        decode_message(item.response.gbcs_payload)  # the device's own alert frame
        xmldsig.verify(parse_safely(item.raw), find_certificate=find)
