"""CS14 (0x8F12, Device Log Changed): the CHF raises it when 8.11 adds a device to or removes one
from its device log; its payload rebuilt against the RTDS NA_CS14 alert vector."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.duis.requestid import DCC_EUI
from dccsim.gbcs.alerts import build_alert, describe_alert
from dccsim.gbcs.crypto import verify_mac
from dccsim.gbcs.dlms import DataNotification, decode_apdu
from dccsim.gbcs.frames import GeneralCiphering, decode_message, parse_hex_or_base64
from emulators.chf import ALERT_DEVICE_LOG_CHANGED, CS14_MESSAGE_CODE, device_log_alert_payload
from tests.unit.test_chf import CHF_EUI, JOINING_EUI, Keys, _vector

VECTOR = "NA_CS14/CS14_NA_8F12_ALERT_GBCS.HEX"
RTDS_DATE = bytes.fromhex("07DF0101FF000000008000FF")


@pytest.fixture
def keys() -> Keys:
    return Keys()


def _reference(reference_dir: Path) -> bytes:
    return parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / VECTOR).read_text())


def test_device_log_alert_rebuilds_the_vector_byte_for_byte(reference_dir: Path) -> None:
    keystore = reference_dir / "gbcs" / "keystore"
    acb = serialization.load_pem_private_key(
        (keystore / f"{DCC_EUI.hex()}-ka.key").read_bytes(), None
    )
    chf = x509.load_pem_x509_certificate((keystore / f"{CHF_EUI.hex()}-ka.pem").read_bytes())
    chf_ka = chf.public_key()
    assert isinstance(acb, ec.EllipticCurvePrivateKey)
    assert isinstance(chf_ka, ec.EllipticCurvePublicKey)
    entries = [
        (bytes.fromhex("00DB1234567890A0"), bytes.fromhex("83FED3407A939723A5C639B26916D506")),
        (bytes.fromhex("00DB1234567890A1"), bytes.fromhex("83FED3407A939723A5C639B26916D505")),
    ]
    payload = device_log_alert_payload(4000, RTDS_DATE, bytes(range(8)), entries)
    built = build_alert(
        device_title=CHF_EUI,
        recipient_title=DCC_EUI,
        counter=4000,
        message_code=CS14_MESSAGE_CODE,
        payload=payload,
        mac_private=acb,  # static ECDH: the ACB's key with the CHF's certificate, same MAC
        mac_peer_public=chf_ka,
    )
    assert built == _reference(reference_dir)


def _log_in(alert: bytes, keys: Keys) -> list[bytes]:
    """The EUI-64s a CS14 alert lists (its MAC checked as the ACB would)."""
    frame = decode_message(alert)
    assert isinstance(frame, GeneralCiphering)
    assert verify_mac(frame, private_key=keys.acb_ka, peer_public_key=keys.chf_ka.public_key())
    gs = frame.general_signing
    assert (gs.message_code, gs.recipient_title) == (CS14_MESSAGE_CODE, DCC_EUI)
    assert describe_alert(alert)["alert_code"] == f"{ALERT_DEVICE_LOG_CHANGED:#06x}"
    notification = decode_apdu(gs.payload)
    assert isinstance(notification, DataNotification)
    _code, _when, log = notification.body.items
    assert log.items[1].octets == CHF_EUI  # the extended PAN ID: the CHF's own EUI-64
    return [entry.items[0].octets for entry in log.items[2].items]


def test_adding_and_removing_a_device_raise_device_log_changed(
    reference_dir: Path, keys: Keys
) -> None:
    chf = keys.chf()
    chf.handle(keys.command(_vector(reference_dir, "CCS01", "SUCCESS_COMMAND")))
    (added,) = chf.take_alerts()
    assert added.alert_code == ALERT_DEVICE_LOG_CHANGED and added.recipient == DCC_EUI
    assert _log_in(added.frame, keys) == [JOINING_EUI]
    chf.last_counters.clear()  # the RTDS CCS02 command's counter is below CCS01's
    chf.handle(keys.command(_vector(reference_dir, "CCS02", "SUCCESS_COMMAND")))
    (removed,) = chf.take_alerts()
    assert _log_in(removed.frame, keys) == []


def test_removing_a_device_not_in_the_log_raises_nothing(reference_dir: Path, keys: Keys) -> None:
    chf = keys.chf()
    chf.handle(keys.command(_vector(reference_dir, "CCS02", "SUCCESS_COMMAND")))
    assert chf.take_alerts() == []


def test_alert_counters_rise(keys: Keys) -> None:
    chf = keys.chf()
    at = datetime(2024, 1, 1, tzinfo=UTC)
    assert chf.next_alert_counter(at) < chf.next_alert_counter(at)
