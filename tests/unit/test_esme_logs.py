"""The ESME's protected log reads, ECS21a (4.6.1), ECS22b (4.8.1) and ECS66 (4.17): responses
laid out as the RTDS ones (learned by decrypting them with the supplier's KA key), data derived
from the meter's load profile and clock."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.commands import CommandContext, command_payload
from dccsim.gbcs.dlms import AccessResponse, CompactArray, Data, decode_apdu
from dccsim.gbcs.frames import GeneralCiphering, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import (
    USE_CASES_BY_NAME,
    build_protected_read_response,
    read_protected_content,
)
from emulators.device import RemoteParty
from emulators.esme import GBCS_EPOCH, Esme, LoadProfile
from tests.unit.gbcs_site import SUPPLIER_EUI, ReadKeys, mac_exchange, rtds_esme_stand_in

ESME_EUI = bytes.fromhex("00DB1234567890A0")
NOW = datetime(2015, 1, 1, 12, 10, tzinfo=UTC)
EPOCH = datetime(2014, 1, 1, tzinfo=UTC)
PROFILE = LoadProfile(start_import_wh=1_000_000, mean_power_w=600.0)  # 300 Wh a half hour

# (use case, RTDS vector prefix, twin element)
VECTORS = [
    ("ECS21a", "4.6.1_ECS21a/ECS21a_4.6.1_SINGLE_SUCCESS", False),
    ("ECS21a", "4.6.1_ECS21a/ECS21a_4.6.1_TWIN_SUCCESS", True),
    ("ECS22b", "4.8.1_ECS22b/ECS22b_4.8.1_SINGLE_SUCCESS", False),
    ("ECS22b", "4.8.1_ECS22b/ECS22b_4.8.1_TWIN_SUCCESS", True),
    ("ECS66", "4.17_ECS66/ECS66_4.17_SUCCESS", False),
]


@pytest.fixture
def keys() -> ReadKeys:
    return ReadKeys()


def _esme(keys: ReadKeys, profile: LoadProfile = PROFILE) -> Esme:
    return Esme(
        eui=ESME_EUI,
        ka_private_key=keys.device,
        ds_private_key=ec.generate_private_key(ec.SECP256R1()),
        acb_ka_public=keys.acb.public_key(),
        remote_parties={SUPPLIER_EUI: RemoteParty(SUPPLIER_EUI, keys.supplier.public_key())},
        clock=lambda: NOW,
        load_profile=profile,
        epoch=EPOCH,
    )


def _vector(reference_dir: Path, prefix: str, kind: str) -> GeneralCiphering:
    path = reference_dir / "gbcs" / "rtds" / f"{prefix}_{kind}_GBCS.HEX"
    message = decode_message(parse_hex_or_base64(path.read_text()))
    assert isinstance(message, GeneralCiphering)
    return message


def _ask(
    esme: Esme, keys: ReadKeys, use_case: str, payload: bytes, counter: int
) -> GeneralCiphering:
    use = USE_CASES_BY_NAME[use_case]
    return mac_exchange(esme, keys, use, payload, device_title=ESME_EUI, counter=counter)


def _entries(
    esme: Esme, keys: ReadKeys, use_case: str, start: datetime, end: datetime, counter: int = 1
) -> tuple[CompactArray, list[tuple[int, ...]]]:
    context = CommandContext(
        counter, SUPPLIER_EUI, ESME_EUI, {"start_date_time": start, "end_date_time": end}
    )
    message = _ask(esme, keys, use_case, command_payload(use_case, context), counter)
    content = read_protected_content(
        message, recipient_ka_private=keys.supplier, device_ka_public=keys.device.public_key()
    )
    array = content.items[0].value
    assert isinstance(array, CompactArray)
    return array, [tuple(_flatten(element)) for element in array.elements()]


def _flatten(value: Data) -> list[int]:
    if isinstance(value.value, tuple):
        return [n for member in value.value for n in _flatten(member)]
    return [value.integer]


def _seconds(when: datetime) -> int:
    return int((when - GBCS_EPOCH).total_seconds())


@pytest.mark.parametrize(("use_case", "prefix", "twin"), VECTORS)
def test_response_to_the_rtds_command_has_the_rtds_layout(
    reference_dir: Path, keys: ReadKeys, use_case: str, prefix: str, twin: bool
) -> None:
    """Same message code, counter, no header date-time, protection parameters and the content's
    compact-array type description as the RTDS response."""
    command = _vector(reference_dir, prefix, "COMMAND").general_signing
    expected = _vector(reference_dir, prefix, "RESPONSE")
    esme = _esme(keys, LoadProfile(twin_element=twin))
    ours = _ask(esme, keys, use_case, command.payload, command.originator_counter)
    header, theirs = ours.general_signing, expected.general_signing
    assert (header.cra_flag, header.message_code, header.originator_counter) == (
        theirs.cra_flag,
        theirs.message_code,
        theirs.originator_counter,
    )
    assert header.date_time is None and theirs.date_time is None
    response, reference = decode_apdu(header.payload), decode_apdu(theirs.payload)
    assert isinstance(response, AccessResponse) and isinstance(reference, AccessResponse)
    assert response.invoke_id_and_priority == reference.invoke_id_and_priority
    assert response.results == reference.results
    assert response.data[0].items[0] == reference.data[0].items[0]
    content = read_protected_content(
        ours, recipient_ka_private=keys.supplier, device_ka_public=keys.device.public_key()
    )
    supplier, rtds_esme = rtds_esme_stand_in(reference_dir)
    reference_content = read_protected_content(
        expected, recipient_ka_private=supplier, device_ka_public=rtds_esme
    )
    ours_array, their_array = content.items[0].value, reference_content.items[0].value
    assert isinstance(ours_array, CompactArray) and isinstance(their_array, CompactArray)
    assert ours_array.type_description == their_array.type_description


@pytest.mark.parametrize(("use_case", "prefix", "twin"), VECTORS)
def test_response_builder_reproduces_the_rtds_response(
    reference_dir: Path, use_case: str, prefix: str, twin: bool
) -> None:
    """The vector's own content, encrypted and MAC'd again, is the vector byte for byte
    (static-static ECDH: the supplier's private key and the ESME's public key agree the same
    keys as the ESME's private key and the supplier's public key)."""
    supplier, esme = rtds_esme_stand_in(reference_dir)
    expected = _vector(reference_dir, prefix, "RESPONSE")
    content = read_protected_content(expected, recipient_ka_private=supplier, device_ka_public=esme)
    rebuilt = build_protected_read_response(
        command=_vector(reference_dir, prefix, "COMMAND"),
        content=content,
        date_time=None,
        device_ka_private=supplier,
        recipient_ka_public=esme,
    )
    assert rebuilt == expected.encode()


def test_profile_data_is_each_half_hours_import(keys: ReadKeys) -> None:
    start = datetime(2014, 12, 31, tzinfo=UTC)
    _, entries = _entries(_esme(keys), keys, "ECS22b", start, start + timedelta(days=1))
    assert len(entries) == 49  # both ends included, as the RTDS response
    assert entries[0][0] == _seconds(start)
    assert {entry[1] for entry in entries} == {300}
    assert [b[0] - a[0] for a, b in itertools.pairwise(entries)] == [1800] * 48


def test_twin_element_profile_data_carries_the_second_element(keys: ReadKeys) -> None:
    esme = _esme(keys, LoadProfile(mean_power_w=600.0, twin_element=True, secondary_share=0.25))
    start = datetime(2014, 12, 31, tzinfo=UTC)
    _, entries = _entries(esme, keys, "ECS22b", start, start + timedelta(hours=1))
    assert [entry[1:] for entry in entries] == [(300, 75)] * 3


def test_profile_data_stops_at_the_meters_clock(keys: ReadKeys) -> None:
    start = datetime(2015, 1, 1, 11, tzinfo=UTC)
    _, entries = _entries(_esme(keys), keys, "ECS22b", start, datetime(2099, 1, 1, tzinfo=UTC))
    assert [entry[0] for entry in entries] == [
        _seconds(start + timedelta(minutes=30 * n)) for n in range(3)
    ]  # 11:00, 11:30, 12:00; NOW is 12:10


def test_profile_data_follows_a_clock_set_by_ecs70(keys: ReadKeys) -> None:
    esme = _esme(keys)
    esme.clock_offset = timedelta(hours=-1)
    start = datetime(2015, 1, 1, 10, tzinfo=UTC)
    _, entries = _entries(esme, keys, "ECS22b", start, datetime(2099, 1, 1, tzinfo=UTC))
    assert entries[-1][0] == _seconds(datetime(2015, 1, 1, 11, tzinfo=UTC))


def test_daily_read_log_holds_the_registers_at_each_midnight(keys: ReadKeys) -> None:
    esme = _esme(keys)
    start = datetime(2014, 3, 9, tzinfo=UTC)
    _array, entries = _entries(esme, keys, "ECS21a", start, start + timedelta(days=2))
    assert len(entries) == 3
    for n, entry in enumerate(entries):
        midnight = start + timedelta(days=n)
        total = esme.registers(midnight).active_import
        assert entry[:3] == (_seconds(midnight), total, total)  # all on TOU register 1
        assert len(entry) == 2 + 48 + 32 and not any(entry[3:])


def test_daily_consumption_is_each_days_import(keys: ReadKeys) -> None:
    start = datetime(2014, 12, 1, 9, tzinfo=UTC)
    end = datetime(2014, 12, 5, 11, 5, tzinfo=UTC)
    _, entries = _entries(_esme(keys), keys, "ECS66", start, end)
    assert entries == [
        (_seconds(datetime(2014, 12, day, tzinfo=UTC)), 14_400) for day in range(2, 6)
    ]


def test_log_before_the_meter_kept_it_is_empty(keys: ReadKeys) -> None:
    start = datetime(2012, 1, 1, tzinfo=UTC)
    array, entries = _entries(_esme(keys), keys, "ECS66", start, start + timedelta(days=5))
    assert entries == [] and array.contents == b""
