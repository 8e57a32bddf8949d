"""The ESME's side of the HAN joins: CS03A1 (critical, signed both ways), CS03B (MAC'd both
ways), the join table CS07 reads and the meter keeps across a power cycle."""

from __future__ import annotations

import pytest

from dccsim.gbcs import der
from dccsim.gbcs.commands import JOIN_DEVICE_TYPES, CommandContext, command_payload
from dccsim.gbcs.crypto import verify_mac
from dccsim.gbcs.frames import GeneralCiphering, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_command
from emulators.device import DeviceRefusal
from emulators.esme import Esme
from emulators.han import (
    CS07,
    JOIN_INCOMPATIBLE_WITH_EXISTING_ENTRY,
    JOIN_INVALID_METHOD_AND_ROLE,
    JOIN_SUCCESS,
)
from tests.unit.esme_site import ESME_EUI, SUPPLIER_EUI, Site, fresh_key

PPMID = bytes.fromhex("00DB12345678909A")
IHD = bytes.fromhex("00DB12345678909C")


def _join(other: bytes, kind: str) -> dict[str, object]:
    return {"other_device_id": other, "other_device_type": kind}


def _result(payload: bytes) -> int:
    value = der.decode_with(der.integer("result"), payload)
    assert isinstance(value, int)
    return value


def _maced(site: Site, use_case_name: str, payload: bytes) -> GeneralCiphering:
    """A MAC'd (non-critical) command from the Supplier; the ESME's MAC'd response."""
    site.counter += 1
    use_case = CS07 if use_case_name == "CS07" else USE_CASES_BY_NAME[use_case_name]
    command = build_command(
        use_case,
        originator_title=SUPPLIER_EUI,
        device_title=ESME_EUI,
        counter=site.counter,
        payload=payload,
        acb_ka_private=site.acb_ka,
        device_ka_public=site.device_ka.public_key(),
    )
    response = decode_message(site.esme.handle(command))
    assert isinstance(response, GeneralCiphering)
    assert verify_mac(
        response, private_key=site.supplier_ka, peer_public_key=site.device_ka.public_key()
    )
    return response


def _join_details(site: Site) -> list[tuple[bytes, int]]:
    """CS07's joined devices (EUI-64, GBCS device type)."""
    response = _maced(site, "CS07", b"\x05\x00")
    tree = der.Tlv.decode(response.general_signing.payload)
    result, *rest = tree.children
    assert result.content == b"\x00"
    entries = rest[0].children if rest else []
    return [(e.children[0].content, int.from_bytes(e.children[1].content, "big")) for e in entries]


def test_cs03a1_signed_by_the_supplier_joins_the_type1_device_and_cs07_reads_it() -> None:
    site = Site()
    response = site.critical("CS03A1", _join(PPMID, "PPMID"), signer=site.supplier_ds)
    assert _result(response.payload) == JOIN_SUCCESS
    assert site.esme.joined == {PPMID: JOIN_DEVICE_TYPES["PPMID"]}
    assert _join_details(site) == [(PPMID, JOIN_DEVICE_TYPES["PPMID"])]


def test_cs03a1_signed_by_another_key_is_refused_and_joins_nothing() -> None:
    site = Site()
    with pytest.raises(DeviceRefusal):
        site.critical("CS03A1", _join(PPMID, "PPMID"), signer=fresh_key())
    assert site.esme.joined == {}


def test_cs03a1_of_a_type2_device_is_an_invalid_join_method() -> None:
    site = Site()
    response = site.critical("CS03A1", _join(IHD, "IHD"), signer=site.supplier_ds)
    assert _result(response.payload) == JOIN_INVALID_METHOD_AND_ROLE
    assert site.esme.joined == {}


def test_joining_a_joined_device_as_another_type_is_incompatible() -> None:
    site = Site()
    site.critical("CS03A1", _join(PPMID, "PPMID"), signer=site.supplier_ds)
    response = site.critical("CS03A1", _join(PPMID, "HCALCS"), signer=site.supplier_ds)
    assert _result(response.payload) == JOIN_INCOMPATIBLE_WITH_EXISTING_ENTRY
    assert site.esme.joined == {PPMID: JOIN_DEVICE_TYPES["PPMID"]}


def test_cs03b_joins_an_ihd_answered_maced() -> None:
    site = Site()
    payload = command_payload(
        "CS03B", CommandContext(site.counter + 1, SUPPLIER_EUI, ESME_EUI, _join(IHD, "IHD"))
    )
    response = _maced(site, "CS03B", payload)
    assert _result(response.general_signing.payload) == JOIN_SUCCESS
    assert _join_details(site) == [(IHD, JOIN_DEVICE_TYPES["IHD"])]


def test_the_join_table_survives_a_power_cycle() -> None:
    site = Site()
    site.critical("CS03A1", _join(PPMID, "PPMID"), signer=site.supplier_ds)
    state = site.esme.nonvolatile_state()
    rebuilt = Esme(
        eui=ESME_EUI,
        ka_private_key=site.device_ka,
        ds_private_key=site.device_ds,
        acb_ka_public=site.acb_ka.public_key(),
        remote_parties=site.esme.remote_parties,
        clock=lambda: site.now,
    )
    assert rebuilt.joined == {}
    rebuilt.restore_nonvolatile_state(state)
    assert rebuilt.joined == {PPMID: JOIN_DEVICE_TYPES["PPMID"]}
