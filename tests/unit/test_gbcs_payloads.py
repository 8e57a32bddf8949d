"""GBZ (ZigBee) and DER payloads of the RTDS vectors: decode to fields, re-encode byte-identical."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dccsim.gbcs.der import Tlv, decode_asn1, decode_with, encode_with
from dccsim.gbcs.describe import describe
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import (
    CRA_ALERT,
    GeneralCiphering,
    GeneralSigning,
    decode_message,
    parse_hex_or_base64,
)
from dccsim.gbcs.zigbee import (
    GbzComponent,
    GbzPayload,
    ZclHeader,
    ZclPayload,
    decode_gbz,
    decode_zcl_payload,
    encode_zcl_payload,
)

DER_TAGS = (0x30, 0x02, 0x04, 0x05)


def _frames(reference_dir: Path) -> list[tuple[Path, GeneralSigning]]:
    out = []
    for path in sorted((reference_dir / "gbcs" / "rtds").rglob("*.HEX")):
        message = decode_message(parse_hex_or_base64(path.read_text()))
        frame = message.general_signing if isinstance(message, GeneralCiphering) else message
        out.append((path, frame))
    return out


def _frame(reference_dir: Path, name: str) -> GeneralSigning:
    path = reference_dir / "gbcs" / "rtds" / name
    message = decode_message(parse_hex_or_base64(path.read_text()))
    return message.general_signing if isinstance(message, GeneralCiphering) else message


def test_every_gbz_payload_round_trips_byte_identical(reference_dir: Path) -> None:
    counts: Counter[str] = Counter()
    for path, frame in _frames(reference_dir):
        if frame.payload[:2] != b"\x01\x09":
            continue
        gbz = decode_gbz(frame.payload, alert=frame.cra_flag == CRA_ALERT)
        assert gbz.encode() == frame.payload, path.name
        counts["payloads"] += 1
        for component in gbz.components:
            counts["components"] += 1
            if component.payload.layout is not None and not component.payload.rest:
                counts["named"] += 1
    assert counts["payloads"] == 228
    assert counts["named"] > 0


def test_every_der_payload_decodes_to_named_fields_and_round_trips(reference_dir: Path) -> None:
    seen = named = 0
    for path, frame in _frames(reference_dir):
        if frame.payload[0] not in DER_TAGS:
            continue
        seen += 1
        decoded = decode_asn1(
            frame.payload, message_code=frame.message_code, cra_flag=frame.cra_flag
        )
        assert decoded.tree.encode() == frame.payload, path.name
        assert decoded.encode() == frame.payload, path.name
        named += decoded.schema is not None
    assert seen == 133
    assert named == 133


def test_change_payment_mode_command_has_its_zse_fields(reference_dir: Path) -> None:
    frame = _frame(reference_dir, "1.6_GCS02/GCS02_1.6_FUTURE_DATED_SUCCESS_COMMAND_GBCS.HEX")
    (component,) = decode_gbz(frame.payload).components
    assert component.cluster == 0x0705
    assert component.payload.layout == "change-payment-mode"
    assert component.payload.values == {
        "provider_id": 0,
        "issuer_event_id": 0x1C374A80,
        "implementation_date_time": 0x38818890,
        "proposed_payment_control_configuration": 0x0C94,
        "cut_off_value": -1,
    }


def test_gbz_component_rebuilds_from_fields_alone(reference_dir: Path) -> None:
    frame = _frame(reference_dir, "4.8.1_GCS17/GCS17_4.8.1_SUCCESS_COMMAND_GBCS.HEX")
    header = ZclHeader(0x01, 0x00, 0x08)
    fields = ZclPayload(
        "get-sampled-data",
        {
            "sample_id": 0,
            "earliest_sample_time": 0x1C34A780,
            "sample_type": 0,
            "number_of_samples": 0x61,
        },
    )
    rebuilt = GbzPayload(1, (GbzComponent(0x01, 0x0702, header, fields),))
    assert rebuilt.encode() == frame.payload


def test_publish_event_log_response_lists_its_events(reference_dir: Path) -> None:
    frame = _frame(reference_dir, "6.13_CS10a/CS10a_6.13_SUCCESS_RESPONSE_GBCS.HEX")
    (component,) = decode_gbz(frame.payload).components
    assert component.payload.layout == "publish-event-log"
    assert component.payload.rest == b""
    assert component.payload.records[0]["event_id"] == 0x8F1F
    assert len(component.payload.records) > 1


def test_encrypted_gbz_component_keeps_its_ciphertext(reference_dir: Path) -> None:
    frame = _frame(reference_dir, "4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_UNRELIABLE_RESPONSE_GBCS.HEX")
    (component,) = decode_gbz(frame.payload).components
    assert component.encrypted
    assert component.encrypted_content is not None
    assert component.encrypted_content[:5] == bytes.fromhex("3100000000")


def test_read_attributes_response_gives_typed_values(reference_dir: Path) -> None:
    frame = _frame(reference_dir, "11.2_GCS38/GCS38_11.2_SUCCESS_RESPONSE_GBCS.HEX")
    (component,) = decode_gbz(frame.payload).components
    assert component.payload.records == (
        {"attribute_id": 0x0206, "status": 0, "type": 0x41, "value": bytes.fromhex("0123abcd")},
    )


def test_gbz_future_dated_alert_names_the_scheduled_command(reference_dir: Path) -> None:
    frame = _frame(
        reference_dir,
        "1.6_GCS02/GCS02_1.6_8F66_FUTURE_DATED_SUCCESS_ALERT_CHANGE_PAYMENT_MODE_GBCS.HEX",
    )
    alert = decode_gbz(frame.payload, alert=True).alert
    assert alert is not None and alert.future_dated is not None
    assert alert.alert_code == 0x8F66
    assert alert.future_dated.message_code == 0x006C
    assert alert.future_dated.originator_counter == 1001


def test_activate_firmware_command_fields_rebuild_the_payload(reference_dir: Path) -> None:
    frame = _frame(reference_dir, "11.3_CS06/CS06_11.3_FUTURE_DATED_SUCCESS_COMMAND_GBCS.HEX")
    decoded = decode_asn1(frame.payload, message_code=frame.message_code, cra_flag=1)
    assert decoded.schema is not None
    fields = decoded.fields
    assert isinstance(fields, dict)
    assert fields["originator_counter"] == 1001
    assert fields["execution_date_time"] == "20300115090000Z"
    assert encode_with(decoded.schema, dict(fields)) == frame.payload


def test_join_command_names_the_other_device(reference_dir: Path) -> None:
    frame = _frame(reference_dir, "8.7.1_CS03A1/CS03A1_8.7.1_SUCCESS_COMMAND_GBCS.HEX")
    decoded = decode_asn1(frame.payload, message_code=frame.message_code, cra_flag=1)
    assert decoded.schema is not None and decoded.schema.name == "join_device"
    assert isinstance(decoded.fields, dict)
    assert decoded.fields["other_device_entity_identifier"] == bytes.fromhex("00DB12345678909A")


def test_update_security_credentials_keeps_certificates_as_der(reference_dir: Path) -> None:
    frame = _frame(
        reference_dir,
        "6.15.1_CS02bSupplierBySupplier/CS02bSupplierBySupplier_6.15.1_IMMEDIATE_SUCCESS_COMMAND_GBCS.HEX",
    )
    decoded = decode_asn1(frame.payload, message_code=frame.message_code, cra_flag=1)
    assert decoded.schema is not None
    assert isinstance(decoded.fields, dict)
    control = decoded.fields["authorising_remote_party_control"]
    assert control["originator_counter"] == 1000
    for certificate in decoded.fields["certification_path_certificates"]:
        assert Tlv.decode(certificate).tag == 0x30


def test_non_minimal_der_lengths_survive_re_encoding(reference_dir: Path) -> None:
    frame = _frame(reference_dir, "6.15.1_CS02bNOByNO/CS02bNOByNO_6.15.1_SUCCESS_RESPONSE_GBCS.HEX")
    assert frame.payload[:4] == bytes.fromhex("30820083")  # 0x83 needs only 81 83
    assert Tlv.decode(frame.payload).encode() == frame.payload


def test_describe_shows_zigbee_and_asn1_fields(reference_dir: Path) -> None:
    path = reference_dir / "gbcs/rtds/3.1_GCS07/GCS07_3.1_SUCCESS_COMMAND_GBCS.HEX"
    report = describe(parse_hex_or_base64(path.read_text()))
    (component,) = report["payload"]["components"]
    assert report["payload"]["kind"] == "zigbee"
    assert component["fields"]["message"] == "Reset"
    path = reference_dir / "gbcs/rtds/11.3_CS06/CS06_11.3_IMMEDIATE_SUCCESS_RESPONSE_GBCS.HEX"
    report = describe(parse_hex_or_base64(path.read_text()))
    assert report["payload"]["kind"] == "asn1"
    assert report["payload"]["fields"]["firmware_version"] == "0123abce"


def test_zcl_payload_without_layout_is_kept_whole() -> None:
    header = ZclHeader(0x09, 0x00, 0x7F)
    payload = decode_zcl_payload(0x0700, header, b"\x01\x02\x03")
    assert payload.layout is None
    assert encode_zcl_payload(0x0700, header, payload) == b"\x01\x02\x03"


@pytest.mark.parametrize(
    "data", [b"", b"\x01", b"\x01\x09", b"\x02\x09\x00", b"\x01\x09\x01\x01\x07\x02\x00\x09\x00"]
)
def test_malformed_gbz_raises_gbcs_error(data: bytes) -> None:
    with pytest.raises(GbcsError):
        decode_gbz(data)


@pytest.mark.parametrize(
    "data", [b"", b"\x30", b"\x30\x05\x02", b"\x1f\x01\x00", b"\x02\x01\x00\x00"]
)
def test_malformed_der_raises_gbcs_error(data: bytes) -> None:
    with pytest.raises(GbcsError):
        Tlv.decode(data)


def test_der_integer_must_be_minimal() -> None:
    from dccsim.gbcs.der import integer

    with pytest.raises(GbcsError):
        decode_with(integer("x"), bytes.fromhex("02020001"))


@given(st.binary(max_size=200))
def test_gbz_decoding_garbage_raises_only_gbcs_error(data: bytes) -> None:
    for alert in (False, True):
        try:
            gbz = decode_gbz(b"\x01\x09" + data, alert=alert)
        except GbcsError:
            continue
        assert gbz.encode() == b"\x01\x09" + data


@given(st.binary(max_size=200))
def test_der_decoding_garbage_raises_only_gbcs_error(data: bytes) -> None:
    try:
        tree = Tlv.decode(data)
    except GbcsError:
        return
    assert tree.encode() == data
