"""Alerts the hosted devices raise by themselves, through the whole pipeline to the User: the
outcome of a future-dated command the ESME held (0x8F66/0x8F67, issue 7), the CHF's Device Log
Changed (0x8F12) after 8.11, and an alert raised through the gateway's control API (tamper,
0x8F3E). Each reaches the Supplier as a signed DUIS
DeviceAlertMessage whose GBCS payload is the device's own alert frame."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.duis import xmldsig
from dccsim.duis.requestid import DCC_EUI, parse_eui
from dccsim.duis.xml import parse_safely
from dccsim.gbcs.alerts import describe_alert
from dccsim.gbcs.crypto import verify_frame_signature
from dccsim.gbcs.dlms import DataNotification, decode_apdu, encode_date_time
from dccsim.gbcs.frames import CRA_ALERT, GeneralCiphering, GeneralSigning, decode_message
from dccsim.gbcs.usecases import ACTION_SUCCESS, USE_CASES_BY_NAME
from dccsim.pki.files import load_certificate
from dccsim.pki.smki import KeyUsage
from dccsim.testuser import ReceivedResponse, ResponseReceiver, TestUser
from tests.broker import rabbitmqctl_available
from tests.e2e.test_more_srvs import (
    SR,
    Exchange,
    chf_of,
    han_device_log_request,
    payment_mode_request,
)
from tests.system import System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]

AHEAD = dt.timedelta(seconds=4)  # how far ahead the future-dated commands are dated


@pytest.fixture
def exchange(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> Exchange:
    return Exchange(system, user, receiver, session)


async def device_alerts(
    exchange: Exchange, device: str, count: int, timeout: float = 60.0
) -> list[ReceivedResponse]:
    """The first ``count`` DUIS Device Alerts from ``device`` the User received (waits)."""

    def received() -> list[ReceivedResponse]:
        return [
            r
            for r in exchange.receiver.received
            if r.response.body_name == "DeviceAlertMessage"
            and r.response.response_id is not None
            and r.response.response_id.originator == parse_eui(device)
        ]

    async with asyncio.timeout(timeout):
        while len(received()) < count:
            await asyncio.sleep(0.1)
    return received()[:count]


def check_delivered_alert(exchange: Exchange, item: ReceivedResponse) -> GeneralSigning:
    """The Device Alert is for the User and signed by the DSP; its GBCS payload is an alert
    frame from the device, signed with the device's DS key. Returns the frame."""
    response = item.response
    assert response.response_id is not None
    assert response.response_id.target == parse_eui(exchange.user.eui)
    dsp = load_certificate(exchange.user.bundle / "dcc-xml-sign.pem")
    xmldsig.verify(
        parse_safely(item.raw), find_certificate=lambda s: dsp if s == dsp.serial_number else None
    )
    assert response.gbcs_payload is not None
    frame = decode_message(response.gbcs_payload)
    assert isinstance(frame, GeneralSigning)
    assert frame.cra_flag == CRA_ALERT
    assert frame.recipient_title == parse_eui(exchange.user.eui)
    device_ds = exchange.keystore().certificate(frame.originator_title, KeyUsage.DS).public_key()
    assert isinstance(device_ds, ec.EllipticCurvePublicKey)
    assert verify_frame_signature(frame, device_ds)
    return frame


async def test_a_future_dated_payment_mode_change_is_reported_when_the_esme_runs_it(
    exchange: Exchange,
) -> None:
    """1.6 to prepayment dated a few seconds ahead: I0 at once with the ESME's response
    (still credit), then, when the ESME's clock reaches it, the two 0x8F66 outcome alerts
    (disablement threshold, payment mode) naming the command's counter, and prepayment read
    back by 6.2.9."""
    device = exchange.system.esmes()[0]
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) + AHEAD
    frame = await exchange.signed_device_frame(
        "1.6", device, payment_mode_request("Prepayment", at), "ECS03"
    )
    command_counter = frame.originator_counter
    alerts = await device_alerts(exchange, device, 2)
    codes = [str(a.response.alert_code).upper() for a in alerts]
    assert codes == ["8F66", "8F66"]
    targets = []
    for item in alerts:
        alert = check_delivered_alert(exchange, item)
        described = describe_alert(alert.encode())
        assert described["future_dated"]["outcome"] == "executed"
        assert described["future_dated"]["message_code"] == (
            f"{USE_CASES_BY_NAME['ECS03'].message_code:#06x}"
        )
        assert described["future_dated"]["originator_counter"] == command_counter
        assert described["date_time"] == encode_date_time(at).hex()  # when it ran
        targets.append(described["future_dated"]["class_id"])
    assert sorted(targets) == [111, 9000]  # the account's payment mode, the threshold
    apdu = await exchange.device_response("6.2.9", None, "ECS26j", device)
    assert apdu.results[0].result == ACTION_SUCCESS
    assert [i.integer for i in apdu.data[0].items] == [2, 2]  # prepayment, active


