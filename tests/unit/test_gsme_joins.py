"""The GSME's side of 8.7.1 Join Service (Critical): CS03C Method C, signed by the Supplier and
answered signed as the RTDS 8.7.1_CS03CCritical vectors (the same code as the ESME's, from
``emulators.han.MeterJoins``); the joined device then in the join table CS07 reads and the
GSME keeps across a power cycle."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dccsim.duis.xml import parse_service_request
from dccsim.gbcs import der
from dccsim.gbcs.commands import JOIN_DEVICE_TYPES, CommandContext, command_payload
from dccsim.gbcs.critical import build_pre_command as build_use_case_pre_command
from dccsim.gbcs.crypto import verify_frame_signature, verify_mac
from dccsim.gbcs.frames import (
    CRA_RESPONSE,
    GeneralCiphering,
    GeneralSigning,
    decode_message,
    parse_hex_or_base64,
)
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_command
from emulators.device import DeviceRefusal
from emulators.gsme import Gsme
from emulators.han import CS07, JOIN_INVALID_METHOD_AND_ROLE, JOIN_SUCCESS
from services.transform.srvs import lookup
from tests.unit.gbcs_site import CriticalKeys, fresh_key, request_pre_command
from tests.unit.gsme_site import GSME_EUI, SUPPLIER_EUI, keyed_gsme, sign_and_wrap

RTDS_PPMID = bytes.fromhex("00DB123456789098")  # the Type 1 device the RTDS CS03C joins
FOLDER = "8.7.1_CS03CCritical"
PREFIX = "CS03CCritical_8.7.1_SUCCESS"
NOW = datetime(2015, 1, 1, 9, tzinfo=UTC)


@pytest.fixture
def keys() -> CriticalKeys:
    return CriticalKeys.fresh()


def _gsme(keys: CriticalKeys) -> Gsme:
    return keyed_gsme(keys, lambda: NOW)


@pytest.fixture
def gsme(keys: CriticalKeys) -> Gsme:
    return _gsme(keys)


def _vector(reference_dir: Path, kind: str) -> bytes:
    path = reference_dir / "gbcs" / "rtds" / FOLDER / f"{PREFIX}_{kind}_GBCS.HEX"
    return parse_hex_or_base64(path.read_text())


def _rtds_certificate(reference_dir: Path) -> bytes:
    """The PPMID's KA certificate the vector's command carries (the inventory's, in service)."""
    command = decode_message(_vector(reference_dir, "COMMAND"))
    assert isinstance(command, GeneralCiphering)
    header = command.general_signing
    fields = der.decode_asn1(
        header.payload, message_code=header.message_code, cra_flag=header.cra_flag
    ).fields
    assert isinstance(fields, dict)
    certificate = fields["other_device_certificate"]
    assert isinstance(certificate, bytes)
    return certificate


def _template_pre_command(reference_dir: Path) -> bytes:
    """The transform's Pre-Command for the RTDS 8.7.1 template to the GSME."""
    template = reference_dir / "duis" / "templates" / f"{PREFIX}_REQUEST_DUIS.XML"
    request = parse_service_request(template.read_bytes())
    transformation = lookup("8.7.1", "GSME")
    assert transformation is not None and transformation.critical
    rid = request.request_id
    assert rid.target == GSME_EUI
    return request_pre_command(
        transformation,
        request,
        {
            "other_device_type": "PPMID",
            "other_device_certificate": _rtds_certificate(reference_dir),
        },
    )


def _join_details(gsme: Gsme, keys: CriticalKeys, counter: int) -> list[tuple[bytes, int]]:
    """CS07's joined devices (EUI-64, GBCS device type), its MAC checked."""
    command = build_command(
        CS07,
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=counter,
        payload=b"\x05\x00",
        acb_ka_private=keys.acb,
        device_ka_public=keys.device_ka.public_key(),
    )
    response = decode_message(gsme.handle(command))
    assert isinstance(response, GeneralCiphering)
    assert verify_mac(
        response, private_key=keys.supplier_ka, peer_public_key=keys.device_ka.public_key()
    )
    result, *rest = der.Tlv.decode(response.general_signing.payload).children
    assert result.content == b"\x00"
    entries = rest[0].children if rest else []
    return [(e.children[0].content, int.from_bytes(e.children[1].content, "big")) for e in entries]


def test_cs03c_from_the_transform_is_answered_as_the_rtds_and_joins_the_ppmid(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    pre = _template_pre_command(reference_dir)
    assert pre == _vector(reference_dir, "PRECOMMAND")
    reply = decode_message(gsme.handle(sign_and_wrap(keys, pre, keys.supplier_ds)))
    reference = decode_message(_vector(reference_dir, "RESPONSE"))
    assert isinstance(reply, GeneralSigning) and isinstance(reference, GeneralSigning)
    assert reply.signature_field == "signed"
    assert verify_frame_signature(reply, keys.device_ds.public_key())
    # ECDSA is randomised and the RTDS GSME's DS key is not published: all but the signature
    assert reply.signed_bytes() == reference.signed_bytes()
    assert reply.cra_flag == CRA_RESPONSE and reply.date_time is None
    assert gsme.joined == {RTDS_PPMID: JOIN_DEVICE_TYPES["PPMID"]}
    assert _join_details(gsme, keys, 2000) == [(RTDS_PPMID, JOIN_DEVICE_TYPES["PPMID"])]


def test_cs03c_signed_by_another_key_is_refused_and_joins_nothing(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    pre = _template_pre_command(reference_dir)
    with pytest.raises(DeviceRefusal):
        gsme.handle(sign_and_wrap(keys, pre, fresh_key()))
    assert gsme.joined == {}


def _cs03c_pre_command(other: bytes, kind: str, certificate: bytes, counter: int) -> bytes:
    parameters = {
        "other_device_id": other,
        "other_device_type": kind,
        "other_device_certificate": certificate,
    }
    return build_use_case_pre_command(
        # signed as a critical command: 8.7.1 is critical where CS03C alone is not
        dataclasses.replace(USE_CASES_BY_NAME["CS03C"], critical=True),
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=counter,
        payload=command_payload(
            "CS03C", CommandContext(counter, SUPPLIER_EUI, GSME_EUI, parameters)
        ),
    )


def test_cs03c_of_a_type2_device_is_an_invalid_join_method(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    ihd = bytes.fromhex("00DB12345678909C")
    pre = _cs03c_pre_command(ihd, "IHD", _rtds_certificate(reference_dir), 1000)
    reply = decode_message(gsme.handle(sign_and_wrap(keys, pre, keys.supplier_ds)))
    assert isinstance(reply, GeneralSigning)
    assert der.decode_with(der.integer("result"), reply.payload) == JOIN_INVALID_METHOD_AND_ROLE
    assert gsme.joined == {}


def test_the_gsme_does_not_initiate_method_a(gsme: Gsme, keys: CriticalKeys) -> None:
    """CS03A1 is the mains-powered ESME's; the GSME takes no Method A join."""
    parameters = {"other_device_id": RTDS_PPMID, "other_device_type": "PPMID"}
    pre = build_use_case_pre_command(
        USE_CASES_BY_NAME["CS03A1"],
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=1000,
        payload=command_payload("CS03A1", CommandContext(1000, SUPPLIER_EUI, GSME_EUI, parameters)),
    )
    with pytest.raises(DeviceRefusal):
        gsme.handle(sign_and_wrap(keys, pre, keys.supplier_ds))
    assert gsme.joined == {}


def test_a_method_c_join_survives_a_power_cycle(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    pre = _cs03c_pre_command(RTDS_PPMID, "PPMID", _rtds_certificate(reference_dir), 1000)
    reply = decode_message(gsme.handle(sign_and_wrap(keys, pre, keys.supplier_ds)))
    assert isinstance(reply, GeneralSigning)
    assert der.decode_with(der.integer("result"), reply.payload) == JOIN_SUCCESS
    rebuilt = _gsme(keys)
    assert rebuilt.joined == {}
    rebuilt.restore_nonvolatile_state(gsme.nonvolatile_state())
    assert rebuilt.joined == {RTDS_PPMID: JOIN_DEVICE_TYPES["PPMID"]}
