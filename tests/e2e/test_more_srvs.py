"""SRVs 11.2, 3.1, 2.2, 3.3, 3.5, 6.12, 6.13, 4.6.1, 4.8.1, 4.11.1, 4.16, 4.17, 6.2.9 and 6.20.1 to
an ESME (and 8.11 to a CHF) end to end: a signed DUIS request to serviceS, I99, then the async
I0 whose GBCS payload is the emulated ESME's response to the right use case. Critical SRVs
(1.1.1, 1.6, 11.3) go CV 4 to serviceT for the Pre-Command, then CV 5 with the User's Signed
Pre-Command, as a User System does."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from dccsim import estate
from dccsim.duis.requestid import DCC_EUI, parse_eui
from dccsim.duis.xml import DuisResponse, parse_response
from dccsim.gbcs.commands import REPLACEMENT_OUTCOME
from dccsim.gbcs.crypto import verify_frame_signature, verify_mac
from dccsim.gbcs.der import decode_asn1, decode_with
from dccsim.gbcs.dlms import AccessResponse, CompactArray, Data, decode_apdu
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message
from dccsim.gbcs.usecases import (
    ACTION_HARDWARE_FAULT,
    ACTION_SUCCESS,
    USE_CASES_BY_NAME,
    read_protected_content,
)
from dccsim.pki.devpki import PkiLayout
from dccsim.pki.files import load_private_key
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import CertificateAuthority, KeyUsage, Role, issue_organisation_certificate
from dccsim.testuser import ResponseReceiver, TestUser, post
from emulators.esme import (
    ACTIVATION_FAILURE,
    DEFAULT_FIRMWARE_VERSION,
    STATUS_SUCCESS,
    tariff_from_data,
)
from tests.broker import rabbitmqctl_available
from tests.system import System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]

SR = 'xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"'


@dataclass
class Exchange:
    """One request's way through dccsim, as the User sees it."""

    system: System
    user: TestUser
    receiver: ResponseReceiver
    session: aiohttp.ClientSession

    async def send(self, srv: str, device: str, body_xml: bytes | None = None) -> DuisResponse:
        """Send ``srv`` to ``device``; check the I99, return the async Response."""
        rid, document = self.user.service_request(srv, device, body_xml=body_xml)
        ack = await post(self.session, self.system.service_s, document)
        assert ack.response_code == "I99"
        item = await self.receiver.wait_for(str(rid), timeout=30)
        response = item.response
        assert str(response.response_id) == rid.response_id()
        assert response.service_reference_variant == srv
        return response

    async def send_critical(
        self, srv: str, device: str, body_xml: bytes | None = None
    ) -> DuisResponse:
        """CV 4 to serviceT (I0 with the Pre-Command), the User signs it, CV 5 with the same
        RequestID to serviceS (I99); return the async Response."""
        rid, document = self.user.service_request(srv, device, command_variant=4, body_xml=body_xml)
        async with self.session.post(
            self.system.url("serviceT"), data=document, headers={"Content-Type": "application/xml"}
        ) as resp:
            answer = parse_response(await resp.read())
        assert answer.response_code == "I0" and answer.pre_command is not None
        signed = self.user.sign_pre_command(answer.pre_command.gbcs_payload)
        ack = await post(
            self.session,
            self.system.service_s,
            self.user.signed_pre_command_request(srv, rid, signed),
        )
        assert ack.response_code == "I99"
        response = (await self.receiver.wait_for(str(rid), timeout=30)).response
        assert str(response.response_id) == rid.response_id()
        assert response.service_reference_variant == srv
        return response

    def keystore(self) -> KeyStore:
        return KeyStore(self.system.home / "pki" / "keystore")

    async def signed_device_frame(
        self, srv: str, device: str, body_xml: bytes | None, use_case: str
    ) -> GeneralSigning:
        """A critical SRV's device response to ``use_case``: General Signing signed by the
        device's DS key (checked), to the User, with the User's counter."""
        response = await self.send_critical(srv, device, body_xml)
        assert response.response_code == "I0" and response.gbcs_payload is not None
        frame = decode_message(response.gbcs_payload)
        assert isinstance(frame, GeneralSigning)
        assert frame.cra_flag == 2
        assert frame.message_code == USE_CASES_BY_NAME[use_case].message_code
        assert frame.originator_title == parse_eui(device)
        assert frame.recipient_title == parse_eui(self.user.eui)
        device_ds = self.keystore().certificate(parse_eui(device), KeyUsage.DS).public_key()
        assert isinstance(device_ds, ec.EllipticCurvePublicKey)
        assert verify_frame_signature(frame, device_ds)
        return frame

    async def signed_device_response(
        self, srv: str, device: str, body_xml: bytes | None, use_case: str
    ) -> AccessResponse:
        """:meth:`signed_device_frame`'s DLMS Access Response."""
        frame = await self.signed_device_frame(srv, device, body_xml, use_case)
        apdu = decode_apdu(frame.payload)
        assert isinstance(apdu, AccessResponse)
        return apdu

    async def device_response(
        self, srv: str, body_xml: bytes | None, use_case: str, device: str | None = None
    ) -> AccessResponse:
        """The ESME's DLMS Access Response to ``use_case``, its MAC checked for the User."""
        device = device or self.system.esmes()[0]
        response = await self.send(srv, device, body_xml)
        assert response.response_code == "I0"
        assert response.gbcs_payload is not None
        frame = decode_message(response.gbcs_payload)
        assert isinstance(frame, GeneralCiphering)
        gs = frame.general_signing
        assert gs.cra_flag == 2
        assert gs.message_code == USE_CASES_BY_NAME[use_case].message_code
        assert gs.originator_title == parse_eui(device)
        assert gs.recipient_title == parse_eui(self.user.eui)
        supplier_ka = load_private_key(self.user.bundle / "ka.key")
        assert isinstance(supplier_ka, ec.EllipticCurvePrivateKey)
        device_ka = (
            KeyStore(self.system.home / "pki" / "keystore")
            .certificate(parse_eui(device), KeyUsage.KA)
            .public_key()
        )
        assert isinstance(device_ka, ec.EllipticCurvePublicKey)
        assert verify_mac(frame, private_key=supplier_ka, peer_public_key=device_ka)
        apdu = decode_apdu(gs.payload)
        assert isinstance(apdu, AccessResponse)
        return apdu


