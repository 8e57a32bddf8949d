"""The GSME model answers GBZ commands: responses match the RTDS GSME responses' payloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.cli import FolderKeys
from dccsim.gbcs.crypto import content_context, decrypt_content
from dccsim.gbcs.frames import (
    CRA_COMMAND,
    GeneralCiphering,
    GeneralSigning,
    decode_message,
    parse_hex_or_base64,
)
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, PayloadKind, UseCase, build_command
from dccsim.gbcs.zigbee import METERING, ZclHeader, decode_gbz, decode_zcl_payload
from emulators.device import (
    ALERT_FAILED_AUTHENTICATION_OTHER,
    ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE,
    DeviceRefusal,
    RemoteParty,
)
from emulators.gsme import (
    CURRENT_SUMMATION_DELIVERED,
    CURRENT_TIER_SUMMATIONS,
    DIVISOR,
    GCS13C,
    GCS60A,
    MULTIPLIER,
    UNIT_OF_MEASURE,
    ZCL_UNSUPPORTED_ATTRIBUTE,
    ZCL_UNSUPPORTED_CLUSTER_COMMAND,
    GasLoadProfile,
    Gsme,
)
from emulators.han import CS07
from tests.unit.gbcs_site import SUPPLIER_EUI, ReadKeys, mac_exchange

GSME_EUI = bytes.fromhex("00DB1234567890A1")
# CS07 is defined by the HAN model, not the shared table
# GCS21b as the RTDS vector carries it (a use case no model here handles)
GCS21B = UseCase(
    "GCS21b",
    "Read GSME Prepayment Configuration",
    0x00B5,
    CRA_COMMAND,
    PayloadKind.ZIGBEE,
    ("4.13",),
)
ALL_USE_CASES = {"GCS13c": GCS13C, "GCS60a": GCS60A, "CS07": CS07, "GCS21b": GCS21B}


@pytest.fixture
def keys() -> ReadKeys:
    return ReadKeys()


@pytest.fixture
def gsme(keys: ReadKeys) -> Gsme:
    return Gsme(
        eui=GSME_EUI,
        ka_private_key=keys.device,
        ds_private_key=ec.generate_private_key(ec.SECP256R1()),
        acb_ka_public=keys.acb.public_key(),
        remote_parties={SUPPLIER_EUI: RemoteParty(SUPPLIER_EUI, keys.supplier.public_key())},
        clock=lambda: datetime(2015, 1, 1, tzinfo=UTC),
    )


def _rtds_payload(reference_dir: Path, name: str) -> bytes:
    message = decode_message(
        parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / name).read_text())
    )
    frame = message.general_signing if isinstance(message, GeneralCiphering) else message
    return frame.payload


def _exchange(gsme: Gsme, keys: ReadKeys, use_case: str, payload: bytes) -> bytes:
    use = USE_CASES_BY_NAME.get(use_case) or ALL_USE_CASES[use_case]
    message = mac_exchange(gsme, keys, use, payload, device_title=GSME_EUI, counter=1000)
    return message.general_signing.payload


@pytest.mark.parametrize(
    ("use_case", "vector"),
    [
        ("GCS38", "11.2_GCS38/GCS38_11.2_SUCCESS"),
        ("GCS33", "7.4_GCS33/GCS33_7.4_SUCCESS"),
        ("GCS07", "3.1_GCS07/GCS07_3.1_SUCCESS"),
        ("GCS60a", "4.18_GCS60a/GCS60a_4.18_SUCCESS_UNRELIABLE_GSME"),
        ("GCS21j", "6.2.9_GCS21j/GCS21j_6.2.9_SUCCESS"),
    ],
)
def test_gsme_answers_the_rtds_command_with_the_rtds_response_payload(
    reference_dir: Path, gsme: Gsme, keys: ReadKeys, use_case: str, vector: str
) -> None:
    command = _rtds_payload(reference_dir, f"{vector}_COMMAND_GBCS.HEX")
    expected = _rtds_payload(reference_dir, f"{vector}_RESPONSE_GBCS.HEX")
    assert _exchange(gsme, keys, use_case, command) == expected


def test_display_message_is_kept(reference_dir: Path, gsme: Gsme, keys: ReadKeys) -> None:
    _exchange(
        gsme,
        keys,
        "GCS07",
        _rtds_payload(reference_dir, "3.1_GCS07/GCS07_3.1_SUCCESS_COMMAND_GBCS.HEX"),
    )
    assert gsme.supplier_message == "Reset"


def test_unknown_attribute_is_reported_unsupported(
    reference_dir: Path, gsme: Gsme, keys: ReadKeys
) -> None:
    del gsme.attributes[(METERING, 0x0206)]
    command = _rtds_payload(reference_dir, "11.2_GCS38/GCS38_11.2_SUCCESS_COMMAND_GBCS.HEX")
    (component,) = decode_gbz(_exchange(gsme, keys, "GCS38", command)).components
    assert component.payload.records[0]["status"] == ZCL_UNSUPPORTED_ATTRIBUTE


# -- consumption registers and profile data: same structure as the RTDS responses ------------


def _rtds_frame(reference_dir: Path, name: str) -> GeneralSigning:
    message = decode_message(
        parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / name).read_text())
    )
    return message.general_signing if isinstance(message, GeneralCiphering) else message


def _rtds_plaintexts(reference_dir: Path, name: str) -> list[bytes]:
    """The decrypted content of each encrypted component of an RTDS response."""
    frame = _rtds_frame(reference_dir, name)
    keys = FolderKeys(reference_dir / "gbcs" / "keystore")
    context = content_context(frame)
    private, public = (
        keys.ka_private(context.recipient_title),
        keys.ka_public(frame.originator_title),
    )
    assert private is not None and public is not None
    return [
        decrypt_content(
            c.encrypted_content,
            device_title=context.device_title,
            counter=context.counter,
            recipient_title=context.recipient_title,
            private_key=private,
            peer_public_key=public,
        )
        for c in decode_gbz(frame.payload).components
        if c.encrypted_content is not None
    ]


def _reply(
    gsme: Gsme, keys: ReadKeys, use_case: UseCase, payload: bytes, counter: int = 1000
) -> GeneralSigning:
    message = mac_exchange(gsme, keys, use_case, payload, device_title=GSME_EUI, counter=counter)
    return message.general_signing


def _plaintexts(frame: GeneralSigning, keys: ReadKeys) -> list[bytes]:
    context = content_context(frame)
    assert context.recipient_title == SUPPLIER_EUI
    return [
        decrypt_content(
            c.encrypted_content,
            device_title=context.device_title,
            counter=context.counter,
            recipient_title=context.recipient_title,
            private_key=keys.supplier,
            peer_public_key=keys.device.public_key(),
        )
        for c in decode_gbz(frame.payload).components
        if c.encrypted_content is not None
    ]


def _records(plaintext: bytes) -> tuple[dict[str, object], ...]:
    payload = decode_zcl_payload(METERING, ZclHeader(0x18, 0, 0x01), plaintext)
    assert payload.layout == "read-attributes-response" and not payload.rest
    return tuple(dict(r) for r in payload.records)


def _shape(frame: GeneralSigning) -> list[tuple[int, int, int, int]]:
    """A GBZ response's structure: per component control, cluster, frame control, command."""
    return [
        (c.control, c.cluster, c.header.frame_control, c.header.command)
        for c in decode_gbz(frame.payload).components
    ]


