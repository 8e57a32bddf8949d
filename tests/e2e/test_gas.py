"""Gas Service Requests end to end: the demo Supplier, Gas Supplier of its premises' MPRN, reads
its GSME and GPF. A signed DUIS request to serviceS, I99, then the async I0 whose GBCS payload
is the emulated gas device's GBZ response to the right use case, MAC'd for its recipient, with
its content encrypted for the User and the values the device model gives. A User that is not
the meter's Gas Supplier is refused (E4) before anything reaches the device."""

from __future__ import annotations

import base64
import datetime as dt
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from dccsim import estate
from dccsim.duis.requestid import DCC_EUI, parse_eui
from dccsim.duis.xml import DuisResponse
from dccsim.gbcs.crypto import (
    content_context,
    decrypt_content,
    verify_frame_signature,
    verify_mac,
)
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.gbcs.zigbee import (
    METERING,
    GbzComponent,
    decode_gbz,
    decode_zcl_payload,
)
from dccsim.pki.files import load_certificate, load_private_key
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage
from dccsim.seed import supplier_eui
from dccsim.testuser import ResponseReceiver, TestUser, post
from emulators.gsme import GasLoadProfile, GasRegisters
from gateway.hosting import REGISTER_EPOCH
from tests.broker import rabbitmqctl_available
from tests.system import System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]

SR = 'xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway"'
GBCS_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """Two demo Suppliers: premises 1 and 3 are the demo Supplier's, premises 2 the other's."""
    sys_ = System(tmp_path_factory.mktemp("dccsim-home"), premises=3, suppliers=2)
    try:
        sys_.start()
        yield sys_
    finally:
        sys_.stop()


@dataclass(frozen=True)
class GasMeter:
    premises_id: str
    gsme: str
    gpf: str

    def registers(self) -> GasRegisters:
        """The GSME's register as the gateway models it (one gas profile per premises)."""
        seed = zlib.crc32(f"gas:{self.premises_id}".encode())
        return GasRegisters(GasLoadProfile.from_seed(seed), REGISTER_EPOCH)


def gas_meters(system: System, gas_supplier: str) -> list[GasMeter]:
    """The GSMEs (and their GPFs) of the premises whose Gas Supplier is ``gas_supplier``."""
    meters = []
    for p in estate.load(system.home):
        if p.registrations.get("GS") != gas_supplier:
            continue
        by_type = {d.device_type.value: d.eui for d in p.devices}
        meters.append(GasMeter(p.premises_id, by_type["GSME"], by_type["GPF"]))
    return meters


@dataclass
class GasExchange:
    system: System
    user: TestUser
    receiver: ResponseReceiver
    session: aiohttp.ClientSession

    async def send(self, srv: str, device: str, body_xml: bytes | None = None) -> DuisResponse:
        rid, document = self.user.service_request(srv, device, body_xml=body_xml)
        ack = await post(self.session, self.system.service_s, document)
        assert ack.response_code == "I99"
        response = (await self.receiver.wait_for(str(rid), timeout=60)).response
        assert str(response.response_id) == rid.response_id()
        assert response.service_reference_variant == srv
        return response

    def keystore(self) -> KeyStore:
        return KeyStore(self.system.home / "pki" / "keystore")

    def device_ka(self, device: str) -> ec.EllipticCurvePublicKey:
        key = self.keystore().certificate(parse_eui(device), KeyUsage.KA).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return key

    def user_ka(self) -> ec.EllipticCurvePrivateKey:
        key = load_private_key(self.user.bundle / "ka.key")
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def frame(self, response: DuisResponse, device: str, use_case: str) -> GeneralCiphering:
        """The device's response to ``use_case``: CRA 2, from the device, MAC checked for its
        recipient (the User, or the ACB when the ACB sent the command for the User)."""
        assert response.response_code == "I0" and response.gbcs_payload is not None
        frame = decode_message(response.gbcs_payload)
        assert isinstance(frame, GeneralCiphering)
        gs = frame.general_signing
        assert gs.cra_flag == 2
        assert gs.message_code == USE_CASES_BY_NAME[use_case].message_code
        assert gs.originator_title == parse_eui(device)
        if gs.recipient_title == DCC_EUI:
            acb = self.keystore().private_key(DCC_EUI, KeyUsage.KA)
            assert isinstance(acb, ec.EllipticCurvePrivateKey)
            assert verify_mac(frame, private_key=acb, peer_public_key=self.device_ka(device))
            assert gs.other_info_extras[:8] == parse_eui(self.user.eui)
        else:
            assert gs.recipient_title == parse_eui(self.user.eui)
            assert verify_mac(
                frame, private_key=self.user_ka(), peer_public_key=self.device_ka(device)
            )
        return frame

    def plaintext(self, frame: GeneralCiphering, component: GbzComponent, device: str) -> bytes:
        """An encrypted GBZ component's content, decrypted by the User it is for."""
        assert component.encrypted_content is not None
        context = content_context(frame.general_signing)
        assert context.recipient_title == parse_eui(self.user.eui)
        return decrypt_content(
            component.encrypted_content,
            device_title=context.device_title,
            counter=context.counter,
            recipient_title=context.recipient_title,
            private_key=self.user_ka(),
            peer_public_key=self.device_ka(device),
        )


