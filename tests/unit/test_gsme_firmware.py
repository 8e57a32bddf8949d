"""The GSME's firmware: an image distributed to it (11.1), 11.3 Activate Firmware (CS06;
immediate, future-dated with its 0x8F66/0x8F67 alert, cancelled) — the same implementation as
the ESME's (``emulators.firmware``) — read back by 11.2 (GCS38); the transform's CS06 to a GSME
and the GSME's answers against the RTDS vectors (which address the ESME: CS06 is the meter's,
whichever meter)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgpack
import pytest
from lxml import etree

from dccsim.duis.xml import parse_service_request
from dccsim.gbcs import der
from dccsim.gbcs.alerts import MESSAGE_CODE_FUTURE_DATED_CS06, describe_alert
from dccsim.gbcs.crypto import verify_frame_signature
from dccsim.gbcs.dlms import encode_date_time
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.gbcs.zigbee import decode_gbz
from emulators.device import DeviceRefusal
from emulators.firmware import ACTIVATION_FAILURE, ACTIVATION_SUCCESS
from emulators.gsme import GENERAL_EVENT_LOG
from services.transform.srvs import SR_NS
from tests.unit.gbcs_site import CS06_ACTIVATIONS
from tests.unit.gsme_site import GSME_EUI, START, GasSite, fresh_key

FOLDER = "11.3_CS06"
RTDS_ESME = bytes.fromhex("00DB1234567890A0")  # the device the RTDS CS06 vectors address
IMAGE = b"GSME firmware image 2.0" * 100
NEW_VERSION = bytes.fromhex("02000000")
CS06 = USE_CASES_BY_NAME["CS06"]
AT = START + dt.timedelta(hours=1)
CANCEL = dt.datetime(3000, 12, 31, tzinfo=dt.UTC)


def _vector(reference_dir: Path, prefix: str, kind: str) -> bytes:
    path = reference_dir / "gbcs" / "rtds" / FOLDER / f"{prefix}_{kind}_GBCS.HEX"
    return parse_hex_or_base64(path.read_text())


@pytest.fixture
def site() -> GasSite:
    site = GasSite()
    site.gsme.receive_image(IMAGE, NEW_VERSION)
    return site


def _body(image_hash: bytes, when: dt.datetime | None = None) -> etree._Element:
    """An ActivateFirmware DUIS body."""
    timing = (
        ""
        if when is None
        else f"<sr:ExecutionDateTime>{when:%Y-%m-%dT%H:%M:%SZ}</sr:ExecutionDateTime>"
    )
    return etree.fromstring(
        f'<sr:ActivateFirmware xmlns:sr="{SR_NS}">'
        f"<sr:FirmwareHash>{image_hash.hex().upper()}</sr:FirmwareHash>{timing}"
        "</sr:ActivateFirmware>"
    )


def activate(site: GasSite, image_hash: bytes, when: dt.datetime | None = None) -> Any:
    """11.3 to the GSME; its decoded answer ((result, version), or None for the held NULL)."""
    reply = site.critical("11.3", _body(image_hash, when))
    assert reply.date_time == encode_date_time(site.gsme.device_time(site.now))
    if reply.payload == b"\x05\x00":
        return None
    fields = der.decode_with(der.ASN1_SCHEMAS[(CS06.message_code, 2)], reply.payload)
    assert isinstance(fields, Mapping)
    return fields["result"], fields["firmware_version"]


def running_version(site: GasSite) -> bytes:
    """What 11.2 (GCS38, the metering cluster's firmware version attribute) reads."""
    (component,) = decode_gbz(site.read("11.2").general_signing.payload).components
    (record,) = component.payload.records
    value = record["value"]
    assert isinstance(value, bytes)
    return value


# -- the transform ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        "CS06_11.3_IMMEDIATE_SUCCESS",
        "CS06_11.3_FUTURE_DATED_SUCCESS",
        "CS06_11.3_CANCELLATION_SUCCESS",
    ],
)
def test_activate_firmware_template_to_a_gsme_is_the_rtds_pre_command_but_for_the_recipient(
    reference_dir: Path, prefix: str
) -> None:
    path = reference_dir / "duis" / "templates" / f"{prefix}_REQUEST_DUIS.XML"
    request = parse_service_request(path.read_bytes())
    pre = GasSite().pre_command("11.3", request.body, counter=request.request_id.counter)
    reference = decode_message(_vector(reference_dir, prefix, "PRECOMMAND"))
    assert isinstance(reference, GeneralSigning) and reference.recipient_title == RTDS_ESME
    assert pre == dataclasses.replace(reference, recipient_title=GSME_EUI).encode()


# -- CS06 on the GSME ---------------------------------------------------------------------------


def test_activating_a_received_image_runs_it_and_gcs38_reads_it(site: GasSite) -> None:
    before = running_version(site)
    assert before != NEW_VERSION
    assert activate(site, hashlib.sha256(IMAGE).digest()) == (ACTIVATION_SUCCESS, NEW_VERSION)
    assert running_version(site) == NEW_VERSION


def test_activating_an_image_never_received_fails_and_keeps_the_version(site: GasSite) -> None:
    before = running_version(site)
    unknown = hashlib.sha256(b"another image").digest()
    assert activate(site, unknown) == (ACTIVATION_FAILURE, before)
    assert running_version(site) == before