NOW = datetime(2015, 1, 1, 9, 17, tzinfo=UTC)
INSTALLED = datetime(2014, 12, 1, tzinfo=UTC)


@pytest.fixture
def metered(keys: ReadKeys) -> tuple[Gsme, list[datetime]]:
    """A GSME with a seeded load profile installed a month before NOW, on a settable clock."""
    clock = [NOW]
    gsme = Gsme(
        eui=GSME_EUI,
        ka_private_key=keys.device,
        ds_private_key=ec.generate_private_key(ec.SECP256R1()),
        acb_ka_public=keys.acb.public_key(),
        remote_parties={SUPPLIER_EUI: RemoteParty(SUPPLIER_EUI, keys.supplier.public_key())},
        clock=lambda: clock[0],
        load_profile=GasLoadProfile.from_seed(7),
        epoch=INSTALLED,
    )
    return gsme, clock


@pytest.mark.parametrize(
    ("use_case", "vector"),
    [
        (USE_CASES_BY_NAME["GCS13a"], "4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_UNRELIABLE"),
        (GCS13C, "4.1.2_GCS13c/GCS13c_4.1.2_SUCCESS_RELIABLE_GSME"),
    ],
)
def test_register_reads_have_the_rtds_structure_and_the_live_register(
    reference_dir: Path,
    metered: tuple[Gsme, list[datetime]],
    keys: ReadKeys,
    use_case: UseCase,
    vector: str,
) -> None:
    gsme, _ = metered
    command = _rtds_payload(reference_dir, f"{vector}_COMMAND_GBCS.HEX")
    expected = _rtds_frame(reference_dir, f"{vector}_RESPONSE_GBCS.HEX")
    reply = _reply(gsme, keys, use_case, command)
    assert _shape(reply) == _shape(expected)
    assert reply.date_time is not None and expected.date_time is not None
    (mine,) = _plaintexts(reply, keys)
    (theirs,) = _rtds_plaintexts(reference_dir, f"{vector}_RESPONSE_GBCS.HEX")
    got, want = _records(mine), _records(theirs)
    # same attributes, statuses and types; unit, multiplier and divisor as the RTDS meter's
    assert [(r["attribute_id"], r["status"], r.get("type")) for r in got] == [
        (r["attribute_id"], r["status"], r.get("type")) for r in want
    ]
    fixed = {UNIT_OF_MEASURE, MULTIPLIER, DIVISOR}
    assert [r for r in got if r["attribute_id"] in fixed] == [
        r for r in want if r["attribute_id"] in fixed
    ]
    values = {r["attribute_id"]: r["value"] for r in got}
    total = gsme.registers.litres(NOW)
    assert total > GasLoadProfile.from_seed(7).start_litres
    if use_case is GCS13C:
        assert [values[a] for a in CURRENT_TIER_SUMMATIONS] == [total, 0, 0, 0]
    else:
        assert values[CURRENT_SUMMATION_DELIVERED] == total


