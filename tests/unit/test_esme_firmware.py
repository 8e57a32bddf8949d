"""The ESME's firmware: 11.3 Activate Firmware (CS06; immediate, future-dated, cancelled) of an
image it received, read back by 11.2 (ECS52), and the responses against the RTDS vectors."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dccsim.gbcs import der
from dccsim.gbcs.commands import CommandContext, command_payload
from dccsim.gbcs.critical import build_pre_command, wrap_command
from dccsim.gbcs.crypto import ecdsa_sign_raw
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from emulators.device import DeviceRefusal
from emulators.esme import ACTIVATION_FAILURE, ACTIVATION_SUCCESS, DEFAULT_FIRMWARE_VERSION
from tests.unit.esme_site import ESME_EUI, START, SUPPLIER_EUI, Site, fresh_key
from tests.unit.gbcs_site import CS06_ACTIVATIONS

IMAGE = b"ESME firmware image 1.1" * 100
NEW_VERSION = bytes.fromhex("01010000")
CS06 = USE_CASES_BY_NAME["CS06"]
CANCEL = datetime(3000, 12, 31, tzinfo=UTC)


@pytest.fixture
def site() -> Site:
    site = Site()
    site.esme.receive_image(IMAGE, NEW_VERSION)
    return site


def activate(site: Site, image_hash: bytes, when: datetime | None = None) -> object:
    """Send CS06; the DER the ESME answers with, decoded (None for the future-dated NULL)."""
    parameters: dict[str, object] = {"firmware_hash": image_hash}
    if when is not None:
        parameters["execution_date_time"] = when
    frame = site.critical("CS06", parameters, signer=site.supplier_ds)
    if frame.payload == b"\x05\x00":
        return None
    fields = der.decode_with(der.ASN1_SCHEMAS[(CS06.message_code, 2)], frame.payload)
    assert isinstance(fields, Mapping)
    return fields["result"], fields["firmware_version"]


def running_version(site: Site) -> bytes:
    return site.read("ECS52").octets


def test_activating_a_received_image_runs_it(site: Site) -> None:
    assert running_version(site) == DEFAULT_FIRMWARE_VERSION
    assert activate(site, hashlib.sha256(IMAGE).digest()) == (ACTIVATION_SUCCESS, NEW_VERSION)
    assert running_version(site) == NEW_VERSION


def test_activating_an_image_never_received_fails_and_keeps_the_version(site: Site) -> None:
    unknown = hashlib.sha256(b"another image").digest()
    assert activate(site, unknown) == (ACTIVATION_FAILURE, DEFAULT_FIRMWARE_VERSION)
    assert running_version(site) == DEFAULT_FIRMWARE_VERSION


def test_future_dated_activation_runs_at_its_execution_time(site: Site) -> None:
    at = START + timedelta(hours=1)
    assert activate(site, hashlib.sha256(IMAGE).digest(), at) is None
    assert running_version(site) == DEFAULT_FIRMWARE_VERSION
    site.now = at
    assert running_version(site) == NEW_VERSION


def test_cancellation_drops_the_pending_activation(site: Site) -> None:
    image_hash = hashlib.sha256(IMAGE).digest()
    activate(site, image_hash, START + timedelta(hours=1))
    assert activate(site, image_hash, CANCEL) is None
    site.now = START + timedelta(days=1)
    assert running_version(site) == DEFAULT_FIRMWARE_VERSION


def test_activation_signed_by_someone_else_is_refused(site: Site) -> None:
    with pytest.raises(DeviceRefusal):
        site.critical("CS06", {"firmware_hash": hashlib.sha256(IMAGE).digest()}, signer=fresh_key())
    assert running_version(site) == DEFAULT_FIRMWARE_VERSION


def test_activation_whose_payload_counter_is_not_the_commands_is_refused(site: Site) -> None:
    site.counter += 1
    payload = command_payload(  # the counter inside the DER one less than the header's
        "CS06",
        CommandContext(
            site.counter - 1,
            SUPPLIER_EUI,
            ESME_EUI,
            {"firmware_hash": hashlib.sha256(IMAGE).digest()},
        ),
    )
    pre = build_pre_command(
        CS06,
        originator_title=SUPPLIER_EUI,
        device_title=ESME_EUI,
        counter=site.counter,
        payload=payload,
    )
    signed = decode_message(pre + b"\x40" + ecdsa_sign_raw(site.supplier_ds, pre[1:]))
    assert isinstance(signed, GeneralSigning)
    command = wrap_command(
        signed, acb_ka_private=site.acb_ka, device_ka_public=site.device_ka.public_key()
    )
    with pytest.raises(DeviceRefusal):
        site.esme.handle(command)
    assert running_version(site) == DEFAULT_FIRMWARE_VERSION


def test_pending_activation_survives_a_power_cycle(site: Site) -> None:
    activate(site, hashlib.sha256(IMAGE).digest(), START + timedelta(hours=1))
    fresh = site.with_same_keys()
    fresh.esme.restore_nonvolatile_state(site.esme.nonvolatile_state())
    fresh.now = START + timedelta(hours=2)
    assert running_version(fresh) == NEW_VERSION


# -- responses against the RTDS vectors ----------------------------------------------------------


def _vector(reference_dir: Path, prefix: str, kind: str) -> bytes:
    path = reference_dir / "gbcs" / "rtds" / "11.3_CS06" / f"{prefix}_{kind}_GBCS.HEX"
    return parse_hex_or_base64(path.read_text())


@pytest.mark.parametrize(("prefix", "received", "running"), CS06_ACTIVATIONS)
def test_activation_response_matches_the_rtds_vector_but_for_the_signature(
    reference_dir: Path, prefix: str, received: dict[bytes, bytes], running: bytes | None
) -> None:
    command = decode_message(_vector(reference_dir, prefix, "COMMAND"))
    assert isinstance(command, GeneralCiphering)
    reference = decode_message(_vector(reference_dir, prefix, "RESPONSE"))
    assert isinstance(reference, GeneralSigning)
    site = Site(now=datetime(2015, 1, 1, tzinfo=UTC))
    site.esme.received_images = dict(received)
    if running is not None:
        site.esme.firmware_version = running
    built = decode_message(site.esme.activate_firmware_command(command=command, now=site.now))
    assert isinstance(built, GeneralSigning)
    assert built.signed_bytes() == reference.signed_bytes()
