"""The CHF model against the RTDS 8.11 vectors: CCS01 adds to the device log, CCS02 removes,
answered with the vectors' response (same header and payload; our own keys, so our own MAC)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.duis.requestid import DCC_EUI
from dccsim.gbcs.crypto import seal, verify_mac
from dccsim.gbcs.dlms import AccessResponse, DataType, decode_apdu
from dccsim.gbcs.frames import GeneralCiphering, decode_message
from emulators.chf import Chf, DeviceLogEntry
from emulators.device import ALERT_FAILED_AUTHENTICATION_OTHER, DeviceRefusal, RemoteParty

CHF_EUI = bytes.fromhex("00DB1234567890A2")
JOINING_EUI = bytes.fromhex("00DB1234567890A0")  # the device the vectors add and remove


class Keys:
    def __init__(self) -> None:
        self.acb_ka = ec.generate_private_key(ec.SECP256R1())
        self.chf_ka = ec.generate_private_key(ec.SECP256R1())

    def chf(self, *, capacity: int = 16) -> Chf:
        return Chf(
            eui=CHF_EUI,
            ka_private_key=self.chf_ka,
            ds_private_key=ec.generate_private_key(ec.SECP256R1()),
            acb_ka_public=self.acb_ka.public_key(),
            remote_parties={DCC_EUI: RemoteParty(DCC_EUI, self.acb_ka.public_key())},
            clock=lambda: datetime(2024, 1, 1, tzinfo=UTC),
            device_log_capacity=capacity,
        )

    def command(self, vector: Path) -> bytes:
        """The vector's command, MAC'd again with this test's ACB and CHF keys."""
        message = _ciphered(vector.read_text().strip())
        return seal(
            message.general_signing,
            private_key=self.acb_ka,
            peer_public_key=self.chf_ka.public_key(),
        ).encode()

    def response(self, raw: bytes) -> GeneralCiphering:
        message = _ciphered(raw.hex())
        assert verify_mac(
            message, private_key=self.acb_ka, peer_public_key=self.chf_ka.public_key()
        )
        return message


def _ciphered(hex_text: str) -> GeneralCiphering:
    message = decode_message(bytes.fromhex(hex_text))
    assert isinstance(message, GeneralCiphering)
    return message


def _vector(reference_dir: Path, use_case: str, name: str) -> Path:
    return reference_dir / "gbcs" / "rtds" / f"8.11_{use_case}" / f"{use_case}_8.11_{name}_GBCS.HEX"


def _access_response(message: GeneralCiphering) -> AccessResponse:
    apdu = decode_apdu(message.general_signing.payload)
    assert isinstance(apdu, AccessResponse)
    return apdu


@pytest.fixture
def keys() -> Keys:
    return Keys()


def test_ccs01_adds_the_device_and_answers_as_the_vector(reference_dir: Path, keys: Keys) -> None:
    chf = keys.chf()
    ours = keys.response(
        chf.handle(keys.command(_vector(reference_dir, "CCS01", "SUCCESS_COMMAND")))
    )
    expected = _ciphered(_vector(reference_dir, "CCS01", "SUCCESS_RESPONSE").read_text().strip())
    assert ours.general_signing == expected.general_signing
    entry = chf.device_log[JOINING_EUI]
    assert entry.device_type == 1 and entry.install_code == b"0123456789ABCDEF"
    assert chf.joining_enabled and chf.join_timeout_s == 90


def test_ccs01_to_a_full_log_fails_with_the_error_vectors_structure(
    reference_dir: Path, keys: Keys
) -> None:
    chf = keys.chf(capacity=0)
    ours = _access_response(
        keys.response(chf.handle(keys.command(_vector(reference_dir, "CCS01", "ERROR_COMMAND"))))
    )
    expected = _access_response(
        _ciphered(_vector(reference_dir, "CCS01", "ERROR_RESPONSE").read_text().strip())
    )
    assert ours.invoke_id_and_priority == expected.invoke_id_and_priority
    assert [r.kind for r in ours.results] == [r.kind for r in expected.results]
    assert all(d.type is DataType.NULL for d in ours.data) and len(ours.data) == len(expected.data)
    assert ours.results[0].result != 0
    assert not chf.device_log and not chf.joining_enabled


def test_ccs02_removes_the_device_and_answers_as_the_vector(
    reference_dir: Path, keys: Keys
) -> None:
    chf = keys.chf()
    chf.device_log[JOINING_EUI] = DeviceLogEntry(JOINING_EUI, 1, b"0123456789ABCDEF")
    ours = keys.response(
        chf.handle(keys.command(_vector(reference_dir, "CCS02", "SUCCESS_COMMAND")))
    )
    expected = _ciphered(_vector(reference_dir, "CCS02", "SUCCESS_RESPONSE").read_text().strip())
    assert ours.general_signing == expected.general_signing
    assert not chf.device_log


def test_ccs02_of_a_device_not_in_the_log_answers_as_the_error_vector(
    reference_dir: Path, keys: Keys
) -> None:
    chf = keys.chf()
    ours = keys.response(chf.handle(keys.command(_vector(reference_dir, "CCS02", "ERROR_COMMAND"))))
    expected = _ciphered(_vector(reference_dir, "CCS02", "ERROR_RESPONSE").read_text().strip())
    assert ours.general_signing == expected.general_signing


def test_a_replayed_ccs01_is_refused(reference_dir: Path, keys: Keys) -> None:
    chf = keys.chf()
    command = keys.command(_vector(reference_dir, "CCS01", "SUCCESS_COMMAND"))
    chf.handle(command)
    with pytest.raises(DeviceRefusal) as refused:
        chf.handle(command)
    assert refused.value.alert_code == ALERT_FAILED_AUTHENTICATION_OTHER


def test_device_log_round_trips_through_its_nonvolatile_state(keys: Keys) -> None:
    chf = keys.chf()
    chf.device_log[JOINING_EUI] = DeviceLogEntry(JOINING_EUI, 1, b"0123456789ABCDEF")
    chf.joining_enabled, chf.join_timeout_s = True, 90
    rebuilt = keys.chf()
    rebuilt.restore_nonvolatile_state(chf.nonvolatile_state())
    assert rebuilt.device_log == chf.device_log
    assert rebuilt.joining_enabled and rebuilt.join_timeout_s == 90
