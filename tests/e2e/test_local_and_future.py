"""Local delivery (CV 2, 3, 6, 7) and DSP-held future-dated requests, end to end: every service
a separate process, the real RabbitMQ, mutual TLS; every answer checked against the DUIS 5.4 XSD.

- CV 2 to serviceD: I0 with ``LocalCommand``, the GBCS command the User delivers itself (the
  DUIS counter as Originator Counter, the ACB's MAC); CV 3 to serviceS: I99 with the same, and
  the command also goes over the SM WAN (async I0).
- Critical: CV 4 Pre-Command, then CV 6 with the Signed Pre-Command: I0 with the command; CV 7:
  I99 with it, and the async I0 from the device.
- E17 for an SRV that is not available for local delivery.
- A future-dated 4.1.1 held by the DSP: I99 at once, the async Response only after its
  ExecutionDateTime; a restart of the User Gateway and transform in between loses nothing and
  doubles nothing.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from dccsim import estate
from dccsim.duis.requestid import DCC_EUI, RequestId, parse_eui
from dccsim.duis.xml import DuisResponse, load_schema, parse_response, parse_safely
from dccsim.gbcs.crypto import verify_frame_signature, verify_mac
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage
from dccsim.testuser import ResponseReceiver, TestUser
from tests.broker import rabbitmqctl_available
from tests.system import System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]

SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
SR = f"{{{SR_NS}}}"


@pytest.fixture(scope="module")
def schema(reference_dir: Path) -> etree.XMLSchema:
    return load_schema(reference_dir / "duis" / "xsd")


async def post(
    session: aiohttp.ClientSession, url: str, document: bytes, schema: etree.XMLSchema
) -> tuple[DuisResponse, bytes]:
    async with session.post(
        url, data=document, headers={"Content-Type": "application/xml"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        raw = await resp.read()
    assert schema.validate(parse_safely(raw)), schema.error_log
    return parse_response(raw), raw


def local_command_of(raw: bytes) -> bytes:
    """The LocalCommand's GBCSPayload of a synchronous answer."""
    element = parse_safely(raw).find(
        f"{SR}Body/{SR}ResponseMessage/{SR}LocalCommand/{SR}GBCSPayload"
    )
    assert element is not None, raw
    return base64.b64decode("".join((element.text or "").split()))


def check_command(
    system: System, frame: bytes, *, use_case: str, rid: RequestId, device: str
) -> GeneralCiphering:
    """The local command is the WAN command: General Ciphering for the use case, the DUIS
    counter, from the User to the device, with the ACB's MAC."""
    message = decode_message(frame)
    assert isinstance(message, GeneralCiphering)
    gs = message.general_signing
    assert gs.cra_flag == 1
    assert gs.message_code == USE_CASES_BY_NAME[use_case].message_code
    assert gs.originator_counter == rid.counter
    assert gs.originator_title == rid.originator
    assert gs.recipient_title == parse_eui(device)
    keystore = KeyStore(system.home / "pki" / "keystore")
    acb_ka = keystore.private_key(DCC_EUI, KeyUsage.KA)
    device_ka = keystore.certificate(parse_eui(device), KeyUsage.KA).public_key()
    assert isinstance(acb_ka, ec.EllipticCurvePrivateKey)
    assert isinstance(device_ka, ec.EllipticCurvePublicKey)
    assert verify_mac(message, private_key=acb_ka, peer_public_key=device_ka)
    return message


def chf(system: System) -> str:
    return next(
        d.eui for p in estate.load(system.home) for d in p.devices if d.device_type.value == "CHF"
    )


def future_4_1_1(when: dt.datetime) -> bytes:
    stamp = when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-4] + "Z"
    return (
        f'<sr:ReadInstantaneousImportRegisters xmlns:sr="{SR_NS}"><sr:ExecutionDateTime>'
        f"{stamp}</sr:ExecutionDateTime></sr:ReadInstantaneousImportRegisters>"
    ).encode()


