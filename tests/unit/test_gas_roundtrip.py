"""Every gas row of the transformation table, built by transform and answered by the emulated
GSME or GPF: the answer is the row's use case (not a ZCL Default Response refusing it), MAC'd
for its recipient, and its content decrypts for the User."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from dccsim.gbcs.crypto import content_context, decrypt_content, verify_mac
from dccsim.gbcs.frames import GeneralCiphering, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.gbcs.zigbee import decode_gbz, decode_zcl_payload
from emulators.device import RemoteParty
from emulators.gpf import Gpf
from emulators.gsme import DEFAULT_RESPONSE, GasLoadProfile, GasRegisters, GbzDevice, Gsme
from services.transform.srvs import (
    SR_NS,
    TRANSFORMATIONS,
    Transformation,
    build_command,
    user_extras,
)

DEVICE_EUI = bytes.fromhex("00DCC50000000103")
SUPPLIER_EUI = bytes.fromhex("90B3D51F3001D000")
ACB_EUI = bytes.fromhex("90B3D51F30000002")
NOW = datetime(2026, 3, 1, 9, 17, tzinfo=UTC)
GAS = GasRegisters(GasLoadProfile.from_seed(7), datetime(2026, 1, 1, tzinfo=UTC))
GAS_ROWS = [t for t in TRANSFORMATIONS if t.device_type in ("GSME", "GPF")]


class Keys:
    def __init__(self) -> None:
        self.acb = ec.generate_private_key(ec.SECP256R1())
        self.device = ec.generate_private_key(ec.SECP256R1())
        self.supplier = ec.generate_private_key(ec.SECP256R1())


def _model(device_type: str, keys: Keys) -> GbzDevice:
    parties = {
        SUPPLIER_EUI: RemoteParty(SUPPLIER_EUI, keys.supplier.public_key()),
        ACB_EUI: RemoteParty(ACB_EUI, keys.acb.public_key()),
    }
    common = {
        "eui": DEVICE_EUI,
        "ka_private_key": keys.device,
        "ds_private_key": ec.generate_private_key(ec.SECP256R1()),
        "acb_ka_public": keys.acb.public_key(),
        "remote_parties": parties,
        "clock": lambda: NOW,
    }
    if device_type == "GPF":
        return Gpf(**common, mirror=GAS)  # type: ignore[arg-type]
    return Gsme(**common, load_profile=GAS.profile, epoch=GAS.epoch)  # type: ignore[arg-type]


def _body(transformation: Transformation) -> etree._Element:
    period = (
        "<sr:ReadLogPeriod><sr:StartDateTime>2026-02-20T00:00:00Z</sr:StartDateTime>"
        "<sr:EndDateTime>2026-02-22T00:00:00Z</sr:EndDateTime></sr:ReadLogPeriod>"
    )
    inner = period if transformation.srv in ("4.8.1", "4.17") else ""
    return etree.fromstring(
        f'<sr:{transformation.body_element} xmlns:sr="{SR_NS}">{inner}'
        f"</sr:{transformation.body_element}>".encode()
    )


@pytest.mark.parametrize(
    "transformation", GAS_ROWS, ids=[f"{t.srv}-{t.device_type}" for t in GAS_ROWS]
)
def test_gas_row_is_answered_by_the_device_model(transformation: Transformation) -> None:
    keys = Keys()
    body = _body(transformation)
    originator, counter, extras = SUPPLIER_EUI, 1000, b""
    if transformation.acb_originated:
        originator, counter = ACB_EUI, 5000
        extras = user_extras(SUPPLIER_EUI, 1000) + transformation.user_certificate_der(body)
    command = build_command(
        transformation,
        originator_title=originator,
        device_title=DEVICE_EUI,
        counter=counter,
        acb_ka_private=keys.acb,
        device_ka_public=keys.device.public_key(),
        body=body,
        other_info_extras=extras,
    )
    response = decode_message(_model(transformation.device_type, keys).handle(command))
    assert isinstance(response, GeneralCiphering)
    frame = response.general_signing
    assert frame.cra_flag == 2 and frame.originator_title == DEVICE_EUI
    assert frame.recipient_title == originator
    assert frame.message_code == USE_CASES_BY_NAME[transformation.use_case].message_code
    recipient = keys.acb if originator == ACB_EUI else keys.supplier
    assert verify_mac(response, private_key=recipient, peer_public_key=keys.device.public_key())
    for component in decode_gbz(frame.payload).components:
        assert component.header.command != DEFAULT_RESPONSE, "the model refused the command"
        if component.encrypted_content is None:
            assert all(r.get("status") == 0 for r in component.payload.records)
            continue
        context = content_context(frame)
        assert context.recipient_title == SUPPLIER_EUI
        plaintext = decrypt_content(
            component.encrypted_content,
            device_title=DEVICE_EUI,
            counter=context.counter,
            recipient_title=SUPPLIER_EUI,
            private_key=keys.supplier,
            peer_public_key=keys.device.public_key(),
        )
        zcl = decode_zcl_payload(component.cluster, component.header, plaintext)
        assert zcl.layout is not None and not zcl.rest
        assert zcl.records
