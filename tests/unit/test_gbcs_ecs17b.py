"""ECS17b (Read Import Energy Registers) against the RTDS vectors, byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralCiphering, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import (
    ACTION_HARDWARE_FAULT,
    DeviceResultError,
    ImportRegisters,
    build_access_error_response,
    build_ecs17b_command,
    build_ecs17b_response,
    read_ecs17b_response,
)
from tests.unit.gbcs_site import private_in, public_in

SUPPLIER = bytes.fromhex("90B3D51F30010000")
NETWORK_OPERATOR = bytes.fromhex("90B3D51F30020000")
ESME = bytes.fromhex("00DB1234567890A0")


@pytest.fixture
def keystore(reference_dir: Path) -> Path:
    return reference_dir / "gbcs" / "keystore"


def _vector(reference_dir: Path, name: str) -> bytes:
    path = reference_dir / "gbcs" / "rtds" / "4.1.1_ECS17b" / f"ECS17b_4.1.1_{name}_GBCS.HEX"
    return parse_hex_or_base64(path.read_text())


def _command(reference_dir: Path, name: str) -> GeneralCiphering:
    message = decode_message(_vector(reference_dir, name))
    assert isinstance(message, GeneralCiphering)
    return message


def test_command_build_reproduces_the_rtds_vector(reference_dir: Path, keystore: Path) -> None:
    built = build_ecs17b_command(
        originator_title=SUPPLIER,
        device_title=ESME,
        counter=0x3E8,
        acb_ka_private=private_in(keystore, "90b3d51f30000002-ka"),
        device_ka_public=public_in(keystore, "00db1234567890a0-ka"),
    )
    assert built == _vector(reference_dir, "SINGLE_SUCCESS_COMMAND")


def test_twin_command_build_reproduces_the_rtds_vector(reference_dir: Path, keystore: Path) -> None:
    built = build_ecs17b_command(
        originator_title=NETWORK_OPERATOR,
        device_title=ESME,
        counter=0x4B0,
        acb_ka_private=private_in(keystore, "90b3d51f30000002-ka"),
        device_ka_public=public_in(keystore, "00db1234567890a0-ka"),
    )
    assert built == _vector(reference_dir, "TWIN_SUCCESS_COMMAND")


@pytest.mark.parametrize(
    ("case", "user", "expected"),
    [
        ("SINGLE", SUPPLIER, ImportRegisters(active_import=10, reactive_import=10)),
        (
            "TWIN",
            NETWORK_OPERATOR,
            ImportRegisters(active_import=10, reactive_import=10, secondary_active_import=10),
        ),
    ],
)
def test_reference_response_decodes_to_registers(
    reference_dir: Path, keystore: Path, case: str, user: bytes, expected: ImportRegisters
) -> None:
    registers = read_ecs17b_response(
        _vector(reference_dir, f"{case}_SUCCESS_RESPONSE"),
        recipient_ka_private=private_in(keystore, f"{user.hex()}-ka"),
        device_ka_public=public_in(keystore, "00db1234567890a0-ka"),
    )
    assert registers == expected
    assert registers.active_import_wh == 10.0


@pytest.mark.parametrize(("case", "user"), [("SINGLE", SUPPLIER), ("TWIN", NETWORK_OPERATOR)])
def test_response_round_trip_is_byte_identical(
    reference_dir: Path, keystore: Path, case: str, user: bytes
) -> None:
    """Decrypt, then rebuild the response. The device's KA private key is not in the data, but
    static ECDH is symmetric: Z(device, user) == Z(user, device), so the User's private key and
    the device's certificate stand in for the device's key pair."""
    reference = _vector(reference_dir, f"{case}_SUCCESS_RESPONSE")
    user_private = private_in(keystore, f"{user.hex()}-ka")
    device_public = public_in(keystore, "00db1234567890a0-ka")
    registers = read_ecs17b_response(
        reference, recipient_ka_private=user_private, device_ka_public=device_public
    )
    reference_frame = decode_message(reference)
    assert isinstance(reference_frame, GeneralCiphering)
    date_time = reference_frame.general_signing.date_time
    assert date_time is not None
    rebuilt = build_ecs17b_response(
        command=_command(reference_dir, f"{case}_SUCCESS_COMMAND"),
        registers=registers,
        date_time=date_time,
        device_ka_private=user_private,
        recipient_ka_public=device_public,
    )
    assert rebuilt == reference


def test_error_response_rebuilds_and_reads_as_device_fault(
    reference_dir: Path, keystore: Path
) -> None:
    reference = _vector(reference_dir, "ERROR_RESPONSE")
    user_private = private_in(keystore, "90b3d51f30010000-ka")
    device_public = public_in(keystore, "00db1234567890a0-ka")
    reference_frame = decode_message(reference)
    assert isinstance(reference_frame, GeneralCiphering)
    assert reference_frame.general_signing.date_time is not None
    rebuilt = build_access_error_response(
        command=_command(reference_dir, "ERROR_COMMAND"),
        result=ACTION_HARDWARE_FAULT,
        date_time=reference_frame.general_signing.date_time,
        device_ka_private=user_private,
        recipient_ka_public=device_public,
    )
    assert rebuilt == reference
    with pytest.raises(DeviceResultError) as caught:
        read_ecs17b_response(
            reference, recipient_ka_private=user_private, device_ka_public=device_public
        )
    assert caught.value.result == ACTION_HARDWARE_FAULT


def test_response_with_wrong_recipient_key_is_refused(reference_dir: Path, keystore: Path) -> None:
    with pytest.raises(GbcsError, match="MAC"):
        read_ecs17b_response(
            _vector(reference_dir, "SINGLE_SUCCESS_RESPONSE"),
            recipient_ka_private=private_in(keystore, "90b3d51f30020000-ka"),
            device_ka_public=public_in(keystore, "00db1234567890a0-ka"),
        )


def test_command_is_not_a_response(reference_dir: Path, keystore: Path) -> None:
    with pytest.raises(GbcsError, match="not an ECS17b response"):
        read_ecs17b_response(
            _vector(reference_dir, "SINGLE_SUCCESS_COMMAND"),
            recipient_ka_private=private_in(keystore, "90b3d51f30010000-ka"),
            device_ka_public=public_in(keystore, "00db1234567890a0-ka"),
        )


def test_registers_to_data_round_trip() -> None:
    registers = ImportRegisters(
        active_import=123_456, reactive_import=789, secondary_active_import=42, active_scaler=-1
    )
    assert ImportRegisters.from_data(registers.to_data()) == registers
    assert registers.active_import_wh == pytest.approx(12_345.6)