async def test_cv2_answers_the_command_for_local_delivery(
    system: System, user: TestUser, session: aiohttp.ClientSession, schema: etree.XMLSchema
) -> None:
    device = system.esmes()[0]
    rid, document = user.service_request("4.1.1", device, command_variant=2)
    answer, raw = await post(session, system.url("serviceD"), document, schema)
    assert answer.response_code == "I0", raw
    assert str(answer.request_id) == str(rid)
    assert answer.service_reference_variant == "4.1.1"
    check_command(system, local_command_of(raw), use_case="ECS17b", rid=rid, device=device)


async def test_cv3_answers_the_local_command_and_sends_it_over_the_wan(
    system: System,
    user: TestUser,
    receiver: ResponseReceiver,
    session: aiohttp.ClientSession,
    schema: etree.XMLSchema,
) -> None:
    device = system.esmes()[0]
    rid, document = user.service_request("7.4", device, command_variant=3)
    answer, raw = await post(session, system.service_s, document, schema)
    assert answer.response_code == "I99", raw
    check_command(system, local_command_of(raw), use_case="ECS45", rid=rid, device=device)

    item = await receiver.wait_for(str(rid), timeout=60)
    assert schema.validate(parse_safely(item.raw))
    assert item.response.response_code == "I0"
    assert item.response.gbcs_payload is not None
    response = decode_message(item.response.gbcs_payload)
    inner = response.general_signing if isinstance(response, GeneralCiphering) else response
    assert inner.cra_flag == 2
    assert inner.message_code == USE_CASES_BY_NAME["ECS45"].message_code
    assert inner.originator_counter == rid.counter


async def test_cv6_after_cv4_answers_the_signed_critical_command(
    system: System, user: TestUser, session: aiohttp.ClientSession, schema: etree.XMLSchema
) -> None:
    device = system.esmes()[1]
    rid, document = user.service_request("7.2", device, command_variant=4)
    answer, raw = await post(session, system.url("serviceT"), document, schema)
    assert answer.response_code == "I0" and answer.pre_command is not None, raw
    signed = user.sign_pre_command(answer.pre_command.gbcs_payload)

    cv6 = user.signed_pre_command_request("7.2", rid, signed, command_variant=6)
    local, raw = await post(session, system.url("serviceD"), cv6, schema)
    assert local.response_code == "I0", raw
    assert str(local.request_id) == str(rid)
    message = check_command(system, local_command_of(raw), use_case="ECS43", rid=rid, device=device)
    # ... the User's own signature inside: the Signed Pre-Command, wrapped by the ACB.
    assert message.general_signing.signature_field == "signed"
    ds = KeyStore(system.home / "pki" / "keystore").certificate(rid.originator, KeyUsage.DS)
    public = ds.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert verify_frame_signature(message.general_signing, public)
    assert isinstance(decode_message(answer.pre_command.gbcs_payload), GeneralSigning)


async def test_cv7_after_cv4_answers_the_local_command_and_sends_it_over_the_wan(
    system: System,
    user: TestUser,
    receiver: ResponseReceiver,
    session: aiohttp.ClientSession,
    schema: etree.XMLSchema,
) -> None:
    device = system.esmes()[0]
    rid, document = user.service_request("7.3", device, command_variant=4)
    answer, raw = await post(session, system.url("serviceT"), document, schema)
    assert answer.response_code == "I0" and answer.pre_command is not None, raw
    signed = user.sign_pre_command(answer.pre_command.gbcs_payload)
    cv7 = user.signed_pre_command_request("7.3", rid, signed, command_variant=7)
    ack, raw = await post(session, system.service_s, cv7, schema)
    assert ack.response_code == "I99", raw
    check_command(system, local_command_of(raw), use_case="ECS44", rid=rid, device=device)

    item = await receiver.wait_for(str(rid), timeout=60)
    assert schema.validate(parse_safely(item.raw))
    assert item.response.response_code == "I0"
    assert item.response.gbcs_payload is not None


