"""The GPF model answers gas reads from its GSME mirror and restores its device log: responses
have the structure of the RTDS GPF responses, and it refuses what a GBCS device refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.cli import FolderKeys
from dccsim.gbcs.crypto import content_context, decrypt_content, verify_mac
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, UseCase, build_command
from dccsim.gbcs.zigbee import METERING, ZclHeader, decode_gbz, decode_zcl_payload
from emulators.device import (
    ALERT_FAILED_AUTHENTICATION_OTHER,
    ALERT_SOURCE_NOT_AUTHORISED,
    DeviceRefusal,
    RemoteParty,
)
from emulators.gpf import GCS59, Gpf
from emulators.gsme import (
    CURRENT_SUMMATION_DELIVERED,
    GCS13C,
    GCS60A,
    GasLoadProfile,
    GasRegisters,
    Gsme,
)

GPF_EUI = bytes.fromhex("00DB1234567890A3")
GSME_EUI = bytes.fromhex("00DB1234567890A1")
SUPPLIER_EUI = bytes.fromhex("90B3D51F30010000")
ACB_EUI = bytes.fromhex("90B3D51F30000002")
NOW = datetime(2015, 1, 1, 9, 17, tzinfo=UTC)
INSTALLED = datetime(2014, 12, 1, tzinfo=UTC)
GAS = GasRegisters(GasLoadProfile.from_seed(11), INSTALLED)


class Keys:
    def __init__(self) -> None:
        self.acb = ec.generate_private_key(ec.SECP256R1())
        self.gpf = ec.generate_private_key(ec.SECP256R1())
        self.gsme = ec.generate_private_key(ec.SECP256R1())
        self.supplier = ec.generate_private_key(ec.SECP256R1())

    def parties(self) -> dict[bytes, RemoteParty]:
        return {
            SUPPLIER_EUI: RemoteParty(SUPPLIER_EUI, self.supplier.public_key()),
            ACB_EUI: RemoteParty(ACB_EUI, self.acb.public_key()),
        }


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def clock() -> list[datetime]:
    return [NOW]


@pytest.fixture
def gpf(keys: Keys, clock: list[datetime]) -> Gpf:
    return Gpf(
        eui=GPF_EUI,
        ka_private_key=keys.gpf,
        ds_private_key=ec.generate_private_key(ec.SECP256R1()),
        acb_ka_public=keys.acb.public_key(),
        remote_parties=keys.parties(),
        clock=lambda: clock[0],
        mirror=GAS,
    )


def _rtds(reference_dir: Path, name: str) -> GeneralSigning:
    message = decode_message(
        parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / name).read_text())
    )
    return message.general_signing if isinstance(message, GeneralCiphering) else message


def _send(
    gpf: Gpf,
    keys: Keys,
    use_case: UseCase,
    command: GeneralSigning,
    *,
    originator: bytes = SUPPLIER_EUI,
    counter: int = 1000,
) -> GeneralSigning:
    """``command``'s payload (and other-information extras) sent to the model; the reply's
    MAC checked with the originator's key."""
    frame = build_command(
        use_case,
        originator_title=originator,
        device_title=GPF_EUI,
        counter=counter,
        payload=command.payload,
        acb_ka_private=keys.acb,
        device_ka_public=keys.gpf.public_key(),
        other_info_extras=command.other_info_extras,
    )
    message = decode_message(gpf.handle(frame))
    assert isinstance(message, GeneralCiphering)
    private = keys.acb if originator == ACB_EUI else keys.supplier
    assert verify_mac(message, private_key=private, peer_public_key=keys.gpf.public_key())
    return message.general_signing


def _plaintext(
    frame: GeneralSigning, private: ec.EllipticCurvePrivateKey, public: ec.EllipticCurvePublicKey
) -> bytes:
    context = content_context(frame)
    (component,) = decode_gbz(frame.payload).components
    assert component.encrypted_content is not None
    return decrypt_content(
        component.encrypted_content,
        device_title=context.device_title,
        counter=context.counter,
        recipient_title=context.recipient_title,
        private_key=private,
        peer_public_key=public,
    )


