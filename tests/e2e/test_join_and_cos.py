"""8.7.1 / 8.7.2 Join Service end to end: the User asks a seeded ESME to join a HAN device
that the test pre-notifies (12.2): the demo estate has no PPMID or IHD, and the inventory does
not tie a pre-notified device to a premises. Transform learns the other device's type from the
inventory and picks the use case (CS03A1 for a PPMID, critical: CV 4 then CV 5; CS03B for an
IHD, CV 1); the emulated ESME joins it and answers (signed, or MAC'd), and the async I0
carries that answer. Every service a separate process, the real RabbitMQ, mutual TLS.

6.23 is not here: the gateway's hosted meters hold no Transitional CoS cell yet (see
tests/unit/test_cos_credentials.py)."""

from __future__ import annotations

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.duis.requestid import DCC_EUI, format_eui, parse_eui
from dccsim.duis.xml import DuisResponse, parse_response
from dccsim.gbcs import der
from dccsim.gbcs.crypto import verify_frame_signature, verify_mac
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.pki.files import load_private_key
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage
from dccsim.testuser import ResponseReceiver, TestUser, post
from emulators.han import JOIN_SUCCESS
from tests.broker import rabbitmqctl_available
from tests.system import System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]

SR = 'xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"'
# pre-notified by the tests: the demo estate has neither a PPMID nor an IHD
PPMID = "00-DC-C5-AA-00-00-00-71"
IHD = "00-DC-C5-AA-00-00-00-72"


def _join_body(srv: str, other: str) -> bytes:
    element = "JoinServiceCritical" if srv == "8.7.1" else "JoinServiceNonCritical"
    return (
        f"<sr:{element} {SR}><sr:OtherDeviceID>{other}</sr:OtherDeviceID></sr:{element}>"
    ).encode()


def _keystore(system: System) -> KeyStore:
    return KeyStore(system.home / "pki" / "keystore")


def _device_key(system: System, eui: str, usage: KeyUsage) -> ec.EllipticCurvePublicKey:
    key = _keystore(system).certificate(parse_eui(eui), usage).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


async def _pre_notify(
    system: System, session: aiohttp.ClientSession, user: TestUser, eui: str, kind: str
) -> None:
    """12.2 (CV 8): the device enters the inventory as Pending."""
    body = (
        f"<sr:DevicePrenotification {SR}><sr:DeviceID>{eui}</sr:DeviceID>"
        "<sr:DeviceManufacturer>AB01</sr:DeviceManufacturer><sr:DeviceModel>010A030B"
        f"</sr:DeviceModel><sr:DeviceType>{kind}</sr:DeviceType></sr:DevicePrenotification>"
    ).encode()
    _, document = user.service_request(
        "12.2", format_eui(DCC_EUI), command_variant=8, body_xml=body
    )
    assert (await post(session, system.url("serviceD"), document)).response_code == "I0"


async def _send_critical(
    system: System,
    session: aiohttp.ClientSession,
    user: TestUser,
    receiver: ResponseReceiver,
    srv: str,
    device: str,
    body: bytes,
) -> DuisResponse:
    """CV 4 to serviceT (I0, the Pre-Command), the User signs it, CV 5 to serviceS (I99);
    the async Response."""
    rid, document = user.service_request(srv, device, command_variant=4, body_xml=body)
    async with session.post(
        system.url("serviceT"), data=document, headers={"Content-Type": "application/xml"}
    ) as resp:
        answer = parse_response(await resp.read())
    assert answer.response_code == "I0" and answer.pre_command is not None
    signed = user.sign_pre_command(answer.pre_command.gbcs_payload)
    ack = await post(session, system.service_s, user.signed_pre_command_request(srv, rid, signed))
    assert ack.response_code == "I99"
    response = (await receiver.wait_for(str(rid), timeout=30)).response
    assert str(response.response_id) == rid.response_id()
    return response


def _result(payload: bytes) -> int:
    value = der.decode_with(der.integer("result"), payload)
    assert isinstance(value, int)
    return value


async def test_join_service_critical_joins_a_pre_notified_ppmid_to_the_esme(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    esme = system.esmes()[0]
    await _pre_notify(system, session, user, PPMID, "PPMID")
    response = await _send_critical(
        system, session, user, receiver, "8.7.1", esme, _join_body("8.7.1", PPMID)
    )
    assert response.response_code == "I0" and response.gbcs_payload is not None
    frame = decode_message(response.gbcs_payload)
    assert isinstance(frame, GeneralSigning)  # CS03A1 is answered signed, not MAC'd
    assert frame.message_code == USE_CASES_BY_NAME["CS03A1"].message_code
    assert frame.originator_title == parse_eui(esme)
    assert frame.recipient_title == parse_eui(user.eui)
    assert verify_frame_signature(frame, _device_key(system, esme, KeyUsage.DS))
    assert _result(frame.payload) == JOIN_SUCCESS


async def test_join_service_non_critical_joins_the_premises_ihd_to_the_esme(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> None:
    esme = system.esmes()[1]
    await _pre_notify(system, session, user, IHD, "IHD")
    rid, document = user.service_request("8.7.2", esme, body_xml=_join_body("8.7.2", IHD))
    assert (await post(session, system.service_s, document)).response_code == "I99"
    response = (await receiver.wait_for(str(rid), timeout=30)).response
    assert response.response_code == "I0" and response.gbcs_payload is not None
    message = decode_message(response.gbcs_payload)
    assert isinstance(message, GeneralCiphering)  # CS03B: MAC'd for the User
    frame = message.general_signing
    assert frame.message_code == USE_CASES_BY_NAME["CS03B"].message_code
    assert frame.originator_counter == rid.counter
    user_ka = load_private_key(user.bundle / "ka.key")
    assert isinstance(user_ka, ec.EllipticCurvePrivateKey)
    assert verify_mac(
        message, private_key=user_ka, peer_public_key=_device_key(system, esme, KeyUsage.KA)
    )
    assert _result(frame.payload) == JOIN_SUCCESS


async def test_join_of_a_device_the_inventory_lacks_is_refused_at_cv4(
    system: System, user: TestUser, session: aiohttp.ClientSession
) -> None:
    _, document = user.service_request(
        "8.7.1",
        system.esmes()[0],
        command_variant=4,
        body_xml=_join_body("8.7.1", "00-DC-C5-AA-00-00-00-7F"),
    )
    async with session.post(
        system.url("serviceT"), data=document, headers={"Content-Type": "application/xml"}
    ) as resp:
        answer = parse_response(await resp.read())
    assert answer.response_code == "E19" and answer.pre_command is None
