"""The GSME model answers GBZ commands: responses match the RTDS GSME responses' payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.crypto import verify_mac
from dccsim.gbcs.frames import GeneralCiphering, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_command
from dccsim.gbcs.zigbee import METERING, decode_gbz
from emulators.device import RemoteParty
from emulators.gsme import ZCL_UNSUPPORTED_ATTRIBUTE, Gsme

GSME_EUI = bytes.fromhex("00DB1234567890A1")
SUPPLIER_EUI = bytes.fromhex("90B3D51F30010000")


class Keys:
    def __init__(self) -> None:
        self.acb = ec.generate_private_key(ec.SECP256R1())
        self.device = ec.generate_private_key(ec.SECP256R1())
        self.supplier = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def gsme(keys: Keys) -> Gsme:
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


def _exchange(gsme: Gsme, keys: Keys, use_case: str, payload: bytes) -> bytes:
    command = build_command(
        USE_CASES_BY_NAME[use_case],
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=1000,
        payload=payload,
        acb_ka_private=keys.acb,
        device_ka_public=keys.device.public_key(),
    )
    message = decode_message(gsme.handle(command))
    assert isinstance(message, GeneralCiphering)
    assert verify_mac(message, private_key=keys.supplier, peer_public_key=keys.device.public_key())
    return message.general_signing.payload


@pytest.mark.parametrize(
    ("use_case", "vector"),
    [
        ("GCS38", "11.2_GCS38/GCS38_11.2_SUCCESS"),
        ("GCS33", "7.4_GCS33/GCS33_7.4_SUCCESS"),
        ("GCS07", "3.1_GCS07/GCS07_3.1_SUCCESS"),
    ],
)
def test_gsme_answers_the_rtds_command_with_the_rtds_response_payload(
    reference_dir: Path, gsme: Gsme, keys: Keys, use_case: str, vector: str
) -> None:
    command = _rtds_payload(reference_dir, f"{vector}_COMMAND_GBCS.HEX")
    expected = _rtds_payload(reference_dir, f"{vector}_RESPONSE_GBCS.HEX")
    assert _exchange(gsme, keys, use_case, command) == expected


def test_display_message_is_kept(reference_dir: Path, gsme: Gsme, keys: Keys) -> None:
    _exchange(
        gsme,
        keys,
        "GCS07",
        _rtds_payload(reference_dir, "3.1_GCS07/GCS07_3.1_SUCCESS_COMMAND_GBCS.HEX"),
    )
    assert gsme.supplier_message == "Reset"


def test_unknown_attribute_is_reported_unsupported(
    reference_dir: Path, gsme: Gsme, keys: Keys
) -> None:
    del gsme.attributes[(METERING, 0x0206)]
    command = _rtds_payload(reference_dir, "11.2_GCS38/GCS38_11.2_SUCCESS_COMMAND_GBCS.HEX")
    (component,) = decode_gbz(_exchange(gsme, keys, "GCS38", command)).components
    assert component.payload.records[0]["status"] == ZCL_UNSUPPORTED_ATTRIBUTE