@pytest.fixture
def gas(
    system: System, user: TestUser, receiver: ResponseReceiver, session: aiohttp.ClientSession
) -> GasExchange:
    return GasExchange(system, user, receiver, session)


def _attributes(exchange: GasExchange, frame: GeneralCiphering, device: str) -> dict[int, int]:
    """A (single component) encrypted Read Attributes Response as attribute -> value."""
    (component,) = decode_gbz(frame.general_signing.payload).components
    assert component.cluster == METERING and component.encrypted
    plaintext = exchange.plaintext(frame, component, device)
    payload = decode_zcl_payload(METERING, component.header, plaintext)
    assert payload.layout == "read-attributes-response" and not payload.rest
    assert all(r["status"] == 0 for r in payload.records)
    return {int(r["attribute_id"]): int(r["value"]) for r in payload.records}


async def test_gas_consumption_register_read_from_the_gsme(
    gas: GasExchange, system: System, user: TestUser
) -> None:
    """4.1.1 to a GSME: GCS13a, the live register (litres, divisor 1000, cubic metres)."""
    meter = gas_meters(system, user.eui)[0]
    before = dt.datetime.now(dt.UTC)
    response = await gas.send("4.1.1", meter.gsme)
    after = dt.datetime.now(dt.UTC)
    frame = gas.frame(response, meter.gsme, "GCS13a")
    values = _attributes(gas, frame, meter.gsme)
    assert (values[0x0300], values[0x0301], values[0x0302]) == (1, 1, 1000)
    registers = meter.registers()
    assert registers.litres(before) <= values[0x0000] <= registers.litres(after)


