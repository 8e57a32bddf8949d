"""DLMS command layouts rebuilt byte for byte from parameters read out of the DUIS templates.

For each use case the DUIS request template gives the RequestID (originator, device, counter)
and the body's parameters; the layout plus the ACB MAC (or the Pre-Command framing, for a
critical use case) must reproduce the RTDS COMMAND (or PRECOMMAND) vector exactly.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET  # the reference templates are trusted test data
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.commands import CommandContext, command_payload
from dccsim.gbcs.critical import build_pre_command
from dccsim.gbcs.frames import parse_hex_or_base64
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_command

SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
ACB = bytes.fromhex("90B3D51F30000002")

# (use case, DUIS template, RTDS vector, extra parameters the template does not say)
CASES = [
    ("ECS21a", "ECS21a_4.6.1_SINGLE_SUCCESS", "4.6.1_ECS21a/ECS21a_4.6.1_SINGLE_SUCCESS", {}),
    ("ECS21a", "ECS21a_4.6.1_TWIN_SUCCESS", "4.6.1_ECS21a/ECS21a_4.6.1_TWIN_SUCCESS", {}),
    ("ECS22b", "ECS22b_4.8.1_SINGLE_SUCCESS", "4.8.1_ECS22b/ECS22b_4.8.1_SINGLE_SUCCESS", {}),
    ("ECS22b", "ECS22b_4.8.1_TWIN_SUCCESS", "4.8.1_ECS22b/ECS22b_4.8.1_TWIN_SUCCESS", {}),
    ("ECS66", "ECS66_4.17_SUCCESS", "4.17_ECS66/ECS66_4.17_SUCCESS", {}),
    ("ECS35a", "ECS35a_6.13_SUCCESS", "6.13_ECS35a/ECS35a_6.13_SUCCESS", {}),
    ("ECS35b", "ECS35b_6.13_SUCCESS", "6.13_ECS35b/ECS35b_6.13_SUCCESS", {}),
    # CHF logs: the ACB originates with its own counter (1302 in the vectors) for the User
    ("ECS35c", "ECS35c_6.13_SUCCESS", "6.13_ECS35c/ECS35c_6.13_SUCCESS", {"acb_counter": 1302}),
    ("ECS35d", "ECS35d_6.13_SUCCESS", "6.13_ECS35d/ECS35d_6.13_SUCCESS", {"acb_counter": 1302}),
    ("ECS35e", "ECS35e_6.13_SUCCESS", "6.13_ECS35e/ECS35e_6.13_SUCCESS", {}),
    ("ECS35f", "ECS35f_6.13_SUCCESS", "6.13_ECS35f/ECS35f_6.13_SUCCESS", {}),
    ("ECS35g", "ECS35g_6.13_SUCCESS", "6.13_ECS35g/ECS35g_6.13_SUCCESS", {}),
    ("ECS52", "ECS52_11.2_SUCCESS", "11.2_ECS52/ECS52_11.2_SUCCESS", {}),
    ("ECS10", "ECS10_3.1_SUCCESS", "3.1_ECS10/ECS10_3.1_SUCCESS", {}),
    ("CS01a", "CS01a_2.2_SUCCESS", "2.2_CS01a/CS01a_2.2_SUCCESS", {}),
    ("ECS02", "ECS02_1.6_IMMEDIATE_SINGLE_SUCCESS", "1.6_ECS02/ECS02_1.6_IMMEDIATE_SINGLE_SUCCESS", {}),
    (
        "ECS02",
        "ECS02_1.6_FUTURE_DATED_TWIN_SUCCESS",
        "1.6_ECS02/ECS02_1.6_FUTURE_DATED_TWIN_SUCCESS",
        {"twin": True},
    ),
    (
        "ECS02",
        "ECS02_1.6_CANCELLATION_TWIN_SUCCESS",
        "1.6_ECS02/ECS02_1.6_CANCELLATION_TWIN_SUCCESS",
        {"twin": True},
    ),
]  # fmt: skip


def _when(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def duis_parameters(template: Path) -> tuple[bytes, bytes, int, dict[str, object]]:
    """Originator, device, counter and snake_case parameters of a DUIS request template."""
    root = ET.parse(template).getroot()
    request_id = root.findtext(f"{SR}Header/{SR}RequestID")
    assert request_id is not None
    originator, device, counter = request_id.split(":")
    parameters: dict[str, object] = {}
    for name, element in (
        ("start_date_time", "StartDateTime"),
        ("end_date_time", "EndDateTime"),
        ("execution_date_time", "ExecutionDateTime"),
    ):
        text = root.findtext(f".//{SR}{element}")
        if text is not None:
            parameters[name] = _when(text)
    for name, element in (("supplier_message", "SupplierMessage"), ("utrn", "UTRN")):
        text = root.findtext(f".//{SR}{element}")
        if text is not None:
            parameters[name] = text
    return (
        bytes.fromhex(originator.replace("-", "")),
        bytes.fromhex(device.replace("-", "")),
        int(counter),
        parameters,
    )


def _acb_key(keystore: Path) -> ec.EllipticCurvePrivateKey:
    data = (keystore / f"{ACB.hex()}-ka.key").read_bytes()
    key = (
        serialization.load_pem_private_key(data, None)
        if data.startswith(b"-----")
        else serialization.load_der_private_key(data, None)
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _device_key(keystore: Path, device: bytes) -> ec.EllipticCurvePublicKey:
    cert = x509.load_pem_x509_certificate((keystore / f"{device.hex()}-ka.pem").read_bytes())
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


@pytest.mark.parametrize(("use_case", "template", "vector", "extra"), CASES)
def test_layout_rebuilds_the_rtds_command_from_the_duis_template(
    reference_dir: Path, use_case: str, template: str, vector: str, extra: dict[str, object]
) -> None:
    extra = dict(extra)
    templates = reference_dir / "duis" / "templates"
    rtds = reference_dir / "gbcs" / "rtds"
    keystore = reference_dir / "gbcs" / "keystore"
    originator, device, counter, parameters = duis_parameters(
        templates / f"{template}_REQUEST_DUIS.XML"
    )
    extras = b""
    acb_counter = extra.pop("acb_counter", None) if "acb_counter" in extra else None
    if isinstance(acb_counter, int):  # the ACB acts for the User: User EUI + DUIS counter
        extras = originator + counter.to_bytes(8, "big")
        originator, counter = ACB, acb_counter
    context = CommandContext(counter, originator, device, {**parameters, **extra})
    payload = command_payload(use_case, context)
    uc = USE_CASES_BY_NAME[use_case]
    if uc.critical:
        expected = parse_hex_or_base64((rtds / f"{vector}_PRECOMMAND_GBCS.HEX").read_text())
        built = build_pre_command(
            uc, originator_title=originator, device_title=device, counter=counter, payload=payload
        )
    else:
        expected = parse_hex_or_base64((rtds / f"{vector}_COMMAND_GBCS.HEX").read_text())
        built = build_command(
            uc,
            originator_title=originator,
            device_title=device,
            counter=counter,
            payload=payload,
            acb_ka_private=_acb_key(keystore),
            device_ka_public=_device_key(keystore, device),
            other_info_extras=extras,
        )
    assert built == expected