@pytest.fixture
def exchange(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> Exchange:
    return Exchange(system, user, receiver, session)


def log_request(log: str) -> bytes:
    return (
        f"<sr:ReadEventOrSecurityLog {SR}><sr:ReadLogPeriod>"
        "<sr:StartDateTime>2014-12-31T00:00:00.00Z</sr:StartDateTime>"
        "<sr:EndDateTime>2099-01-01T00:00:00.00Z</sr:EndDateTime>"
        f"</sr:ReadLogPeriod><sr:LogToRead>{log}</sr:LogToRead></sr:ReadEventOrSecurityLog>"
    ).encode()


async def test_read_firmware_version_returns_the_esme_firmware(exchange: Exchange) -> None:
    apdu = await exchange.device_response("11.2", None, "ECS52")
    assert apdu.results[0].result == ACTION_SUCCESS
    assert apdu.data[0].octets == DEFAULT_FIRMWARE_VERSION


async def test_display_message_is_acknowledged_by_the_esme(exchange: Exchange) -> None:
    body = f"<sr:DisplayMessage {SR}><sr:SupplierMessage>Reset</sr:SupplierMessage>"
    body += "</sr:DisplayMessage>"
    apdu = await exchange.device_response("3.1", body.encode(), "ECS10")
    assert [r.result for r in apdu.results] == [ACTION_SUCCESS]


async def test_top_up_is_accepted_by_the_esme(exchange: Exchange) -> None:
    body = f"<sr:TopUpDevice {SR}><sr:UTRN>73946144332040217315</sr:UTRN></sr:TopUpDevice>"
    apdu = await exchange.device_response("2.2", body.encode(), "CS01a")
    assert [r.result for r in apdu.results] == [ACTION_SUCCESS]


@pytest.mark.parametrize(
    ("log", "use_case"), [("Event", "ECS35a"), ("Security", "ECS35b"), ("PowerEvent", "ECS35e")]
)
async def test_read_log_reads_the_log_asked_for(
    exchange: Exchange, log: str, use_case: str
) -> None:
    apdu = await exchange.device_response("6.13", log_request(log), use_case)
    assert apdu.results[0].result == ACTION_SUCCESS
    assert isinstance(apdu.data[0].value, CompactArray)  # the entries (none in a fresh estate)


async def test_read_log_of_a_log_the_esme_lacks_is_answered_e13(exchange: Exchange) -> None:
    response = await exchange.send("6.13", exchange.system.esmes()[0], log_request("ALCSEvent"))
    assert response.response_code == "E13"
    assert response.gbcs_payload is None


def log_period_request(body: str, start: dt.datetime, end: dt.datetime) -> bytes:
    return (
        f"<sr:{body} {SR}><sr:ReadLogPeriod>"
        f"<sr:StartDateTime>{start:%Y-%m-%dT%H:%M:%S.00Z}</sr:StartDateTime>"
        f"<sr:EndDateTime>{end:%Y-%m-%dT%H:%M:%S.00Z}</sr:EndDateTime>"
        f"</sr:ReadLogPeriod></sr:{body}>"
    ).encode()


async def protected_log(
    exchange: Exchange, srv: str, body: str, use_case: str, start: dt.datetime
) -> list[Data]:
    """The log entries the ESME returns for ``srv`` from ``start`` on, as the User decrypts
    them from the response (its MAC checked first)."""
    device = exchange.system.esmes()[0]
    end = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
    response = await exchange.send(srv, device, log_period_request(body, start, end))
    assert response.response_code == "I0" and response.gbcs_payload is not None
    frame = decode_message(response.gbcs_payload)
    assert isinstance(frame, GeneralCiphering)
    assert frame.general_signing.message_code == USE_CASES_BY_NAME[use_case].message_code
    supplier_ka = load_private_key(exchange.user.bundle / "ka.key")
    assert isinstance(supplier_ka, ec.EllipticCurvePrivateKey)
    device_ka = (
        KeyStore(exchange.system.home / "pki" / "keystore")
        .certificate(parse_eui(device), KeyUsage.KA)
        .public_key()
    )
    assert isinstance(device_ka, ec.EllipticCurvePublicKey)
    assert verify_mac(frame, private_key=supplier_ka, peer_public_key=device_ka)
    content = read_protected_content(
        frame, recipient_ka_private=supplier_ka, device_ka_public=device_ka
    )
    array = content.items[0].value
    assert isinstance(array, CompactArray)
    return list(array.elements())


async def test_profile_data_read_returns_the_esmes_half_hours(exchange: Exchange) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    entries = await protected_log(exchange, "4.8.1", "ReadActiveImportProfileData", "ECS22b", start)
    assert len(entries) in (4, 5)  # the half hours since start, up to the meter's clock
    stamps = [entry.items[0].integer for entry in entries]
    assert all(b - a == 1800 for a, b in itertools.pairwise(stamps))
    assert all(entry.items[1].integer > 0 for entry in entries)  # the meter is importing


async def test_daily_read_log_returns_the_registers_at_midnight(exchange: Exchange) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    entries = await protected_log(exchange, "4.6.1", "RetrieveImportDailyReadLog", "ECS21a", start)
    assert len(entries) == 3
    totals = [entry.items[1].integer for entry in entries]
    assert totals == sorted(totals) and totals[0] < totals[-1]  # registers only go up
    assert all(len(entry.items) == 7 for entry in entries)  # single element layout


async def test_daily_consumption_log_returns_each_days_import(exchange: Exchange) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    entries = await protected_log(exchange, "4.17", "RetrieveDailyConsumptionLog", "ECS66", start)
    assert len(entries) == 3
    assert [entry.items[0].integer % 86_400 for entry in entries] == [0, 0, 0]
    # a constant mean demand: the same each day, but for registers rounding down to whole Wh
    imports = [entry.items[1].integer for entry in entries]
    assert min(imports) > 0 and max(imports) - min(imports) <= 1


def han_device_log_request(device: str, request_type: str) -> bytes:
    add = (
        "<sr:AddDeviceToCHFWhitelist><sr:JoinTimePeriod>90</sr:JoinTimePeriod>"
        "<sr:InstallCode>30313233343536373839414243444546</sr:InstallCode>"
        "</sr:AddDeviceToCHFWhitelist>"
        if request_type == "Add"
        else ""
    )
    return (
        f"<sr:UpdateHANDeviceLog {SR}><sr:DeviceID>{device}</sr:DeviceID>"
        f"<sr:RequestType>{request_type}</sr:RequestType>{add}</sr:UpdateHANDeviceLog>"
    ).encode()


async def han_device_log(
    exchange: Exchange, chf: str, device: str, request_type: str, use_case: str
) -> list[int]:
    """8.11 to ``chf``: the results of the CHF's Access Response, which the CHF sends to the
    ACB (its MAC checked with the ACB's KA key), naming the User and its counter in the extras."""
    rid, document = exchange.user.service_request(
        "8.11", chf, body_xml=han_device_log_request(device, request_type)
    )
    ack = await post(exchange.session, exchange.system.service_s, document)
    assert ack.response_code == "I99"
    response = (await exchange.receiver.wait_for(str(rid), timeout=30)).response
    assert str(response.response_id) == rid.response_id()
    assert response.response_code == "I0" and response.gbcs_payload is not None
    frame = decode_message(response.gbcs_payload)
    assert isinstance(frame, GeneralCiphering)
    gs = frame.general_signing
    assert gs.cra_flag == 2
    assert gs.message_code == USE_CASES_BY_NAME[use_case].message_code
    assert gs.originator_title == parse_eui(chf)
    assert gs.recipient_title == DCC_EUI
    assert gs.other_info_extras == parse_eui(exchange.user.eui) + rid.counter.to_bytes(8, "big")
    keystore = KeyStore(exchange.system.home / "pki" / "keystore")
    acb_ka = keystore.private_key(DCC_EUI, KeyUsage.KA)
    chf_ka = keystore.certificate(parse_eui(chf), KeyUsage.KA).public_key()
    assert isinstance(acb_ka, ec.EllipticCurvePrivateKey)
    assert isinstance(chf_ka, ec.EllipticCurvePublicKey)
    assert verify_mac(frame, private_key=acb_ka, peer_public_key=chf_ka)
    apdu = decode_apdu(gs.payload)
    assert isinstance(apdu, AccessResponse)
    return [r.result for r in apdu.results]


def chf_of(system: System, device: str) -> str:
    """The CHF (hub, ``estate.device_eui(n, 0)``) of the premises holding ``device``."""
    for premises in estate.load(system.home):
        if any(d.eui == device for d in premises.devices):
            return next(d.eui for d in premises.devices if d.device_type.value == "CHF")
    raise AssertionError(f"{device} is in no premises")


async def test_update_han_device_log_adds_then_removes_a_device(exchange: Exchange) -> None:
    """8.11 Add (CCS01) then Remove (CCS02) of the premises' ESME in its CHF's device log; a
    second Remove finds the device gone: the CHF's failure result (1, as the RTDS CCS02 error
    response) comes back in an I0, as every device response does (DUIS maps no device result
    to a response code)."""
    esme = exchange.system.esmes()[0]
    chf = chf_of(exchange.system, esme)
    assert await han_device_log(exchange, chf, esme, "Add", "CCS01") == [ACTION_SUCCESS] * 3
    assert await han_device_log(exchange, chf, esme, "Remove", "CCS02") == [ACTION_SUCCESS]
    assert await han_device_log(exchange, chf, esme, "Remove", "CCS02") == [ACTION_HARDWARE_FAULT]


async def test_update_han_device_log_adding_a_device_not_in_the_inventory_is_e19(
    exchange: Exchange,
) -> None:
    chf = chf_of(exchange.system, exchange.system.esmes()[0])
    unknown = "00-DB-12-34-56-78-FF-FF"
    response = await exchange.send("8.11", chf, han_device_log_request(unknown, "Add"))
    assert response.response_code == "E19"
    assert response.gbcs_payload is None


def payment_mode_request(mode: str, execution: dt.datetime | None = None) -> bytes:
    when = (
        ""
        if execution is None
        else f"<sr:ExecutionDateTime>{execution:%Y-%m-%dT%H:%M:%S.00Z}</sr:ExecutionDateTime>"
    )
    inner = (
        "<sr:Credit/>"
        if mode == "Credit"
        else "<sr:Prepayment><sr:SuspendDebtDisabled>true</sr:SuspendDebtDisabled>"
        "<sr:SuspendDebtEmergency>false</sr:SuspendDebtEmergency>"
        "<sr:DisablementThreshold>500</sr:DisablementThreshold></sr:Prepayment>"
    )
    return f"<sr:UpdatePaymentMode {SR}>{when}{inner}</sr:UpdatePaymentMode>".encode()


async def payment_mode(exchange: Exchange, device: str) -> tuple[int, int]:
    """6.2.9 (ECS26j): the ESME's (payment mode, account status)."""
    apdu = await exchange.device_response("6.2.9", None, "ECS26j", device)
    assert apdu.results[0].result == ACTION_SUCCESS
    mode, status = apdu.data[0].items
    return mode.integer, status.integer


async def test_update_payment_mode_is_kept_by_the_esme_and_read_back(exchange: Exchange) -> None:
    """1.6 to prepayment (ECS03) and back to credit (ECS02), each read back by 6.2.9; a
    future-dated change (the ESME holds it) is not in force before its execution date-time."""
    device = exchange.system.esmes()[1]
    assert await payment_mode(exchange, device) == (1, 2)  # credit, active
    apdu = await exchange.signed_device_response(
        "1.6", device, payment_mode_request("Prepayment"), "ECS03"
    )
    assert [r.result for r in apdu.results] == [ACTION_SUCCESS] * 5
    assert await payment_mode(exchange, device) == (2, 2)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    apdu = await exchange.signed_device_response(
        "1.6", device, payment_mode_request("Credit", later), "ECS02"
    )
    assert [r.result for r in apdu.results] == [ACTION_SUCCESS] * 3
    assert await payment_mode(exchange, device) == (2, 2)  # still prepayment until then
    apdu = await exchange.signed_device_response(
        "1.6", device, payment_mode_request("Credit"), "ECS02"
    )
    assert [r.result for r in apdu.results] == [ACTION_SUCCESS] * 3
    assert await payment_mode(exchange, device) == (1, 2)


async def test_activate_firmware_of_an_image_the_esme_never_received_fails(
    exchange: Exchange,
) -> None:
    """11.3 (CS06) names the image by its hash; the estate's ESMEs have received no image (the
    WAN distribution of 11.1 images is not emulated), so the ESME answers with the failure
    result and the version it keeps running, which 11.2 then reads."""
    device = exchange.system.esmes()[2]
    image_hash = hashlib.sha256(b"an image never sent to this ESME").hexdigest().upper()
    body = (
        f"<sr:ActivateFirmware {SR}><sr:FirmwareHash>{image_hash}</sr:FirmwareHash>"
        "</sr:ActivateFirmware>"
    ).encode()
    frame = await exchange.signed_device_frame("11.3", device, body, "CS06")
    outcome = decode_asn1(frame.payload, message_code=frame.message_code, cra_flag=2).fields
    assert outcome == {"result": ACTIVATION_FAILURE, "firmware_version": DEFAULT_FIRMWARE_VERSION}
    apdu = await exchange.device_response("11.2", None, "ECS52", device)
    assert apdu.data[0].octets == DEFAULT_FIRMWARE_VERSION


async def test_clear_event_log_then_6_13_reads_an_empty_event_log(exchange: Exchange) -> None:
    device = exchange.system.esmes()[2]
    body = f"<sr:ClearEventLog {SR}><sr:ESMEEventLogType>ESME</sr:ESMEEventLogType>"
    body += "</sr:ClearEventLog>"
    apdu = await exchange.device_response("3.3", body.encode(), "ECS15a", device)
    assert [r.result for r in apdu.results] == [ACTION_SUCCESS]
    apdu = await exchange.device_response("6.13", log_request("Event"), "ECS35a", device)
    entries = apdu.data[0].value
    assert isinstance(entries, CompactArray) and entries.elements() == ()


def mpxn_request(inner: str) -> bytes:
    return (
        f"<sr:SetDeviceConfigurationImportMPxN {SR}>{inner}</sr:SetDeviceConfigurationImportMPxN>"
    ).encode()


async def test_set_import_mpan_is_accepted_by_the_esme(exchange: Exchange) -> None:
    body = mpxn_request(
        "<sr:ImportMPANs><sr:ImportMPAN>1312345678333</sr:ImportMPAN></sr:ImportMPANs>"
    )
    apdu = await exchange.device_response("6.20.1", body, "ECS39a", exchange.system.esmes()[2])
    assert [r.result for r in apdu.results] == [ACTION_SUCCESS]


async def test_an_mprn_for_an_esme_is_answered_e13(exchange: Exchange) -> None:
    body = mpxn_request("<sr:ImportMPRN>1234567</sr:ImportMPRN>")
    response = await exchange.send("6.20.1", exchange.system.esmes()[2], body)
    assert response.response_code == "E13"
    assert response.gbcs_payload is None


def import_tariff_request(standing_charge: int, tou_prices: list[int]) -> bytes:
    """1.1.1: a one-season, one-day tariff of TOU rate 1, the given prices."""
    week = "".join(
        f'<sr:ReferencedDayName index="{n}">1</sr:ReferencedDayName>' for n in range(1, 8)
    )
    thresholds = "".join(
        f'<sr:Thresholds index="{n}"><sr:BlockThreshold index="1">4294967295'
        "</sr:BlockThreshold></sr:Thresholds>"
        for n in range(1, 9)
    )
    prices = "".join(
        f'<sr:TOUPrice index="{n}">{price}</sr:TOUPrice>'
        for n, price in enumerate(tou_prices, start=1)
    )
    return (
        f"<sr:UpdateImportTariffPrimaryElement {SR}><sr:ElecTariffElements>"
        "<sr:CurrencyUnits>GBP</sr:CurrencyUnits><sr:SwitchingTable><sr:DayProfiles>"
        "<sr:DayProfile><sr:DayName>1</sr:DayName><sr:ProfileSchedule>"
        "<sr:StartTime>00:00:00.00Z</sr:StartTime><sr:TOUTariffAction>1</sr:TOUTariffAction>"
        "</sr:ProfileSchedule></sr:DayProfile></sr:DayProfiles><sr:WeekProfiles>"
        f"<sr:WeekProfile><sr:WeekName>1</sr:WeekName>{week}</sr:WeekProfile>"
        "</sr:WeekProfiles><sr:Seasons><sr:Season><sr:SeasonName>all</sr:SeasonName>"
        "<sr:SeasonStartDate><sr:Year><sr:NonSpecifiedYear/></sr:Year><sr:Month>"
        "<sr:SpecifiedMonth>01</sr:SpecifiedMonth></sr:Month><sr:DayOfMonth>"
        "<sr:SpecifiedDayOfMonth>01</sr:SpecifiedDayOfMonth></sr:DayOfMonth><sr:DayOfWeek>"
        "<sr:NonSpecifiedDayOfWeek/></sr:DayOfWeek></sr:SeasonStartDate>"
        "<sr:ReferencedWeekName>1</sr:ReferencedWeekName></sr:Season></sr:Seasons>"
        f"</sr:SwitchingTable><sr:SpecialDays/><sr:ThresholdMatrix>{thresholds}"
        "</sr:ThresholdMatrix></sr:ElecTariffElements><sr:PriceElements>"
        f"<sr:ElectricityPriceElements><sr:StandingCharge>{standing_charge}</sr:StandingCharge>"
        "<sr:StandingChargeScale>-5</sr:StandingChargeScale><sr:PriceScale>-5</sr:PriceScale>"
        f"<sr:TOUTariff>{prices}</sr:TOUTariff></sr:ElectricityPriceElements>"
        "</sr:PriceElements></sr:UpdateImportTariffPrimaryElement>"
    ).encode()


async def test_update_import_tariff_is_read_back_by_4_11_1(exchange: Exchange) -> None:
    """1.1.1 (ECS01a, CV 4 then 5) sets the standing charge and TOU prices; 4.11.1 (ECS24)
    then reads them from the tariff in force."""
    device = exchange.system.esmes()[1]
    body = import_tariff_request(12345, [2500, 1800])
    apdu = await exchange.signed_device_response("1.1.1", device, body, "ECS01a")
    assert [r.result for r in apdu.results] == [ACTION_SUCCESS] * len(apdu.results)
    read = await exchange.device_response("4.11.1", None, "ECS24", device)
    assert all(r.result == ACTION_SUCCESS for r in read.results)
    tariff = tariff_from_data(read.data[2:])
    assert tariff.standing_charge == 12345
    assert tariff.tou_prices == (2500, 1800)
    assert tariff.days[0].actions == (((0, 0, 0), 1),)


async def test_disable_privacy_pin_is_acknowledged_by_the_esme(exchange: Exchange) -> None:
    body = f"<sr:DisablePrivacyPIN {SR}/>".encode()
    apdu = await exchange.device_response("3.5", body, "ECS14", exchange.system.esmes()[2])
    assert [r.result for r in apdu.results] == [ACTION_SUCCESS]


async def test_read_active_power_returns_the_esmes_demand_in_watts(exchange: Exchange) -> None:
    apdu = await exchange.device_response("4.16", None, "ECS17c", exchange.system.esmes()[2])
    assert apdu.results[0].result == ACTION_SUCCESS
    total, unit, primary = apdu.data[0].items
    assert 150 <= total.integer <= 1500  # the estate's household demands (LoadProfile.from_seed)
    assert primary.integer == total.integer  # a single-element ESME
    assert [i.integer for i in unit.items] == [0, 27]


async def test_set_power_thresholds_is_accepted_by_the_esme(exchange: Exchange) -> None:
    body = (
        f"<sr:UpdateDeviceConfigurationInstantaneousPowerThreshold {SR}>"
        "<sr:LowMediumPowerThreshold>1500</sr:LowMediumPowerThreshold>"
        "<sr:MediumHighPowerThreshold>4000</sr:MediumHighPowerThreshold>"
        "</sr:UpdateDeviceConfigurationInstantaneousPowerThreshold>"
    ).encode()
    apdu = await exchange.device_response("6.12", body, "ECS34", exchange.system.esmes()[2])
    assert [r.result for r in apdu.results] == [ACTION_SUCCESS]


def security_credentials_request(ds: bytes, ka: bytes, path: bytes) -> bytes:
    """6.15.1 by the Supplier of its own DS and KA certificates (DER), with the CA's path."""

    def b64(der: bytes) -> str:
        return base64.b64encode(der).decode()

    return (
        f"<sr:UpdateSecurityCredentialsKRP {SR}><sr:RemotePartyRole>Supplier</sr:RemotePartyRole>"
        "<sr:RemotePartyFloorSeqNumber>0</sr:RemotePartyFloorSeqNumber>"
        "<sr:ReplacementCertificates><sr:SupplierOrNetworkOperatorCertificates>"
        f"<sr:DigitalSigningCertificate>{b64(ds)}</sr:DigitalSigningCertificate>"
        f"<sr:KeyAgreementCertificate>{b64(ka)}</sr:KeyAgreementCertificate>"
        "</sr:SupplierOrNetworkOperatorCertificates></sr:ReplacementCertificates>"
        "<sr:CertificationPathCertificates>"
        f"<sr:Certificate>{b64(path)}</sr:Certificate></sr:CertificationPathCertificates>"
        "<sr:ApplyTimeBasedCPVChecks>true</sr:ApplyTimeBasedCPVChecks>"
        "</sr:UpdateSecurityCredentialsKRP>"
    ).encode()


async def test_update_security_credentials_replaces_the_suppliers_keys_on_the_esme(
    exchange: Exchange,
) -> None:
    """6.15.1 (CS02b, CV 4 then 5) with new Supplier DS and KA certificates issued by the dev
    PKI's organisation CA: the hosted ESME (holding the Supplier's cells and the SMKI Root)
    replaces both cells, and its next response is MAC'd for the new KA key, not the old. The
    DCC still holds the User's old certificates, so the premises is reset afterwards (the
    gateway's control API) for the other tests."""
    device = exchange.system.esmes()[2]
    try:
        await _replace_supplier_credentials(exchange, device)
    finally:
        control = json.loads((exchange.system.home / "gateway-control.json").read_text())["url"]
        async with aiohttp.ClientSession() as s, s.post(f"{control}/premises/{device}/reset") as r:
            assert r.status == 200, await r.text()


async def _replace_supplier_credentials(exchange: Exchange, device: str) -> None:
    layout = PkiLayout.of(exchange.system.home)
    issuing = CertificateAuthority.load(layout.smki_issuing_cert, layout.smki_issuing_key)
    now = dt.datetime.now(dt.UTC)
    new_ds, new_ka = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))

    def certificate(key: ec.EllipticCurvePrivateKey, usage: KeyUsage) -> bytes:
        return issue_organisation_certificate(
            issuing,
            eui=parse_eui(exchange.user.eui),
            role=Role.SUPPLIER,
            usage=usage,
            public_key=key.public_key(),
            not_before=now - dt.timedelta(days=1),
            not_after=now + dt.timedelta(days=365),
        ).public_bytes(Encoding.DER)

    body = security_credentials_request(
        certificate(new_ds, KeyUsage.DS),
        certificate(new_ka, KeyUsage.KA),
        issuing.certificate.public_bytes(Encoding.DER),
    )
    frame = await exchange.signed_device_frame("6.15.1", device, body, "CS02bSupplierBySupplier")
    answer: Any = decode_asn1(frame.payload, message_code=frame.message_code, cra_flag=2).fields
    results = answer["credentials_replacement_report"]["replacement_results"]
    outcomes: list[Any] = [decode_with(REPLACEMENT_OUTCOME, r) for r in results]
    assert [o["status"] for o in outcomes] == [STATUS_SUCCESS] * 2

    response = await exchange.send("6.2.9", device)
    assert response.response_code == "I0" and response.gbcs_payload is not None
    read = decode_message(response.gbcs_payload)
    assert isinstance(read, GeneralCiphering)
    device_ka = exchange.keystore().certificate(parse_eui(device), KeyUsage.KA).public_key()
    assert isinstance(device_ka, ec.EllipticCurvePublicKey)
    assert verify_mac(read, private_key=new_ka, peer_public_key=device_ka)
    old_ka = load_private_key(exchange.user.bundle / "ka.key")
    assert isinstance(old_ka, ec.EllipticCurvePrivateKey)
    assert not verify_mac(read, private_key=old_ka, peer_public_key=device_ka)
