"""SRV 4.1.1 end to end: every service a separate process, the real RabbitMQ, mutual TLS, a test
User System signing its request and receiving the async Response at its own HTTPS receiver."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aio_pika
import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.bus.envelope import Envelope
from dccsim.bus.topology import EVENTS_EXCHANGE
from dccsim.duis import xmldsig
from dccsim.duis.requestid import RequestId, parse_eui
from dccsim.duis.xml import parse_response, parse_safely
from dccsim.gbcs.frames import GeneralCiphering, decode_message
from dccsim.gbcs.usecases import read_ecs17b_response
from dccsim.pki.files import load_certificate, load_private_key
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage
from dccsim.testuser import ResponseReceiver, TestUser, post
from tests.broker import rabbitmqctl_available
from tests.system import System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]


def dsp_certificate(user: TestUser) -> x509.Certificate:
    return load_certificate(user.bundle / "dcc-xml-sign.pem")


def verify_dsp_signature(raw: bytes, user: TestUser) -> None:
    cert = dsp_certificate(user)
    signer = xmldsig.verify(
        parse_safely(raw), find_certificate=lambda s: cert if s == cert.serial_number else None
    )
    assert signer.serial_number == cert.serial_number


async def send_raw(session: aiohttp.ClientSession, url: str, document: bytes) -> bytes:
    async with session.post(
        url, data=document, headers={"Content-Type": "application/xml"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


async def test_read_import_registers_end_to_end(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    device = system.esmes()[0]
    delivered_before = system.metric("user_gateway", "dccsim_delivery_delivered_total")
    rid, document = user.service_request("4.1.1", device)

    raw_ack = await send_raw(session, system.service_s, document)
    ack = parse_response(raw_ack)
    assert ack.response_code == "I99"
    assert str(ack.request_id) == str(rid)
    verify_dsp_signature(raw_ack, user)

    item = await receiver.wait_for(str(rid), timeout=30)
    response = item.response
    assert response.response_code == "I0"
    assert str(response.response_id) == rid.response_id()
    assert response.service_reference_variant == "4.1.1"
    verify_dsp_signature(item.raw, user)

    # The GBCS payload is the ESME's real ECS17b response: decode, check its MAC and content.
    assert response.gbcs_payload is not None
    frame = decode_message(response.gbcs_payload)
    assert isinstance(frame, GeneralCiphering)
    gs = frame.general_signing
    assert gs.cra_flag == 2 and gs.message_code == 0x0027
    assert gs.originator_title == parse_eui(device)
    assert gs.recipient_title == parse_eui(user.eui)
    assert gs.originator_counter == rid.counter
    supplier_ka = load_private_key(user.bundle / "ka.key")
    assert isinstance(supplier_ka, ec.EllipticCurvePrivateKey)
    device_ka = (
        KeyStore(system.home / "pki" / "keystore")
        .certificate(parse_eui(device), KeyUsage.KA)
        .public_key()
    )
    assert isinstance(device_ka, ec.EllipticCurvePublicKey)
    registers = read_ecs17b_response(
        response.gbcs_payload, recipient_ka_private=supplier_ka, device_ka_public=device_ka
    )
    assert registers.active_import > 0

    # ... and the services counted it.
    assert (
        system.metric(
            "user_gateway", "dccsim_duis_requests_total", {"srv": "4.1.1", "response_code": "I99"}
        )
        >= 1
    )
    assert (
        system.metric("transform", "dccsim_transform_commands_total", {"use_case": "ECS17b"}) >= 1
    )
    assert system.metric("wan", "dccsim_wan_commands_total", {"outcome": "response"}) >= 1
    await asyncio.sleep(0.3)
    assert system.metric("user_gateway", "dccsim_delivery_delivered_total") > delivered_before


async def test_registers_grow_between_reads(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    device = system.esmes()[1]
    values = []
    supplier_ka = load_private_key(user.bundle / "ka.key")
    assert isinstance(supplier_ka, ec.EllipticCurvePrivateKey)
    device_ka = (
        KeyStore(system.home / "pki" / "keystore")
        .certificate(parse_eui(device), KeyUsage.KA)
        .public_key()
    )
    assert isinstance(device_ka, ec.EllipticCurvePublicKey)
    for _ in range(2):
        rid, document = user.service_request("4.1.1", device)
        assert (await post(session, system.service_s, document)).response_code == "I99"
        item = await receiver.wait_for(str(rid))
        assert item.response.gbcs_payload is not None
        values.append(
            read_ecs17b_response(
                item.response.gbcs_payload,
                recipient_ka_private=supplier_ka,
                device_ka_public=device_ka,
            ).active_import
        )
        await asyncio.sleep(1.5)
    assert values[1] >= values[0]


async def test_response_arrives_once_after_receiver_outage(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    receiver.fail_with = 503  # the User's endpoint is down
    failed_before = system.metric(
        "user_gateway", "dccsim_delivery_attempts_total", {"outcome": "failed"}
    )
    rid, document = user.service_request("4.1.1", system.esmes()[0])
    assert (await post(session, system.service_s, document)).response_code == "I99"
    async with asyncio.timeout(30):
        while (
            system.metric("user_gateway", "dccsim_delivery_attempts_total", {"outcome": "failed"})
            < failed_before + 3
        ):
            await asyncio.sleep(0.1)
    assert str(rid) not in receiver.by_request
    receiver.fail_with = None  # back up
    await receiver.wait_for(str(rid), timeout=30)
    await asyncio.sleep(1.5)  # a duplicate would have arrived by now
    assert len(receiver.by_request[str(rid)]) == 1


async def test_nothing_lost_when_transform_is_killed_mid_flight(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    devices = system.esmes()
    sent: list[RequestId] = []
    for i in range(30):
        rid, document = user.service_request("4.1.1", devices[i % len(devices)])
        assert (await post(session, system.service_s, document)).response_code == "I99"
        sent.append(rid)
        if i == 10:
            system.kill("transform")  # SIGKILL: no orderly shutdown, unacked work stays queued
    system.start_service("transform")
    for rid in sent:
        await receiver.wait_for(str(rid), timeout=60)
    await asyncio.sleep(1.0)
    assert all(len(receiver.by_request[str(rid)]) == 1 for rid in sent)


async def test_delivery_survives_user_gateway_restart(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    receiver.fail_with = 503
    rid, document = user.service_request("4.1.1", system.esmes()[0])
    assert (await post(session, system.service_s, document)).response_code == "I99"
    await asyncio.sleep(2.0)  # the Response now sits in the outbox, undeliverable
    system.kill("user_gateway")
    receiver.fail_with = None
    system.start_service("user_gateway")
    await receiver.wait_for(str(rid), timeout=30)


# --- bad input gets its DUIS code, never a stack trace --------------------------------------


async def answer_code(session: aiohttp.ClientSession, url: str, document: bytes) -> str:
    return (await post(session, url, document)).response_code


async def test_replayed_counter_is_refused(
    system: System, user: TestUser, session: aiohttp.ClientSession
) -> None:
    rid, document = user.service_request("4.1.1", system.esmes()[0])
    assert await answer_code(session, system.service_s, document) == "I99"
    _, again = user.service_request("4.1.1", system.esmes()[0], request_id=rid)
    assert await answer_code(session, system.service_s, again) == "E1"


async def test_unknown_device_is_e19(
    system: System, user: TestUser, session: aiohttp.ClientSession
) -> None:
    _, document = user.service_request("4.1.1", "00-DC-C5-FF-FF-FF-FF-02")
    assert await answer_code(session, system.service_s, document) == "E19"


async def test_command_variant_for_another_url_is_e13(
    system: System, user: TestUser, session: aiohttp.ClientSession
) -> None:
    _, document = user.service_request("4.1.1", system.esmes()[0])
    assert await answer_code(session, system.url("serviceT"), document) == "E13"


async def test_unsigned_request_is_refused(
    system: System, user: TestUser, session: aiohttp.ClientSession
) -> None:
    _, document = user.service_request("4.1.1", system.esmes()[0])
    stripped = document.split(b"<ds:Signature", 1)[0] + b"</sr:Request>"
    assert await answer_code(session, system.service_s, stripped) == "E1"


async def test_xxe_is_refused(
    system: System, session: aiohttp.ClientSession, reference_dir: Path
) -> None:
    xxe = (reference_dir / "duis" / "samples" / "duis-xxe.xml").read_bytes()
    assert await answer_code(session, system.service_s, xxe) == "E13"


async def test_garbage_is_a_duis_error_not_a_crash(
    system: System, session: aiohttp.ClientSession
) -> None:
    assert await answer_code(session, system.service_s, b"<not-xml") == "E13"


async def test_client_without_dccki_certificate_is_refused(system: System, user: TestUser) -> None:
    ctx = ssl.create_default_context(cafile=str(user.bundle / "dccki-ca.pem"))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        with pytest.raises(aiohttp.ClientError):
            async with s.post(
                system.service_s, data=b"<x/>", headers={"Content-Type": "application/xml"}
            ) as resp:
                await resp.read()


async def test_every_stage_of_the_timeline_is_published(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    connection = await aio_pika.connect(system.env["DCCSIM_AMQP_URL"])
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(await channel.get_exchange(EVENTS_EXCHANGE), "timeline.*")
        rid, document = user.service_request("4.1.1", system.esmes()[0])
        assert (await post(session, system.service_s, document)).response_code == "I99"
        await receiver.wait_for(str(rid))
        stages: dict[str, dict[str, object]] = {}
        async with asyncio.timeout(15):
            async with queue.iterator() as messages:
                async for message in messages:
                    async with message.process():
                        env = Envelope.decode(message.body)
                        assert env.kind == "request.timeline.batch"
                        for event in env.body["events"]:
                            if event["rid"] == str(rid):
                                stages[str(event["stage"])] = event
                    if len(stages) == 5:
                        break
    assert set(stages) == {
        "received",
        "acknowledged",
        "command_sent",
        "device_answered",
        "response_delivered",
    }
    assert stages["acknowledged"]["code"] == "I99"
    assert stages["device_answered"]["code"] == "I0"
    assert float(stages["received"]["at"]) <= float(stages["response_delivered"]["at"])  # type: ignore[arg-type]
