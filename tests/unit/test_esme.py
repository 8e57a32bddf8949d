"""The ESME device model: ECS17b end to end with fresh keys, anti-replay, MAC refusal, growth."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.crypto import verify_mac
from dccsim.gbcs.dlms import AccessResponse, decode_apdu
from dccsim.gbcs.frames import CRA_RESPONSE, GeneralCiphering, decode_message
from dccsim.gbcs.usecases import (
    ACTION_HARDWARE_FAULT,
    ACTION_OTHER_REASON,
    ECS17B,
    DeviceResultError,
    build_command,
    build_ecs17b_command,
    read_ecs17b_response,
)
from emulators.device import (
    ALERT_FAILED_AUTHENTICATION_OTHER,
    ALERT_INTEGRITY_CHECK_FAILED,
    ALERT_SOURCE_NOT_AUTHORISED,
    ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE,
    DeviceRefusal,
    RemoteParty,
)
from emulators.esme import Esme, LoadProfile

ESME_EUI = bytes.fromhex("00DB1234567890A0")
SUPPLIER_EUI = bytes.fromhex("90B3D51F30010000")
START = datetime(2024, 1, 1, tzinfo=UTC)


class ManualClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _ciphered(data: bytes) -> GeneralCiphering:
    message = decode_message(data)
    assert isinstance(message, GeneralCiphering)
    return message


@dataclass
class Estate:
    esme: Esme
    clock: ManualClock
    acb_ka: ec.EllipticCurvePrivateKey
    device_ka: ec.EllipticCurvePrivateKey
    supplier_ka: ec.EllipticCurvePrivateKey

    def command(self, counter: int, *, acb_ka: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        return build_ecs17b_command(
            originator_title=SUPPLIER_EUI,
            device_title=ESME_EUI,
            counter=counter,
            acb_ka_private=acb_ka or self.acb_ka,
            device_ka_public=self.device_ka.public_key(),
        )

    def read(self, response: bytes) -> int:
        registers = read_ecs17b_response(
            response,
            recipient_ka_private=self.supplier_ka,
            device_ka_public=self.device_ka.public_key(),
        )
        return registers.active_import


@pytest.fixture
def estate() -> Estate:
    acb_ka, device_ka, supplier_ka = _key(), _key(), _key()
    clock = ManualClock(START)
    esme = Esme(
        eui=ESME_EUI,
        ka_private_key=device_ka,
        ds_private_key=_key(),
        acb_ka_public=acb_ka.public_key(),
        remote_parties={SUPPLIER_EUI: RemoteParty(SUPPLIER_EUI, supplier_ka.public_key())},
        clock=clock,
        load_profile=LoadProfile(start_import_wh=1_000, mean_power_w=600.0),
    )
    return Estate(esme, clock, acb_ka, device_ka, supplier_ka)


def test_ecs17b_response_verifies_and_decodes(estate: Estate) -> None:
    response = estate.esme.handle(estate.command(1000))
    message = _ciphered(response)
    header = message.general_signing
    assert (header.cra_flag, header.originator_counter) == (CRA_RESPONSE, 1000)
    assert (header.originator_title, header.recipient_title) == (ESME_EUI, SUPPLIER_EUI)
    assert verify_mac(
        message,
        private_key=estate.supplier_ka,
        peer_public_key=estate.device_ka.public_key(),
    )
    assert estate.read(response) == 1_000
    assert estate.esme.refusals == 0


def test_replayed_counter_is_refused(estate: Estate) -> None:
    estate.esme.handle(estate.command(1000))
    for counter in (1000, 999):
        with pytest.raises(DeviceRefusal) as refused:
            estate.esme.handle(estate.command(counter))
        assert refused.value.alert_code == ALERT_FAILED_AUTHENTICATION_OTHER
    assert estate.esme.refusals == 2
    estate.esme.handle(estate.command(1001))  # a higher counter is accepted again


def test_bad_mac_is_refused_and_does_not_consume_the_counter(estate: Estate) -> None:
    forged = estate.command(1000, acb_ka=_key())
    with pytest.raises(DeviceRefusal) as refused:
        estate.esme.handle(forged)
    assert refused.value.alert_code == ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE
    tampered = bytearray(estate.command(1000))
    tampered[-1] ^= 0x01
    with pytest.raises(DeviceRefusal):
        estate.esme.handle(bytes(tampered))
    assert estate.esme.refusals == 2
    estate.esme.handle(estate.command(1000))


def test_malformed_command_is_refused(estate: Estate) -> None:
    with pytest.raises(DeviceRefusal) as refused:
        estate.esme.handle(estate.command(1000)[:-3])
    assert refused.value.alert_code == ALERT_INTEGRITY_CHECK_FAILED


def test_unknown_originator_is_refused(estate: Estate) -> None:
    stranger = bytes.fromhex("90B3D51F30099999")
    command = build_ecs17b_command(
        originator_title=stranger,
        device_title=ESME_EUI,
        counter=1,
        acb_ka_private=estate.acb_ka,
        device_ka_public=estate.device_ka.public_key(),
    )
    with pytest.raises(DeviceRefusal) as refused:
        estate.esme.handle(command)
    assert refused.value.alert_code == ALERT_SOURCE_NOT_AUTHORISED


def test_registers_grow_with_the_injected_clock(estate: Estate) -> None:
    first = estate.read(estate.esme.handle(estate.command(1000)))
    estate.clock.now = START + timedelta(hours=2)
    second = estate.read(estate.esme.handle(estate.command(1001)))
    assert (first, second) == (1_000, 1_000 + 1_200)


def test_scripted_fault_answers_with_the_dlms_result(estate: Estate) -> None:
    estate.esme.script_fault(ECS17B, ACTION_HARDWARE_FAULT)
    with pytest.raises(DeviceResultError) as caught:
        estate.read(estate.esme.handle(estate.command(1000)))
    assert caught.value.result == ACTION_HARDWARE_FAULT
    assert estate.esme.refusals == 1
    assert estate.read(estate.esme.handle(estate.command(1001))) == 1_000


def test_unsupported_dlms_use_case_gets_other_reason(estate: Estate) -> None:
    unsupported = replace(ECS17B, message_code=0x0FFF)
    command = build_command(
        unsupported,
        originator_title=SUPPLIER_EUI,
        device_title=ESME_EUI,
        counter=1000,
        payload=_ciphered(estate.command(1000)).general_signing.payload,
        acb_ka_private=estate.acb_ka,
        device_ka_public=estate.device_ka.public_key(),
    )
    response = decode_apdu(_ciphered(estate.esme.handle(command)).general_signing.payload)
    assert isinstance(response, AccessResponse)
    assert [r.result for r in response.results] == [ACTION_OTHER_REASON]


def test_seeded_load_profiles_differ_but_repeat() -> None:
    assert LoadProfile.from_seed(7) == LoadProfile.from_seed(7)
    assert LoadProfile.from_seed(7) != LoadProfile.from_seed(8)


def test_authentic_command_with_wrong_layout_is_refused(estate: Estate) -> None:
    command = build_command(
        ECS17B,
        originator_title=SUPPLIER_EUI,
        device_title=ESME_EUI,
        counter=1000,
        payload=bytes.fromhex("D9200003E8000000"),  # an Access Request with nothing in it
        acb_ka_private=estate.acb_ka,
        device_ka_public=estate.device_ka.public_key(),
    )
    with pytest.raises(DeviceRefusal) as refused:
        estate.esme.handle(command)
    assert refused.value.alert_code == ALERT_INTEGRITY_CHECK_FAILED
