"""Alert frames rebuilt against the RTDS ALERT vectors, and what describe_alert names."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import dlms
from dccsim.gbcs.alerts import (
    MESSAGE_CODE_CRITICAL_ALERT,
    MESSAGE_CODE_FUTURE_DATED_DLMS,
    MESSAGE_CODE_NON_CRITICAL_ALERT,
    DlmsFutureDatedTarget,
    alert_notification,
    build_alert,
    describe_alert,
    future_dated_notification,
)
from dccsim.gbcs.crypto import verify_frame_signature
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message, parse_hex_or_base64

ESME = bytes.fromhex("00DB1234567890A0")
CHF = bytes.fromhex("00DB1234567890A2")
ACB = bytes.fromhex("90B3D51F30000002")
SUPPLIER = bytes.fromhex("90B3D51F30010000")
RTDS_DATE = bytes.fromhex("07DF0101FF000000008000FF")  # 2015-01-01 00:00, as the vectors write
FUTURE_DATE = bytes.fromhex("07EE010FFF090000008000FF")


def _vector(reference_dir: Path, name: str) -> bytes:
    return parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / name).read_text())


def _private(reference_dir: Path, eui: bytes) -> ec.EllipticCurvePrivateKey:
    data = (reference_dir / "gbcs" / "keystore" / f"{eui.hex()}-ka.key").read_bytes()
    key = (
        serialization.load_pem_private_key(data, None)
        if data.startswith(b"-----")
        else serialization.load_der_private_key(data, None)
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _public(reference_dir: Path, eui: bytes, usage: str) -> ec.EllipticCurvePublicKey:
    path = reference_dir / "gbcs" / "keystore" / f"{eui.hex()}-{usage}.pem"
    key = x509.load_pem_x509_certificate(path.read_bytes()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def test_maced_general_non_critical_alert_rebuilds_byte_for_byte(reference_dir: Path) -> None:
    expected = _vector(reference_dir, "NA_GNCA-DLMS/GNCA-DLMS_NA_810E_ALERT_GBCS.HEX")
    built = build_alert(
        device_title=ESME,
        recipient_title=SUPPLIER,
        counter=2000,
        message_code=MESSAGE_CODE_NON_CRITICAL_ALERT,
        payload=alert_notification(2000, 0x810E, RTDS_DATE),
        # static ECDH: the recipient's KA key with the device's certificate gives the same MAC
        mac_private=_private(reference_dir, SUPPLIER),
        mac_peer_public=_public(reference_dir, ESME, "ka"),
    )
    assert built == expected


def test_maced_chf_alert_with_fields_rebuilds_byte_for_byte(reference_dir: Path) -> None:
    expected = _vector(reference_dir, "NA_DBCH06/DBCH06_NA_8F20_ALERT_GBCS.HEX")
    built = build_alert(
        device_title=CHF,
        recipient_title=ACB,
        counter=4000,
        message_code=0x0110,
        payload=alert_notification(
            4000, 0x8F20, RTDS_DATE, dlms.octet_string(bytes.fromhex("00DB1234567890A1"))
        ),
        mac_private=_private(reference_dir, ACB),
        mac_peer_public=_public(reference_dir, CHF, "ka"),
    )
    assert built == expected


def test_signed_critical_alert_signs_the_vector_bytes(reference_dir: Path) -> None:
    vector = decode_message(_vector(reference_dir, "NA_GCA-DLMS/GCA-DLMS_NA_8F30_ALERT_GBCS.HEX"))
    assert isinstance(vector, GeneralSigning)
    key = ec.generate_private_key(ec.SECP256R1())
    built = decode_message(
        build_alert(
            device_title=ESME,
            recipient_title=SUPPLIER,
            counter=2000,
            message_code=MESSAGE_CODE_CRITICAL_ALERT,
            payload=alert_notification(2000, 0x8F30, RTDS_DATE),
            device_ds_private=key,
        )
    )
    assert isinstance(built, GeneralSigning)
    assert built.signed_bytes() == vector.signed_bytes()
    assert verify_frame_signature(built, key.public_key())
    assert verify_frame_signature(vector, _public(reference_dir, ESME, "ds"))


def test_dlms_future_dated_payload_rebuilds_the_vector(reference_dir: Path) -> None:
    name = "1.6_ECS02/ECS02_1.6_8F66_FUTURE_DATED_TWIN_SUCCESS_ALERT_PAYMENT_MODE_GBCS.HEX"
    vector = decode_message(_vector(reference_dir, name))
    assert isinstance(vector, GeneralSigning)
    assert vector.message_code == MESSAGE_CODE_FUTURE_DATED_DLMS
    target = DlmsFutureDatedTarget(0x001A, 1005, 111, bytes.fromhex("0001130000FF"), 13)
    payload = future_dated_notification(vector.originator_counter, True, FUTURE_DATE, target)
    assert payload == vector.payload


@pytest.mark.parametrize(
    ("name", "code", "outcome", "message_code", "counter"),
    [
        (
            "1.6_ECS02/ECS02_1.6_8F66_FUTURE_DATED_TWIN_SUCCESS_ALERT_PAYMENT_MODE_GBCS.HEX",
            "0x8f66", "executed", "0x001a", 1005,
        ),
        (
            "1.6_GCS03/GCS03_1.6_8F66_FUTURE_DATED_SUCCESS_ALERT_CHANGE_PAYMENT_MODE_GBCS.HEX",
            "0x8f66", "executed", "0x006d", 1005,
        ),
        ("11.3_CS06/CS06_11.3_8F67_FUTURE_DATED_ERROR_ALERT_GBCS.HEX", "0x8f67", "failed", "0x0012", 1004),
        (
            "6.15.1_CS02bSupplierBySupplier/CS02bSupplierBySupplier_6.15.1_8F67_FUTURE_DATED_ERROR_ALERT_GBCS.HEX",
            "0x8f67", "failed", None, 1004,
        ),
    ],
)  # fmt: skip
def test_describe_alert_names_future_dated_outcomes(
    reference_dir: Path,
    name: str,
    code: str,
    outcome: str,
    message_code: str | None,
    counter: int,
) -> None:
    report = describe_alert(_vector(reference_dir, name))
    assert report["alert_code"] == code
    assert report["future_dated"]["outcome"] == outcome
    assert report["future_dated"]["message_code"] == message_code
    assert report["future_dated"]["originator_counter"] == counter


def test_describe_alert_names_every_alert_vector(reference_dir: Path) -> None:
    paths = sorted((reference_dir / "gbcs" / "rtds").rglob("*ALERT*.HEX"))
    titled = 0
    for path in paths:
        report = describe_alert(parse_hex_or_base64(path.read_text()))
        assert report["alert_code"].startswith("0x8"), path.name
        titled += report["title"] is not None
    assert len(paths) == 52
    assert titled >= 50


def test_describe_alert_refuses_a_command(reference_dir: Path) -> None:
    command = _vector(reference_dir, "7.1_ECS42/ECS42_7.1_SUCCESS_COMMAND_GBCS.HEX")
    with pytest.raises(GbcsError):
        describe_alert(command)


def test_alert_is_either_signed_or_maced() -> None:
    with pytest.raises(GbcsError):
        build_alert(
            device_title=ESME,
            recipient_title=ACB,
            counter=1,
            message_code=MESSAGE_CODE_NON_CRITICAL_ALERT,
            payload=alert_notification(1, 0x8F30, RTDS_DATE),
        )


def test_maced_alert_is_general_ciphering(reference_dir: Path) -> None:
    built = build_alert(
        device_title=ESME,
        recipient_title=ACB,
        counter=7,
        message_code=MESSAGE_CODE_NON_CRITICAL_ALERT,
        payload=alert_notification(7, 0x8F30, RTDS_DATE),
        mac_private=_private(reference_dir, ACB),
        mac_peer_public=_public(reference_dir, ESME, "ka"),
    )
    assert isinstance(decode_message(built), GeneralCiphering)
    assert describe_alert(built)["maced"] is True