def test_the_register_grows_with_the_clock(
    reference_dir: Path, metered: tuple[Gsme, list[datetime]], keys: ReadKeys
) -> None:
    gsme, clock = metered
    command = _rtds_payload(
        reference_dir, "4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_UNRELIABLE_COMMAND_GBCS.HEX"
    )
    readings = []
    for counter, at in enumerate((NOW, NOW + timedelta(hours=6)), start=1000):
        clock[0] = at
        (plaintext,) = _plaintexts(
            _reply(gsme, keys, USE_CASES_BY_NAME["GCS13a"], command, counter), keys
        )
        reading = {r["attribute_id"]: r["value"] for r in _records(plaintext)}[0]
        assert isinstance(reading, int)
        readings.append(reading)
    drawn = readings[1] - readings[0]
    profile = GasLoadProfile.from_seed(7)
    assert drawn == gsme.registers.drawn(NOW, NOW + timedelta(hours=6)) > 0
    # six hours of a household's gas: within the profile's range of mean flows
    assert 6 * 0.2 * profile.mean_litres_per_hour < drawn < 6 * 4 * profile.mean_litres_per_hour


def test_profile_data_has_the_rtds_layout_and_sums_to_the_register(
    reference_dir: Path, metered: tuple[Gsme, list[datetime]], keys: ReadKeys
) -> None:
    gsme, clock = metered
    clock[0] = datetime(2015, 1, 3, 0, 10, tzinfo=UTC)  # after the 97 half hours asked for
    vector = "4.8.1_GCS17/GCS17_4.8.1_SUCCESS"
    command = _rtds_payload(reference_dir, f"{vector}_COMMAND_GBCS.HEX")
    reply = _reply(gsme, keys, USE_CASES_BY_NAME["GCS17"], command)
    expected = _rtds_frame(reference_dir, f"{vector}_RESPONSE_GBCS.HEX")
    assert _shape(reply) == _shape(expected) and reply.date_time is None
    (mine,) = _plaintexts(reply, keys)
    (theirs,) = _rtds_plaintexts(reference_dir, f"{vector}_RESPONSE_GBCS.HEX")
    assert len(mine) == len(theirs)
    assert mine[:11] == theirs[:11]  # sample id, start time, type, interval, number of samples
    count = int.from_bytes(mine[9:11], "little")
    samples = [int.from_bytes(mine[11 + 3 * i : 14 + 3 * i], "little") for i in range(count)]
    start = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(
        seconds=int.from_bytes(mine[2:6], "little")
    )
    assert sum(samples) == gsme.registers.drawn(start, start + count * timedelta(minutes=30))
    assert len(set(samples)) > 3  # the daily shape, not a flat line