async def test_cv6_with_a_bad_signature_is_refused_synchronously(
    system: System, user: TestUser, session: aiohttp.ClientSession, schema: etree.XMLSchema
) -> None:
    device = system.esmes()[1]
    rid, document = user.service_request("7.3", device, command_variant=4)
    answer, _ = await post(session, system.url("serviceT"), document, schema)
    assert answer.pre_command is not None
    signed = bytearray(user.sign_pre_command(answer.pre_command.gbcs_payload))
    signed[-1] ^= 0x01
    cv6 = user.signed_pre_command_request("7.3", rid, bytes(signed), command_variant=6)
    refused, raw = await post(session, system.url("serviceD"), cv6, schema)
    assert refused.response_code == "E1", raw


async def test_local_delivery_of_an_srv_that_does_not_allow_it_is_e17(
    system: System, user: TestUser, session: aiohttp.ClientSession, schema: etree.XMLSchema
) -> None:
    body = (
        f'<sr:UpdateHANDeviceLog xmlns:sr="{SR_NS}"><sr:DeviceID>{system.esmes()[0]}'
        "</sr:DeviceID><sr:RequestType>Remove</sr:RequestType></sr:UpdateHANDeviceLog>"
    ).encode()
    _, document = user.service_request("8.11", chf(system), command_variant=2, body_xml=body)
    answer, raw = await post(session, system.url("serviceD"), document, schema)
    assert answer.response_code == "E17", raw


async def test_a_future_dated_read_is_executed_at_its_time_and_not_before(
    system: System,
    user: TestUser,
    receiver: ResponseReceiver,
    session: aiohttp.ClientSession,
    schema: etree.XMLSchema,
) -> None:
    device = system.esmes()[2]
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6)
    rid, document = user.service_request("4.1.1", device, body_xml=future_4_1_1(when))
    answer, raw = await post(session, system.service_s, document, schema)
    assert answer.response_code == "I99", raw
    if dt.datetime.now(dt.UTC) < when - dt.timedelta(seconds=1):
        await asyncio.sleep(0.5)
        assert str(rid) not in receiver.by_request  # held, not sent on demand

    item = await receiver.wait_for(str(rid), timeout=90)
    assert schema.validate(parse_safely(item.raw))
    assert item.response.response_code == "I0"
    assert item.response.gbcs_payload is not None
    assert item.response.response_datetime is not None
    answered = dt.datetime.fromisoformat(item.response.response_datetime.replace("Z", "+00:00"))
    assert answered >= when  # executed at its time, not before
    assert system.metric("user_gateway", "dccsim_future_dated_sent_total") >= 1


async def test_a_past_execution_time_is_refused(
    system: System, user: TestUser, session: aiohttp.ClientSession, schema: etree.XMLSchema
) -> None:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    _, document = user.service_request("4.1.1", system.esmes()[2], body_xml=future_4_1_1(when))
    answer, raw = await post(session, system.service_s, document, schema)
    assert answer.response_code == "E13", raw


async def test_a_restart_between_acceptance_and_execution_loses_nothing(
    system: System,
    user: TestUser,
    receiver: ResponseReceiver,
    session: aiohttp.ClientSession,
    schema: etree.XMLSchema,
) -> None:
    device = system.esmes()[2]
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    rid, document = user.service_request("4.1.1", device, body_xml=future_4_1_1(when))
    answer, raw = await post(session, system.service_s, document, schema)
    assert answer.response_code == "I99", raw

    # Both the holder and the command builder go down before the time, and come back.
    system.kill("user_gateway")
    system.kill("transform")
    await asyncio.sleep(max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds()))
    await asyncio.to_thread(system.start_service, "transform")
    await asyncio.to_thread(system.start_service, "user_gateway")

    item = await receiver.wait_for(str(rid), timeout=120)
    assert schema.validate(parse_safely(item.raw))
    assert item.response.response_code == "I0"
    # nothing doubled: no second Response for it turns up
    await asyncio.sleep(3)
    assert len(receiver.by_request[str(rid)]) == 1