def test_activation_signed_by_someone_else_is_refused(site: GasSite) -> None:
    before = running_version(site)
    with pytest.raises(DeviceRefusal):
        site.critical("11.3", _body(hashlib.sha256(IMAGE).digest()), signer=fresh_key())
    assert running_version(site) == before


def test_a_held_activation_runs_at_its_time_with_its_8f66_alert(
    reference_dir: Path, site: GasSite
) -> None:
    before = running_version(site)
    assert activate(site, hashlib.sha256(IMAGE).digest(), AT) is None
    counter = site.counter
    assert site.gsme.next_due() == AT
    site.gsme.run_due(AT - dt.timedelta(seconds=1))
    assert site.gsme.take_alerts() == [] and running_version(site) == before
    site.now = AT
    site.gsme.run_due(AT)
    assert running_version(site) == NEW_VERSION and site.gsme.next_due() is None
    (alert,) = site.gsme.take_alerts()
    assert alert.alert_code == 0x8F66
    frame = decode_message(alert.frame)
    assert isinstance(frame, GeneralSigning) and frame.originator_title == GSME_EUI
    assert frame.message_code == MESSAGE_CODE_FUTURE_DATED_CS06
    assert verify_frame_signature(frame, site.device_ds.public_key())
    fields: Any = der.decode_asn1(frame.payload, message_code=frame.message_code, cra_flag=3).fields
    assert fields["originator_counter"] == counter
    outcome = der.decode_with(der.ASN1_SCHEMAS[(CS06.message_code, 2)], fields["outcome"])
    assert outcome == {"result": ACTIVATION_SUCCESS, "firmware_version": NEW_VERSION}
    rtds = describe_alert(_vector(reference_dir, "CS06_11.3_8F66_FUTURE_DATED_SUCCESS", "ALERT"))
    described = describe_alert(alert.frame)
    assert described.keys() == rtds.keys()
    assert described["future_dated"].keys() == rtds["future_dated"].keys()
    assert described["future_dated"]["outcome"] == rtds["future_dated"]["outcome"]
    assert site.gsme.logs[GENERAL_EVENT_LOG][-1].event_id == 0x8F66


def test_a_held_activation_of_an_unknown_image_fails_with_8f67(
    reference_dir: Path, site: GasSite
) -> None:
    activate(site, bytes(32), AT)
    site.gsme.run_due(AT)
    (alert,) = site.gsme.take_alerts()
    assert alert.alert_code == 0x8F67
    rtds = describe_alert(_vector(reference_dir, "CS06_11.3_8F67_FUTURE_DATED_ERROR", "ALERT"))
    assert describe_alert(alert.frame)["future_dated"]["outcome"] == rtds["future_dated"]["outcome"]


def test_cancellation_drops_the_held_activation(site: GasSite) -> None:
    before = running_version(site)
    image_hash = hashlib.sha256(IMAGE).digest()
    activate(site, image_hash, AT)
    assert activate(site, image_hash, CANCEL) is None
    assert site.gsme.next_due() is None
    site.now = AT + dt.timedelta(days=1)
    site.gsme.run_due(site.now)
    assert site.gsme.take_alerts() == [] and running_version(site) == before


def _power_cycled(site: GasSite) -> Any:
    state = msgpack.unpackb(
        msgpack.packb(site.gsme.nonvolatile_state(), use_bin_type=True), raw=False
    )
    fresh = site.build()
    fresh.restore_nonvolatile_state(state)
    return fresh


def test_images_a_held_activation_and_the_version_survive_a_power_cycle(site: GasSite) -> None:
    activate(site, hashlib.sha256(IMAGE).digest(), AT)
    counter = site.counter
    site.gsme = _power_cycled(site)
    assert site.gsme.next_due() == AT
    site.now = AT
    site.gsme.run_due(AT)
    (alert,) = site.gsme.take_alerts()  # who sent it was kept too: the alert is the Supplier's
    assert describe_alert(alert.frame)["future_dated"]["originator_counter"] == counter
    site.gsme = _power_cycled(site)
    assert running_version(site) == NEW_VERSION


# -- responses against the RTDS vectors -------------------------------------------------------


@pytest.mark.parametrize(("prefix", "received", "running"), CS06_ACTIVATIONS)
def test_activation_response_matches_the_rtds_vector_but_for_the_meter(
    reference_dir: Path, prefix: str, received: dict[bytes, bytes], running: bytes | None
) -> None:
    command = decode_message(_vector(reference_dir, prefix, "COMMAND"))
    assert isinstance(command, GeneralCiphering)
    to_gsme = dataclasses.replace(
        command,
        general_signing=dataclasses.replace(command.general_signing, recipient_title=GSME_EUI),
    )
    reference = decode_message(_vector(reference_dir, prefix, "RESPONSE"))
    assert isinstance(reference, GeneralSigning)
    site = GasSite()
    site.gsme.received_images = dict(received)
    if running is not None:
        site.gsme.firmware_version = running
    built = decode_message(site.gsme.activate_firmware_command(command=to_gsme, now=site.now))
    assert isinstance(built, GeneralSigning)
    expected = dataclasses.replace(reference, originator_title=GSME_EUI)
    assert built.signed_bytes() == expected.signed_bytes()