async def test_gas_consumption_register_read_from_the_gpf_mirror(
    gas: GasExchange, system: System, user: TestUser
) -> None:
    """4.1.1 to the GPF: GCS13a answered from the GSME mirror, the register at the half hour."""
    meter = gas_meters(system, user.eui)[0]
    response = await gas.send("4.1.1", meter.gpf)
    after = dt.datetime.now(dt.UTC)
    frame = gas.frame(response, meter.gpf, "GCS13a")
    values = _attributes(gas, frame, meter.gpf)
    half_hour = after.replace(minute=after.minute // 30 * 30, second=0, microsecond=0)
    registers = meter.registers()
    # the mirror of the last half hour (or the one before, had it turned while in flight)
    assert values[0x0000] in {
        registers.litres(half_hour),
        registers.litres(half_hour - dt.timedelta(minutes=30)),
    }


async def test_gpf_daily_consumption_log_holds_each_day_the_gsme_used(
    gas: GasExchange, system: System, user: TestUser
) -> None:
    """4.17 to the GPF: GCS61, which the ACB sends for the User (with the User's KA certificate
    from the body); the log's days are what the GSME's register moved by each day."""
    meter = gas_meters(system, user.eui)[0]
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = today - 5 * DAY, today - DAY
    certificate = load_certificate(user.bundle / "ka.pem").public_bytes(Encoding.DER)
    body = (
        f"<sr:RetrieveDailyConsumptionLog {SR}><sr:ReadLogPeriod>"
        f"<sr:StartDateTime>{start:%Y-%m-%dT%H:%M:%SZ}</sr:StartDateTime>"
        f"<sr:EndDateTime>{end:%Y-%m-%dT%H:%M:%SZ}</sr:EndDateTime></sr:ReadLogPeriod>"
        "<sr:KAPublicSecurityCredentials>"
        f"{base64.b64encode(certificate).decode()}</sr:KAPublicSecurityCredentials>"
        "</sr:RetrieveDailyConsumptionLog>"
    ).encode()
    response = await gas.send("4.17", meter.gpf, body)
    frame = gas.frame(response, meter.gpf, "GCS61")
    assert frame.general_signing.recipient_title == DCC_EUI  # the ACB sent it
    (component,) = decode_gbz(frame.general_signing.payload).components
    assert component.encrypted and component.header.command == 0x07  # GetSampledDataResponse
    plaintext = gas.plaintext(frame, component, meter.gpf)
    log = decode_zcl_payload(METERING, component.header, plaintext)
    assert log.layout == "get-sampled-data-response" and not log.rest
    assert log.values["sample_id"] == 1
    assert log.values["sample_start_time"] == int((start - GBCS_EPOCH).total_seconds())
    registers = meter.registers()
    expected = [registers.drawn(start + i * DAY, start + (i + 1) * DAY) for i in range(5)]
    assert [int(r["sample"]) for r in log.records] == expected
    assert log.values["number_of_samples"] == 5


async def test_gas_meter_of_another_gas_supplier_is_refused(
    gas: GasExchange, system: System, user: TestUser
) -> None:
    """The demo Supplier is not the Gas Supplier of the other Supplier's premises: E4."""
    other = gas_meters(system, supplier_eui(1))[0]
    assert other.gsme not in {m.gsme for m in gas_meters(system, user.eui)}
    for device in (other.gsme, other.gpf):
        _, document = gas.user.service_request("4.1.1", device)
        answer = await post(gas.session, system.service_s, document)
        assert answer.response_code == "E4", device


def _valve_and_payment_meter(system: System, user: TestUser) -> GasMeter:
    """The demo Supplier's last gas meter: the critical commands change it, the reads above
    use the first one."""
    meters = gas_meters(system, user.eui)
    assert len(meters) >= 2
    return meters[-1]


async def _critical(
    gas: GasExchange, srv: str, device: str, body_xml: bytes | None = None
) -> GeneralSigning:
    """CV 4 to serviceT (I0 with the Pre-Command), the User's signature, CV 5 to serviceS
    (I99), then the GSME's answer: General Signing signed by the GSME, for the User."""
    rid, document = gas.user.service_request(srv, device, command_variant=4, body_xml=body_xml)
    answer = await post(gas.session, gas.system.url("serviceT"), document)
    assert answer.response_code == "I0" and answer.pre_command is not None
    signed = gas.user.sign_pre_command(answer.pre_command.gbcs_payload)
    ack = await post(
        gas.session, gas.system.service_s, gas.user.signed_pre_command_request(srv, rid, signed)
    )
    assert ack.response_code == "I99"
    response = (await gas.receiver.wait_for(str(rid), timeout=60)).response
    assert response.response_code == "I0" and response.gbcs_payload is not None
    frame = decode_message(response.gbcs_payload)
    assert isinstance(frame, GeneralSigning) and frame.cra_flag == 2
    assert frame.originator_title == parse_eui(device)
    assert frame.recipient_title == parse_eui(gas.user.eui)
    ds = gas.keystore().certificate(parse_eui(device), KeyUsage.DS).public_key()
    assert isinstance(ds, ec.EllipticCurvePublicKey)
    assert verify_frame_signature(frame, ds)
    return frame


def _clear_attributes(frame: GeneralCiphering) -> dict[int, int]:
    (component,) = decode_gbz(frame.general_signing.payload).components
    assert not component.encrypted and component.payload.layout == "read-attributes-response"
    return {int(r["attribute_id"]): int(r["value"]) for r in component.payload.records}


async def test_disable_supply_closes_the_gas_valve_and_stops_the_register(
    gas: GasExchange, system: System, user: TestUser
) -> None:
    """7.2 to a GSME (critical): GCS32 signed by the User, checked by the GSME, which closes
    its valve: the supply status reads off (7.4) and the register stops where it was."""
    meter = _valve_and_payment_meter(system, user)
    frame = await _critical(gas, "7.2", meter.gsme)
    assert frame.message_code == USE_CASES_BY_NAME["GCS32"].message_code
    closed_by = dt.datetime.now(dt.UTC)
    (component,) = decode_gbz(frame.payload).components
    assert component.payload.layout == "supply-status-response"
    assert component.payload.values["supply_status"] == 0  # supply off
    status = gas.frame(await gas.send("7.4", meter.gsme), meter.gsme, "GCS33")
    assert _clear_attributes(status)[0x0014] == 0
    first = _attributes(
        gas, gas.frame(await gas.send("4.1.1", meter.gsme), meter.gsme, "GCS13a"), meter.gsme
    )
    assert first[0x0000] <= meter.registers().litres(closed_by)
    second = _attributes(
        gas, gas.frame(await gas.send("4.1.1", meter.gsme), meter.gsme, "GCS13a"), meter.gsme
    )
    assert second[0x0000] == first[0x0000]


async def test_arm_supply_after_disable_arms_the_gas_valve(
    gas: GasExchange, system: System, user: TestUser
) -> None:
    """7.3 to a GSME (critical): GCS39 arms the closed valve; 7.4 reads it armed."""
    meter = _valve_and_payment_meter(system, user)
    await _critical(gas, "7.2", meter.gsme)
    frame = await _critical(gas, "7.3", meter.gsme)
    (component,) = decode_gbz(frame.payload).components
    assert component.payload.values["supply_status"] == 1  # off, armed
    status = gas.frame(await gas.send("7.4", meter.gsme), meter.gsme, "GCS33")
    assert _clear_attributes(status)[0x0014] == 1


@pytest.mark.parametrize(
    ("mode", "configuration"),
    [
        ("<sr:Credit/>", 0x0C94),
        (
            "<sr:Prepayment><sr:SuspendDebtDisabled>false</sr:SuspendDebtDisabled>"
            "<sr:SuspendDebtEmergency>false</sr:SuspendDebtEmergency>"
            "<sr:DisablementThreshold>0</sr:DisablementThreshold></sr:Prepayment>",
            0x0897,
        ),
    ],
)
async def test_update_payment_mode_changes_what_the_gsme_reports(
    gas: GasExchange, system: System, user: TestUser, mode: str, configuration: int
) -> None:
    """1.6 to a GSME (critical): GCS02/GCS03, answered signed with the device's date-time;
    6.2.9 (GCS21j) then reads the payment control configuration the command set."""
    meter = _valve_and_payment_meter(system, user)
    body = f"<sr:UpdatePaymentMode {SR}>{mode}</sr:UpdatePaymentMode>".encode()
    frame = await _critical(gas, "1.6", meter.gsme, body)
    assert frame.date_time is not None
    (component,) = decode_gbz(frame.payload).components
    assert component.payload.layout == "change-payment-mode-response"
    read = gas.frame(await gas.send("6.2.9", meter.gsme), meter.gsme, "GCS21j")
    assert _clear_attributes(read)[0x0000] == configuration


async def test_display_message_reaches_the_gsme(
    gas: GasExchange, system: System, user: TestUser
) -> None:
    """3.1 to a GSME: GCS07, a ZCL Display Message, answered with a Default Response success."""
    meter = _valve_and_payment_meter(system, user)
    body = f"<sr:DisplayMessage {SR}><sr:SupplierMessage>Hello gas</sr:SupplierMessage></sr:DisplayMessage>".encode()
    frame = gas.frame(await gas.send("3.1", meter.gsme, body), meter.gsme, "GCS07")
    (component,) = decode_gbz(frame.general_signing.payload).components
    assert component.payload.layout == "default-response"
    assert component.payload.values == {"command_id": 0, "status": 0}


async def test_daily_read_log_holds_the_register_at_each_midnight(
    gas: GasExchange, system: System, user: TestUser
) -> None:
    """4.6.1 to a GSME: GCS16a's 31 Get Snapshots; the snapshots of the period (the last three
    midnights) come encrypted for the User, each the register at that midnight, the rest are
    not found."""
    meter = gas_meters(system, user.eui)[0]
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - 2 * DAY
    body = (
        f"<sr:RetrieveImportDailyReadLog {SR}><sr:ReadLogPeriod>"
        f"<sr:StartDateTime>{start:%Y-%m-%dT%H:%M:%SZ}</sr:StartDateTime>"
        f"<sr:EndDateTime>{today + DAY:%Y-%m-%dT%H:%M:%SZ}</sr:EndDateTime></sr:ReadLogPeriod>"
        "</sr:RetrieveImportDailyReadLog>"
    ).encode()
    frame = gas.frame(await gas.send("4.6.1", meter.gsme, body), meter.gsme, "GCS16a")
    components = decode_gbz(frame.general_signing.payload).components
    assert len(components) == 31
    registers = meter.registers()
    for offset, component in enumerate(components[:3]):
        plaintext = gas.plaintext(frame, component, meter.gsme)
        midnight = start + offset * DAY
        assert plaintext[4:8] == int((midnight - GBCS_EPOCH).total_seconds()).to_bytes(4, "little")
        assert plaintext[16:22] == registers.litres(midnight).to_bytes(6, "little")
    assert all(not c.encrypted and c.payload.values["status"] == 0x8B for c in components[3:])