def _rtds_plaintext(reference_dir: Path, frame: GeneralSigning) -> bytes:
    keys = FolderKeys(reference_dir / "gbcs" / "keystore")
    private = keys.ka_private(content_context(frame).recipient_title)
    public = keys.ka_public(frame.originator_title)
    assert private is not None and public is not None
    return _plaintext(frame, private, public)


def _shape(frame: GeneralSigning) -> list[tuple[int, int, int, int]]:
    return [
        (c.control, c.cluster, c.header.frame_control, c.header.command)
        for c in decode_gbz(frame.payload).components
    ]


def _values(plaintext: bytes) -> dict[int, object]:
    payload = decode_zcl_payload(METERING, ZclHeader(0x18, 0, 0x01), plaintext)
    return {int(r["attribute_id"]): r.get("value") for r in payload.records}


@pytest.mark.parametrize(
    ("use_case", "vector"),
    [
        (USE_CASES_BY_NAME["GCS13a"], "4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_RELIABLE_GPF"),
        (GCS13C, "4.1.2_GCS13c/GCS13c_4.1.2_SUCCESS_RELIABLE_GPF"),
    ],
)
def test_register_reads_come_from_the_mirror_as_at_the_last_half_hour(
    reference_dir: Path, gpf: Gpf, keys: Keys, use_case: UseCase, vector: str
) -> None:
    expected = _rtds(reference_dir, f"{vector}_RESPONSE_GBCS.HEX")
    reply = _send(gpf, keys, use_case, _rtds(reference_dir, f"{vector}_COMMAND_GBCS.HEX"))
    assert _shape(reply) == _shape(expected) and reply.date_time is not None
    mine = _values(_plaintext(reply, keys.supplier, keys.gpf.public_key()))
    theirs = _values(_rtds_plaintext(reference_dir, expected))
    assert mine.keys() == theirs.keys()
    assert mine[CURRENT_SUMMATION_DELIVERED if use_case is not GCS13C else 0x0100] == GAS.litres(
        datetime(2015, 1, 1, 9, 0, tzinfo=UTC)
    )


def test_the_gpf_lags_its_gsme_by_at_most_half_an_hour(
    reference_dir: Path, gpf: Gpf, keys: Keys, clock: list[datetime]
) -> None:
    gsme = Gsme(
        eui=GSME_EUI,
        ka_private_key=keys.gsme,
        ds_private_key=ec.generate_private_key(ec.SECP256R1()),
        acb_ka_public=keys.acb.public_key(),
        remote_parties=keys.parties(),
        clock=lambda: clock[0],
        load_profile=GAS.profile,
        epoch=GAS.epoch,
    )
    command = _rtds(
        reference_dir, "4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_RELIABLE_GPF_COMMAND_GBCS.HEX"
    )
    readings = []
    for counter, at in enumerate((NOW, NOW + timedelta(minutes=13)), start=1000):  # 09:17, 09:30
        clock[0] = at
        reply = _send(gpf, keys, USE_CASES_BY_NAME["GCS13a"], command, counter=counter)
        reading = _values(_plaintext(reply, keys.supplier, keys.gpf.public_key()))[0]
        assert isinstance(reading, int)
        readings.append(reading)
    assert readings[0] < gsme.registers.litres(NOW)  # the mirror is from 09:00
    assert readings[1] == gsme.registers.litres(NOW + timedelta(minutes=13))  # refreshed at 09:30


