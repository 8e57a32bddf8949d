"""The ESME's load switch and clock: critical commands from Signed Pre-Commands, end to end
with fresh keys, and the response layouts against the RTDS vectors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dccsim.gbcs import dlms
from dccsim.gbcs.commands import CommandContext, command_payload
from dccsim.gbcs.crypto import verify_frame_signature
from dccsim.gbcs.dlms import AccessResponse, decode_apdu
from dccsim.gbcs.frames import (
    CRA_RESPONSE,
    GeneralCiphering,
    GeneralSigning,
    decode_message,
    parse_hex_or_base64,
)
from dccsim.gbcs.usecases import (
    ACTION_SUCCESS,
    USE_CASES_BY_NAME,
    build_access_response,
    build_command,
    build_signed_access_response,
)
from emulators.device import (
    ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE,
    DeviceRefusal,
)
from emulators.esme import SupplyState
from tests.unit import esme_site
from tests.unit.esme_site import ESME_EUI, START, SUPPLIER_EUI, fresh_key
from tests.unit.gbcs_site import rtds_esme_stand_in


class Site(esme_site.Site):
    def read_supply(self) -> int:
        return self.read_response("ECS45").data[0].integer

    def signed_response(self, data: bytes) -> AccessResponse:
        frame = decode_message(data)
        assert isinstance(frame, GeneralSigning)
        assert frame.cra_flag == CRA_RESPONSE and frame.date_time is None
        assert verify_frame_signature(frame, self.device_ds.public_key())
        apdu = decode_apdu(frame.payload)
        assert isinstance(apdu, AccessResponse)
        return apdu


@pytest.fixture
def site() -> Site:
    return Site()


def test_disable_then_enable_supply(site: Site) -> None:
    assert site.read_supply() == SupplyState.CONNECTED
    response = site.signed_response(site.esme.handle(site.critical_command("ECS43")))
    assert [r.result for r in response.results] == [ACTION_SUCCESS]
    assert site.read_supply() == SupplyState.DISCONNECTED
    site.signed_response(site.esme.handle(site.critical_command("ECS42")))
    assert site.read_supply() == SupplyState.CONNECTED


def test_arm_then_consumer_closes(site: Site) -> None:
    site.esme.handle(site.critical_command("ECS43"))
    site.signed_response(site.esme.handle(site.critical_command("ECS44")))
    assert site.read_supply() == SupplyState.ARMED
    site.esme.consumer_closes_switch()
    assert site.read_supply() == SupplyState.CONNECTED


def test_critical_command_signed_by_someone_else_is_refused(site: Site) -> None:
    with pytest.raises(DeviceRefusal) as caught:
        site.esme.handle(site.critical_command("ECS43", signer=fresh_key()))
    assert caught.value.alert_code == ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE
    assert site.read_supply() == SupplyState.CONNECTED


def test_critical_command_without_signature_is_refused(site: Site) -> None:
    site.counter += 1
    command = build_command(  # MAC'd, but not signed by the User
        USE_CASES_BY_NAME["ECS43"],
        originator_title=SUPPLIER_EUI,
        device_title=ESME_EUI,
        counter=site.counter,
        payload=command_payload("ECS43", CommandContext(site.counter, SUPPLIER_EUI, ESME_EUI)),
        acb_ka_private=site.acb_ka,
        device_ka_public=site.device_ka.public_key(),
    )
    with pytest.raises(DeviceRefusal):
        site.esme.handle(command)
    assert site.read_supply() == SupplyState.CONNECTED


def test_refused_critical_command_does_not_consume_its_counter(site: Site) -> None:
    with pytest.raises(DeviceRefusal):
        site.esme.handle(site.critical_command("ECS43", signer=fresh_key()))
    site.counter -= 1  # the same counter, now properly signed
    site.signed_response(site.esme.handle(site.critical_command("ECS43")))


def test_scripted_fault_on_critical_command_is_a_signed_failure(site: Site) -> None:
    site.esme.script_fault(USE_CASES_BY_NAME["ECS43"], 1)
    response = site.signed_response(site.esme.handle(site.critical_command("ECS43")))
    assert [r.result for r in response.results] == [1]
    assert site.read_supply() == SupplyState.CONNECTED


def test_set_clock_within_tolerance_adjusts_device_time(site: Site) -> None:
    target = START + timedelta(seconds=-30)
    response = site.signed_response(
        site.esme.handle(
            site.critical_command("ECS70", {"current_date_time": target, "tolerance_period": 60})
        )
    )
    assert [r.result for r in response.results] == [ACTION_SUCCESS] * 5
    assert response.data[3].octets == dlms.encode_date_time(target)
    assert site.esme.device_time(START) == target


def test_set_clock_outside_tolerance_leaves_clock(site: Site) -> None:
    target = START + timedelta(hours=2)
    response = site.signed_response(
        site.esme.handle(
            site.critical_command("ECS70", {"current_date_time": target, "tolerance_period": 60})
        )
    )
    assert response.results[2].result != ACTION_SUCCESS
    assert site.esme.device_time(START) == START


# -- response layouts against the RTDS vectors -------------------------------------------------


def _vector(reference_dir: Path, folder: str, name: str) -> bytes:
    return parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / folder / name).read_text())


def test_supply_status_response_reproduces_the_rtds_vector(reference_dir: Path) -> None:
    """Static ECDH is symmetric: the supplier's KA key and the ESME's certificate stand in
    for the ESME's unpublished KA key pair."""
    supplier, device = rtds_esme_stand_in(reference_dir)
    command = decode_message(
        _vector(reference_dir, "7.4_ECS45", "ECS45_7.4_SUCCESS_COMMAND_GBCS.HEX")
    )
    assert isinstance(command, GeneralCiphering)
    built = build_access_response(
        command=command,
        data=(dlms.enum(SupplyState.CONNECTED),),
        results=(ACTION_SUCCESS,),
        date_time=None,
        device_ka_private=supplier,
        recipient_ka_public=device,
    )
    assert built == _vector(reference_dir, "7.4_ECS45", "ECS45_7.4_SUCCESS_RESPONSE_GBCS.HEX")


@pytest.mark.parametrize(
    ("folder", "prefix"),
    [("7.1_ECS42", "ECS42_7.1"), ("7.2_ECS43", "ECS43_7.2"), ("7.3_ECS44", "ECS44_7.3")],
)
def test_signed_supply_response_matches_the_rtds_vector_but_for_the_signature(
    reference_dir: Path, folder: str, prefix: str
) -> None:
    command = decode_message(_vector(reference_dir, folder, f"{prefix}_SUCCESS_COMMAND_GBCS.HEX"))
    assert isinstance(command, GeneralCiphering)
    reference = decode_message(
        _vector(reference_dir, folder, f"{prefix}_SUCCESS_RESPONSE_GBCS.HEX")
    )
    assert isinstance(reference, GeneralSigning)
    built = decode_message(
        build_signed_access_response(
            command=command,
            data=(dlms.null(),),
            results=(ACTION_SUCCESS,),
            device_ds_private=fresh_key(),  # the ESME's DS key is not published; ECDSA is randomised
        )
    )
    assert isinstance(built, GeneralSigning)
    assert built.signed_bytes() == reference.signed_bytes()
    assert built.signature_field == reference.signature_field == "signed"