def test_profile_data_not_yet_recorded_is_not_found_as_the_rtds(
    reference_dir: Path, metered: tuple[Gsme, list[datetime]], keys: ReadKeys
) -> None:
    gsme, clock = metered
    vector = "4.8.1_GCS17/GCS17_4.8.1_NOT_FOUND"
    # the RTDS asks from 2013-01-01; a meter whose clock is just past it has no whole interval
    clock[0] = datetime(2013, 1, 1, 0, 10, tzinfo=UTC)
    command = _rtds_payload(reference_dir, f"{vector}_COMMAND_GBCS.HEX")
    reply = _reply(gsme, keys, USE_CASES_BY_NAME["GCS17"], command)
    assert reply.payload == _rtds_payload(reference_dir, f"{vector}_RESPONSE_GBCS.HEX")


def test_a_gbz_use_case_without_a_handler_gets_a_zcl_default_response(
    reference_dir: Path, gsme: Gsme, keys: ReadKeys
) -> None:
    # GCS21b (4.13, the prepayment configuration read): the model has no handler for it
    command = _rtds_payload(reference_dir, "4.13_GCS21b/GCS21b_4.13_SUCCESS_COMMAND_GBCS.HEX")
    components = decode_gbz(_exchange(gsme, keys, "GCS21b", command)).components
    assert len(components) == len(decode_gbz(command).components) and components[-1].control == 1
    assert {(c.header.command, c.payload.values["status"]) for c in components} == {
        (0x0B, ZCL_UNSUPPORTED_CLUSTER_COMMAND)
    }


def test_a_replayed_counter_and_a_bad_mac_are_refused(
    reference_dir: Path, gsme: Gsme, keys: ReadKeys
) -> None:
    payload = _rtds_payload(reference_dir, "11.2_GCS38/GCS38_11.2_SUCCESS_COMMAND_GBCS.HEX")
    _exchange(gsme, keys, "GCS38", payload)
    with pytest.raises(DeviceRefusal) as replayed:
        _exchange(gsme, keys, "GCS38", payload)  # counter 1000 again
    assert replayed.value.alert_code == ALERT_FAILED_AUTHENTICATION_OTHER
    forged = build_command(
        USE_CASES_BY_NAME["GCS38"],
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=2000,
        payload=payload,
        acb_ka_private=ec.generate_private_key(ec.SECP256R1()),  # not the ACB
        device_ka_public=keys.device.public_key(),
    )
    with pytest.raises(DeviceRefusal) as bad_mac:
        gsme.handle(forged)
    assert bad_mac.value.alert_code == ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE
    assert gsme.refusals == 2