def test_daily_consumption_for_a_user_via_the_acb_has_the_rtds_layout(
    reference_dir: Path, gpf: Gpf, keys: Keys, clock: list[datetime]
) -> None:
    vector = "4.17_GCS61/GCS61_4.17_SUCCESS"
    command = _rtds(reference_dir, f"{vector}_COMMAND_GBCS.HEX")
    assert command.originator_title == ACB_EUI and command.other_info_extras[:8] == SUPPLIER_EUI
    clock[0] = datetime(2015, 1, 2, 0, 10, tzinfo=UTC)  # 11 whole days after the earliest asked
    reply = _send(gpf, keys, USE_CASES_BY_NAME["GCS61"], command, originator=ACB_EUI, counter=1301)
    expected = _rtds(reference_dir, f"{vector}_RESPONSE_GBCS.HEX")
    assert _shape(reply) == _shape(expected)
    assert reply.other_info_extras == expected.other_info_extras
    # the content is for the User the ACB acts for, not for the ACB
    mine = _plaintext(reply, keys.supplier, keys.gpf.public_key())
    theirs = _rtds_plaintext(reference_dir, expected)
    assert len(mine) == len(theirs) and mine[:11] == theirs[:11]
    start = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(
        seconds=int.from_bytes(mine[2:6], "little")
    )
    days = [int.from_bytes(mine[11 + 3 * i : 14 + 3 * i], "little") for i in range(11)]
    assert days == [
        GAS.drawn(start + timedelta(days=i), start + timedelta(days=i + 1)) for i in range(11)
    ]


def test_daily_consumption_not_yet_recorded_is_not_found_as_the_rtds(
    reference_dir: Path, gpf: Gpf, keys: Keys
) -> None:
    vector = "4.17_GCS61/GCS61_4.17_NOT_FOUND"
    reply = _send(
        gpf, keys, USE_CASES_BY_NAME["GCS61"], _rtds(reference_dir, f"{vector}_COMMAND_GBCS.HEX")
    )
    assert reply.payload == _rtds(reference_dir, f"{vector}_RESPONSE_GBCS.HEX").payload


def test_restoring_the_device_log_answers_as_the_rtds_and_survives_a_power_cycle(
    reference_dir: Path, gpf: Gpf, keys: Keys
) -> None:
    vector = "8.12.2_GCS59/GCS59_8.12.2_SUCCESS"
    reply = _send(
        gpf, keys, GCS59, _rtds(reference_dir, f"{vector}_COMMAND_GBCS.HEX"), originator=ACB_EUI
    )
    assert reply.payload == _rtds(reference_dir, f"{vector}_RESPONSE_GBCS.HEX").payload
    log = {bytes.fromhex("0011223344556677"): 5, bytes.fromhex("8899AABBCCDDEEFF"): 6}
    assert gpf.device_log == log
    state = msgpack.unpackb(msgpack.packb(gpf.nonvolatile_state(), use_bin_type=True), raw=False)
    fresh = Gpf(
        eui=GPF_EUI,
        ka_private_key=keys.gpf,
        ds_private_key=ec.generate_private_key(ec.SECP256R1()),
        acb_ka_public=keys.acb.public_key(),
        remote_parties={},
        clock=lambda: NOW,
    )
    fresh.restore_nonvolatile_state(state)
    assert fresh.device_log == log


def test_a_replay_and_an_untrusted_originator_are_refused(
    reference_dir: Path, gpf: Gpf, keys: Keys
) -> None:
    command = _rtds(
        reference_dir, "4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_RELIABLE_GPF_COMMAND_GBCS.HEX"
    )
    _send(gpf, keys, USE_CASES_BY_NAME["GCS13a"], command)
    with pytest.raises(DeviceRefusal) as replayed:
        _send(gpf, keys, USE_CASES_BY_NAME["GCS13a"], command)
    assert replayed.value.alert_code == ALERT_FAILED_AUTHENTICATION_OTHER
    with pytest.raises(DeviceRefusal) as stranger:
        _send(gpf, keys, USE_CASES_BY_NAME["GCS13a"], command, originator=b"\x90" * 8, counter=5)
    assert stranger.value.alert_code == ALERT_SOURCE_NOT_AUTHORISED


def test_meter_balance_read_answers_as_the_rtds(reference_dir: Path, gpf: Gpf, keys: Keys) -> None:
    vector = "4.18_GCS60a/GCS60a_4.18_SUCCESS_RELIABLE_GPF"
    reply = _send(gpf, keys, GCS60A, _rtds(reference_dir, f"{vector}_COMMAND_GBCS.HEX"))
    expected = _rtds(reference_dir, f"{vector}_RESPONSE_GBCS.HEX")
    assert reply.payload == expected.payload
    assert reply.date_time is not None and expected.date_time is not None
