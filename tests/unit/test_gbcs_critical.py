"""ESME command layouts and critical commands (Pre-Command, Signed Pre-Command, wrapping)
against the RTDS vectors, byte for byte."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.commands import LAYOUTS, CommandContext, command_payload
from dccsim.gbcs.critical import (
    SignedPreCommandError,
    build_pre_command,
    command_from_signed_pre_command,
    verify_signed_pre_command,
    wrap_command,
)
from dccsim.gbcs.crypto import ecdsa_sign_raw
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralCiphering, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_command
from tests.unit.gbcs_site import private_in, public_in

SUPPLIER = bytes.fromhex("90B3D51F30010000")
ESME = bytes.fromhex("00DB1234567890A0")
# the DUIS templates' SynchroniseClock body (reference/duis/templates/ECS70_6.11_...)
CLOCK_PARAMETERS = {
    "current_date_time": dt.datetime(2014, 12, 31, 23, 59, 10, tzinfo=dt.UTC),
    "tolerance_period": 60,
}
CRITICAL = [
    ("7.1_ECS42", "ECS42", {}),
    ("7.2_ECS43", "ECS43", {}),
    ("7.3_ECS44", "ECS44", {}),
    ("6.11_ECS70", "ECS70", CLOCK_PARAMETERS),
    ("8.1.1_ECS70Commission", "ECS70", CLOCK_PARAMETERS),
]
CASES = ("SUCCESS", "ERROR")


@pytest.fixture
def keystore(reference_dir: Path) -> Path:
    return reference_dir / "gbcs" / "keystore"


def _vector(reference_dir: Path, folder: str, case: str, kind: str) -> bytes:
    srv, name = folder.split("_", 1)
    path = reference_dir / "gbcs" / "rtds" / folder / f"{name}_{srv}_{case}_{kind}_GBCS.HEX"
    return parse_hex_or_base64(path.read_text())


def _counter(data: bytes) -> int:
    message = decode_message(data)
    frame = message.general_signing if isinstance(message, GeneralCiphering) else message
    return frame.originator_counter


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("folder", "use_case", "parameters"), CRITICAL)
def test_pre_command_build_reproduces_the_rtds_vector(
    reference_dir: Path, folder: str, use_case: str, parameters: dict[str, object], case: str
) -> None:
    expected = _vector(reference_dir, folder, case, "PRECOMMAND")
    counter = _counter(expected)
    payload = command_payload(use_case, CommandContext(counter, SUPPLIER, ESME, parameters))
    built = build_pre_command(
        USE_CASES_BY_NAME[use_case],
        originator_title=SUPPLIER,
        device_title=ESME,
        counter=counter,
        payload=payload,
    )
    assert built == expected


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(("folder", "use_case", "parameters"), CRITICAL)
def test_signed_pre_command_verifies_and_wraps_to_the_rtds_command(
    reference_dir: Path,
    keystore: Path,
    folder: str,
    use_case: str,
    parameters: dict[str, object],
    case: str,
) -> None:
    command = decode_message(_vector(reference_dir, folder, case, "COMMAND"))
    assert isinstance(command, GeneralCiphering)
    signed_pre_command = command.general_signing.encode()  # what the User sent back (CV 5)
    built = command_from_signed_pre_command(
        signed_pre_command,
        pre_command=_vector(reference_dir, folder, case, "PRECOMMAND"),
        user_ds_public=public_in(keystore, "90b3d51f30010000-ds"),
        acb_ka_private=private_in(keystore, "90b3d51f30000002-ka"),
        device_ka_public=public_in(keystore, "00db1234567890a0-ka"),
    )
    assert built == command.encode()


def _reference_pair(reference_dir: Path) -> tuple[bytes, bytes]:
    pre = _vector(reference_dir, "7.1_ECS42", "SUCCESS", "PRECOMMAND")
    command = decode_message(_vector(reference_dir, "7.1_ECS42", "SUCCESS", "COMMAND"))
    assert isinstance(command, GeneralCiphering)
    return pre, command.general_signing.encode()


def test_signature_by_another_key_is_refused(reference_dir: Path, keystore: Path) -> None:
    pre, signed = _reference_pair(reference_dir)
    with pytest.raises(SignedPreCommandError) as caught:
        verify_signed_pre_command(
            signed, pre_command=pre, user_ds_public=public_in(keystore, "90b3d51f30020000-ds")
        )
    assert caught.value.check == "signature"


def test_tampered_signature_is_refused(reference_dir: Path, keystore: Path) -> None:
    pre, signed = _reference_pair(reference_dir)
    tampered = signed[:-1] + bytes([signed[-1] ^ 1])
    with pytest.raises(SignedPreCommandError) as caught:
        verify_signed_pre_command(
            tampered, pre_command=pre, user_ds_public=public_in(keystore, "90b3d51f30010000-ds")
        )
    assert caught.value.check == "signature"


def test_signed_pre_command_of_another_command_is_refused(
    reference_dir: Path, keystore: Path
) -> None:
    """A validly signed ECS43 is not the ECS42 Pre-Command the DCC issued for this RequestID."""
    pre, _ = _reference_pair(reference_dir)
    other = decode_message(_vector(reference_dir, "7.2_ECS43", "SUCCESS", "COMMAND"))
    assert isinstance(other, GeneralCiphering)
    with pytest.raises(SignedPreCommandError) as caught:
        verify_signed_pre_command(
            other.general_signing.encode(),
            pre_command=pre,
            user_ds_public=public_in(keystore, "90b3d51f30010000-ds"),
        )
    assert caught.value.check == "mismatch"


def test_unsigned_pre_command_is_refused(reference_dir: Path, keystore: Path) -> None:
    pre, _ = _reference_pair(reference_dir)
    with pytest.raises(SignedPreCommandError) as caught:
        verify_signed_pre_command(
            pre, pre_command=pre, user_ds_public=public_in(keystore, "90b3d51f30010000-ds")
        )
    assert caught.value.check == "mismatch"


def test_wrong_signature_marker_is_a_format_error(reference_dir: Path, keystore: Path) -> None:
    pre, signed = _reference_pair(reference_dir)
    bad = pre + b"\x41" + signed[len(pre) + 1 :]
    with pytest.raises(SignedPreCommandError) as caught:
        verify_signed_pre_command(
            bad, pre_command=pre, user_ds_public=public_in(keystore, "90b3d51f30010000-ds")
        )
    assert caught.value.check == "format"


def test_fresh_user_key_round_trip() -> None:
    user, acb, device = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    pre = build_pre_command(
        USE_CASES_BY_NAME["ECS43"],
        originator_title=SUPPLIER,
        device_title=ESME,
        counter=7,
        payload=command_payload("ECS43", CommandContext(7, SUPPLIER, ESME)),
    )
    signed = pre + b"\x40" + ecdsa_sign_raw(user, pre[1:])
    frame = verify_signed_pre_command(signed, pre_command=pre, user_ds_public=user.public_key())
    wrapped = wrap_command(frame, acb_ka_private=acb, device_ka_public=device.public_key())
    message = decode_message(wrapped)
    assert isinstance(message, GeneralCiphering)
    assert message.general_signing.encode() == signed


def test_pre_command_of_a_non_critical_use_case_is_refused() -> None:
    with pytest.raises(ValueError):
        build_pre_command(
            USE_CASES_BY_NAME["ECS45"],
            originator_title=SUPPLIER,
            device_title=ESME,
            counter=1,
            payload=b"",
        )


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    ("folder", "use_case"), [("7.4_ECS45", "ECS45"), ("4.1.1_ECS17b", "ECS17b")]
)
def test_non_critical_layout_reproduces_the_rtds_command(
    reference_dir: Path, keystore: Path, folder: str, use_case: str, case: str
) -> None:
    if use_case == "ECS17b":
        case = "SINGLE_SUCCESS" if case == "SUCCESS" else case
    expected = _vector(reference_dir, folder, case, "COMMAND")
    counter = _counter(expected)
    built = build_command(
        USE_CASES_BY_NAME[use_case],
        originator_title=SUPPLIER,
        device_title=ESME,
        counter=counter,
        payload=command_payload(use_case, CommandContext(counter, SUPPLIER, ESME)),
        acb_ka_private=private_in(keystore, "90b3d51f30000002-ka"),
        device_ka_public=public_in(keystore, "00db1234567890a0-ka"),
    )
    assert built == expected


def test_every_layout_names_a_known_use_case() -> None:
    assert set(LAYOUTS) <= set(USE_CASES_BY_NAME)


def test_missing_parameter_is_a_gbcs_error() -> None:
    with pytest.raises(GbcsError, match="current_date_time"):
        command_payload("ECS70", CommandContext(1, SUPPLIER, ESME, {"tolerance_period": 60}))


def test_naive_date_time_is_a_gbcs_error() -> None:
    with pytest.raises(GbcsError, match="timezone"):
        command_payload(
            "ECS70",
            CommandContext(
                1,
                SUPPLIER,
                ESME,
                {"current_date_time": dt.datetime(2024, 1, 1), "tolerance_period": 60},
            ),
        )


def test_unknown_layout_is_a_gbcs_error() -> None:
    with pytest.raises(GbcsError):
        command_payload("XYZ99", CommandContext(1, SUPPLIER, ESME))
