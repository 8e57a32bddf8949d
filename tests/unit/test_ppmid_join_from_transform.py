"""8.7.2 to a PPMID: the command transform builds (ACB-originated, ACB-signed, MAC'd for the
PPMID) is one the PPMID model joins on, answering signed; without the ACB's DS key transform
does not build it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from dccsim.gbcs import der
from dccsim.gbcs.commands import JOIN_DEVICE_TYPES
from dccsim.gbcs.crypto import verify_frame_signature
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralSigning, decode_message
from emulators.device import RemoteParty
from emulators.han import JOIN_SUCCESS
from emulators.ppmid import Ppmid
from services.transform.srvs import SR_NS, build_command, lookup, user_extras

PPMID = bytes.fromhex("00DCC5AA00000071")
ESME = bytes.fromhex("00DCC50000000102")
ACB = bytes.fromhex("90B3D51F30000002")
USER = bytes.fromhex("90B3D51F3001D000")


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _body() -> etree._Element:
    return etree.fromstring(
        f'<sr:JoinServiceNonCritical xmlns:sr="{SR_NS}"><sr:OtherDeviceID>'
        "00-DC-C5-00-00-00-01-02</sr:OtherDeviceID></sr:JoinServiceNonCritical>"
    )


def test_the_ppmid_joins_the_esme_the_acb_signed_join_names() -> None:
    acb_ka, acb_ds, ppmid_ka, ppmid_ds = _key(), _key(), _key(), _key()
    ppmid = Ppmid(
        eui=PPMID,
        ka_private_key=ppmid_ka,
        ds_private_key=ppmid_ds,
        acb_ka_public=acb_ka.public_key(),
        remote_parties={ACB: RemoteParty(ACB, acb_ka.public_key(), acb_ds.public_key())},
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )
    transformation = lookup("8.7.2", "PPMID")
    assert transformation is not None
    command = {
        "originator_title": ACB,
        "device_title": PPMID,
        "counter": 5000,
        "acb_ka_private": acb_ka,
        "device_ka_public": ppmid_ka.public_key(),
        "body": _body(),
        "other_info_extras": user_extras(USER, 1000),
        "extra_parameters": {"other_device_type": "ESME"},
    }
    with pytest.raises(GbcsError, match="signed"):
        build_command(transformation, **command)  # type: ignore[arg-type]
    frame = build_command(transformation, **command, acb_ds_private=acb_ds)  # type: ignore[arg-type]
    answer = decode_message(ppmid.handle(frame))
    assert isinstance(answer, GeneralSigning)
    assert verify_frame_signature(answer, ppmid_ds.public_key())
    assert der.decode_with(der.integer("result"), answer.payload) == JOIN_SUCCESS
    assert ppmid.joined == {ESME: JOIN_DEVICE_TYPES["ESME"]}