async def test_a_future_dated_firmware_activation_that_fails_is_reported(
    exchange: Exchange,
) -> None:
    """11.3 dated ahead, naming an image the ESME never received: the ESME accepts it now and,
    when it falls due, reports the failed activation (0x8F67, the CS06 outcome alert)."""
    device = exchange.system.esmes()[1]
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) + AHEAD
    image_hash = hashlib.sha256(b"no such image").hexdigest().upper()
    body = (
        f"<sr:ActivateFirmware {SR}><sr:ExecutionDateTime>{at:%Y-%m-%dT%H:%M:%S.00Z}"
        f"</sr:ExecutionDateTime><sr:FirmwareHash>{image_hash}</sr:FirmwareHash>"
        "</sr:ActivateFirmware>"
    ).encode()
    frame = await exchange.signed_device_frame("11.3", device, body, "CS06")
    (item,) = await device_alerts(exchange, device, 1)
    assert str(item.response.alert_code).upper() == "8F67"
    described = describe_alert(check_delivered_alert(exchange, item).encode())
    assert described["future_dated"]["use_case"] == "CS06"
    assert described["future_dated"]["outcome"] == "failed"
    assert described["future_dated"]["originator_counter"] == frame.originator_counter


async def test_a_tamper_alert_raised_through_the_control_api_reaches_the_supplier(
    exchange: Exchange,
) -> None:
    device = exchange.system.esmes()[2]
    url = json.loads((exchange.system.home / "gateway-control.json").read_text())["url"]
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/devices/{device}/alerts", json={"alert_code": "0x8F3E"}) as r:
            assert r.status == 202, await r.text()
            answer: dict[str, Any] = await r.json()
    assert answer["framed"] is True
    (item,) = await device_alerts(exchange, device, 1)
    assert str(item.response.alert_code).upper() == "8F3E"
    assert item.response.gbcs_payload is not None
    described = describe_alert(item.response.gbcs_payload)
    assert described["alert_code"] == "0x8f3e" and described["maced"] is True


async def test_adding_a_device_to_the_chf_device_log_raises_device_log_changed(
    exchange: Exchange,
) -> None:
    """8.11 Add to the CHF: the I0, and the CHF's CS14 alert (0x8F12, MAC'd for the ACB),
    which reaches the premises' Supplier listing the device now in the log."""
    esme = exchange.system.esmes()[2]
    chf = chf_of(exchange.system, esme)
    response = await exchange.send("8.11", chf, han_device_log_request(esme, "Add"))
    assert response.response_code == "I0"
    (item,) = await device_alerts(exchange, chf, 1)
    assert str(item.response.alert_code).upper() == "8F12"
    assert item.response.response_id is not None
    assert item.response.response_id.target == parse_eui(exchange.user.eui)
    assert item.response.gbcs_payload is not None
    described = describe_alert(item.response.gbcs_payload)
    assert described["message_code"] == "0x0018" and described["maced"] is True
    assert described["recipient"] == DCC_EUI.hex()
    frame = decode_message(item.response.gbcs_payload)
    assert isinstance(frame, GeneralCiphering)
    notification = decode_apdu(frame.general_signing.payload)
    assert isinstance(notification, DataNotification)
    log = notification.body.items[2]
    assert [entry.items[0].octets for entry in log.items[2].items] == [parse_eui(esme)]
