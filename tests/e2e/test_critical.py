"""Critical Service Requests end to end: CV 4 to serviceT answers I0 with the Pre-Command, the
User signs it with its Digital Signing key, CV 5 with the same RequestID to serviceS answers I99,
and the ESME's response comes back asynchronously. Every service a separate process, the real
RabbitMQ, mutual TLS."""

from __future__ import annotations

import datetime as dt

import aiohttp
import pytest
from cryptography import x509

from dccsim.duis import xmldsig
from dccsim.duis.requestid import RequestId, parse_eui
from dccsim.duis.xml import DuisResponse, parse_response, parse_safely
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.pki.files import load_certificate
from dccsim.testuser import ResponseReceiver, TestUser
from tests.broker import rabbitmqctl_available
from tests.system import System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]

SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"


async def post_raw(session: aiohttp.ClientSession, url: str, document: bytes) -> bytes:
    async with session.post(
        url, data=document, headers={"Content-Type": "application/xml"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


def verify_dsp_signature(raw: bytes, user: TestUser) -> None:
    cert: x509.Certificate = load_certificate(user.bundle / "dcc-xml-sign.pem")
    xmldsig.verify(
        parse_safely(raw), find_certificate=lambda s: cert if s == cert.serial_number else None
    )


async def transform(
    system: System,
    session: aiohttp.ClientSession,
    user: TestUser,
    srv: str,
    device: str,
    body_xml: bytes | None = None,
) -> tuple[RequestId, DuisResponse, bytes]:
    """CV 4: the request, its synchronous answer and the Pre-Command."""
    rid, document = user.service_request(srv, device, command_variant=4, body_xml=body_xml)
    raw = await post_raw(session, system.url("serviceT"), document)
    answer = parse_response(raw)
    assert answer.response_code == "I0", raw
    verify_dsp_signature(raw, user)
    assert answer.pre_command is not None
    return rid, answer, answer.pre_command.gbcs_payload


async def test_disable_supply_cv4_then_cv5_reaches_the_esme(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    device = system.esmes()[0]
    rid, answer, pre_command = await transform(system, session, user, "7.2", device)
    assert str(answer.request_id) == str(rid)
    assert answer.service_reference_variant == "7.2"

    # The Pre-Command: General Signing for ECS43, no signature field, the DUIS counter.
    frame = decode_message(pre_command)
    assert isinstance(frame, GeneralSigning)
    assert frame.signature_field == "absent"
    assert frame.message_code == USE_CASES_BY_NAME["ECS43"].message_code
    assert frame.originator_counter == rid.counter
    assert frame.originator_title == parse_eui(user.eui)
    assert frame.recipient_title == parse_eui(device)

    signed = user.sign_pre_command(pre_command)
    raw_ack = await post_raw(
        session, system.service_s, user.signed_pre_command_request("7.2", rid, signed)
    )
    ack = parse_response(raw_ack)
    assert ack.response_code == "I99", raw_ack
    assert str(ack.request_id) == str(rid)

    item = await receiver.wait_for(str(rid), timeout=30)
    assert item.response.response_code == "I0"
    assert item.response.service_reference_variant == "7.2"
    verify_dsp_signature(item.raw, user)
    assert item.response.gbcs_payload is not None
    response = decode_message(item.response.gbcs_payload)
    inner = response.general_signing if isinstance(response, GeneralCiphering) else response
    assert inner.cra_flag == 2
    assert inner.message_code == USE_CASES_BY_NAME["ECS43"].message_code
    assert inner.originator_title == parse_eui(device)
    assert inner.originator_counter == rid.counter


async def test_synchronise_clock_carries_its_body_into_the_pre_command(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    device = system.esmes()[1]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.00Z")
    body = (
        f'<sr:SynchroniseClock xmlns:sr="{SR_NS}"><sr:CurrentDateTime>{now}'
        "</sr:CurrentDateTime><sr:TolerancePeriod>60</sr:TolerancePeriod></sr:SynchroniseClock>"
    ).encode()
    rid, _, pre_command = await transform(system, session, user, "6.11", device, body)
    signed = user.sign_pre_command(pre_command)
    document = user.signed_pre_command_request("6.11", rid, signed)
    assert parse_response(await post_raw(session, system.service_s, document)).response_code == (
        "I99"
    )
    item = await receiver.wait_for(str(rid), timeout=30)
    assert item.response.response_code == "I0"


async def test_a_signed_pre_command_cannot_be_replayed(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    rid, _, pre_command = await transform(system, session, user, "7.3", system.esmes()[0])
    document = user.signed_pre_command_request("7.3", rid, user.sign_pre_command(pre_command))
    assert parse_response(await post_raw(session, system.service_s, document)).response_code == (
        "I99"
    )
    again = user.signed_pre_command_request("7.3", rid, user.sign_pre_command(pre_command))
    assert parse_response(await post_raw(session, system.service_s, again)).response_code == "E1"
    await receiver.wait_for(str(rid), timeout=30)


async def test_a_bad_signature_on_the_pre_command_is_answered_e1_asynchronously(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    rid, _, pre_command = await transform(system, session, user, "7.2", system.esmes()[0])
    signed = bytearray(user.sign_pre_command(pre_command))
    signed[-1] ^= 0x01  # one bit of s
    document = user.signed_pre_command_request("7.2", rid, bytes(signed))
    assert parse_response(await post_raw(session, system.service_s, document)).response_code == (
        "I99"
    )
    item = await receiver.wait_for(str(rid), timeout=30)
    assert item.response.response_code == "E1"
    assert item.response.gbcs_payload is None


async def test_a_signed_pre_command_without_its_cv4_never_reaches_the_device(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    _, _, pre_command = await transform(system, session, user, "7.2", system.esmes()[0])
    fresh = user.next_request_id(system.esmes()[0])  # not the RequestID the Pre-Command answered
    document = user.signed_pre_command_request("7.2", fresh, user.sign_pre_command(pre_command))
    assert parse_response(await post_raw(session, system.service_s, document)).response_code == (
        "I99"
    )
    item = await receiver.wait_for(str(fresh), timeout=30)
    assert item.response.response_code == "E13"


async def test_a_critical_srv_sent_as_cv1_is_e12(
    system: System, user: TestUser, session: aiohttp.ClientSession
) -> None:
    _, document = user.service_request("7.2", system.esmes()[0], command_variant=1)
    assert parse_response(await post_raw(session, system.service_s, document)).response_code == (
        "E12"
    )


async def test_a_non_critical_srv_sent_to_transform_is_e12(
    system: System, user: TestUser, session: aiohttp.ClientSession
) -> None:
    _, document = user.service_request("7.4", system.esmes()[0], command_variant=4)
    raw = await post_raw(session, system.url("serviceT"), document)
    assert parse_response(raw).response_code == "E12"


async def test_read_supply_status_is_carried_as_cv1(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    rid, document = user.service_request("7.4", system.esmes()[1])
    assert parse_response(await post_raw(session, system.service_s, document)).response_code == (
        "I99"
    )
    item = await receiver.wait_for(str(rid), timeout=30)
    assert item.response.response_code == "I0"