def test_method_b_join_and_join_details_answer_as_the_rtds(
    reference_dir: Path, gsme: Gsme, keys: ReadKeys
) -> None:
    join = _rtds_payload(reference_dir, "8.7.2_CS03B/CS03B_8.7.2_SUCCESS_COMMAND_GBCS.HEX")
    assert _exchange(gsme, keys, "CS03B", join) == _rtds_payload(
        reference_dir, "8.7.2_CS03B/CS03B_8.7.2_SUCCESS_RESPONSE_GBCS.HEX"
    )
    assert gsme.joined == {bytes.fromhex("00DB12345678909C"): 3}
    command = build_command(
        CS07,
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=1001,
        payload=_rtds_payload(reference_dir, "8.9_CS07/CS07_8.9_SUCCESS_COMMAND_GBCS.HEX"),
        acb_ka_private=keys.acb,
        device_ka_public=keys.device.public_key(),
    )
    details = decode_message(gsme.handle(command))
    assert isinstance(details, GeneralCiphering)
    # one device, laid out as each of the RTDS response's entries
    assert details.general_signing.payload.hex() == "3014020100300f300d040800db12345678909c020103"


def test_valve_message_and_joins_survive_a_power_cycle(
    reference_dir: Path, gsme: Gsme, keys: ReadKeys
) -> None:
    _exchange(
        gsme,
        keys,
        "GCS07",
        _rtds_payload(reference_dir, "3.1_GCS07/GCS07_3.1_SUCCESS_COMMAND_GBCS.HEX"),
    )
    gsme.attributes[(METERING, 0x0014)] = (0x30, 0)  # valve closed
    gsme.joined[b"\x01" * 8] = 4
    state = msgpack.unpackb(msgpack.packb(gsme.nonvolatile_state(), use_bin_type=True), raw=False)
    fresh = Gsme(
        eui=GSME_EUI,
        ka_private_key=keys.device,
        ds_private_key=ec.generate_private_key(ec.SECP256R1()),
        acb_ka_public=keys.acb.public_key(),
        remote_parties={},
        clock=lambda: NOW,
    )
    fresh.restore_nonvolatile_state(state)
    assert fresh.supplier_message == "Reset"
    assert fresh.attributes[(METERING, 0x0014)] == (0x30, 0)
    assert fresh.joined == {b"\x01" * 8: 4}


def test_a_scripted_fault_is_reported_as_the_rtds_error_response(
    reference_dir: Path, metered: tuple[Gsme, list[datetime]], keys: ReadKeys
) -> None:
    gsme, _ = metered
    vector = "4.1.1_GCS13a/GCS13a_4.1.1_ERROR"
    gsme.script_fault(USE_CASES_BY_NAME["GCS13a"], 1)
    command = _rtds_payload(reference_dir, f"{vector}_COMMAND_GBCS.HEX")
    reply = _reply(gsme, keys, USE_CASES_BY_NAME["GCS13a"], command)
    expected = _rtds_frame(reference_dir, f"{vector}_RESPONSE_GBCS.HEX")
    assert _shape(reply) == _shape(expected)
    (mine,) = _plaintexts(reply, keys)
    (theirs,) = _rtds_plaintexts(reference_dir, f"{vector}_RESPONSE_GBCS.HEX")
    failed = [r for r in _records(theirs) if r["status"] != 0]
    assert failed and all(r in _records(mine) for r in failed)  # hardware failure (0xC0)
    assert {r["status"] for r in _records(mine)} == {0xC0}
    # the fault was one-shot: the next read succeeds
    (plaintext,) = _plaintexts(_reply(gsme, keys, USE_CASES_BY_NAME["GCS13a"], command, 1001), keys)
    assert {r["status"] for r in _records(plaintext)} == {0}
