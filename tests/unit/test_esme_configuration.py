"""The ESME's event log clearing (3.3, ECS15a), MPAN (6.20.1, ECS39a), privacy PIN (3.5,
ECS14) and power (4.16, ECS17c): kept by the model, refused when malformed, and the responses
against the RTDS vectors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dccsim.gbcs.commands import CommandContext, command_payload
from dccsim.gbcs.crypto import verify_mac
from dccsim.gbcs.dlms import AccessRequest, AccessResponse, decode_apdu
from dccsim.gbcs.frames import GeneralCiphering, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import (
    ACTION_OTHER_REASON,
    ACTION_SUCCESS,
    USE_CASES_BY_NAME,
    build_command,
)
from emulators.device import RemoteParty
from emulators.esme import EVENT_LOG, LoadProfile, LogEntry
from tests.unit.esme_site import ESME_EUI, START, SUPPLIER_EUI, Site
from tests.unit.gbcs_site import rtds_esme_stand_in


def send(site: Site, use_case: str, parameters: dict[str, object] | None = None) -> list[int]:
    """A non-critical set/action: its results (the response's MAC checked)."""
    site.counter += 1
    command = build_command(
        USE_CASES_BY_NAME[use_case],
        originator_title=SUPPLIER_EUI,
        device_title=ESME_EUI,
        counter=site.counter,
        payload=command_payload(
            use_case, CommandContext(site.counter, SUPPLIER_EUI, ESME_EUI, parameters or {})
        ),
        acb_ka_private=site.acb_ka,
        device_ka_public=site.device_ka.public_key(),
    )
    response = decode_message(site.esme.handle(command))
    assert isinstance(response, GeneralCiphering)
    assert verify_mac(
        response, private_key=site.supplier_ka, peer_public_key=site.device_ka.public_key()
    )
    apdu = decode_apdu(response.general_signing.payload)
    assert isinstance(apdu, AccessResponse)
    return [r.result for r in apdu.results]


def event_log(site: Site) -> int:
    """How many entries 6.13 (ECS35a) reads from the event log."""
    site.counter += 1
    command = build_command(
        USE_CASES_BY_NAME["ECS35a"],
        originator_title=SUPPLIER_EUI,
        device_title=ESME_EUI,
        counter=site.counter,
        payload=command_payload(
            "ECS35a",
            CommandContext(
                site.counter,
                SUPPLIER_EUI,
                ESME_EUI,
                {
                    "start_date_time": datetime(2001, 1, 1, tzinfo=UTC),
                    "end_date_time": datetime(2099, 1, 1, tzinfo=UTC),
                },
            ),
        ),
        acb_ka_private=site.acb_ka,
        device_ka_public=site.device_ka.public_key(),
    )
    response = decode_message(site.esme.handle(command))
    assert isinstance(response, GeneralCiphering)
    apdu = decode_apdu(response.general_signing.payload)
    assert isinstance(apdu, AccessResponse)
    value = apdu.data[0].value
    return len(value.elements())  # type: ignore[union-attr]


def test_clear_event_log_empties_what_6_13_reads() -> None:
    site = Site()
    site.esme.logs[EVENT_LOG] += [LogEntry(START, 0x8F3E), LogEntry(START, 0x8F12)]
    assert event_log(site) == 2
    assert send(site, "ECS15a") == [ACTION_SUCCESS]
    assert event_log(site) == 0


@pytest.mark.parametrize(
    ("twin", "mpxn"), [(False, b"1312345678333"), (True, b"13123456781111312345678222")]
)
def test_set_mpan_is_kept_across_a_power_cycle(twin: bool, mpxn: bytes) -> None:
    site = Site(twin=twin)
    assert send(site, "ECS39a", {"import_mpxn": mpxn}) == [ACTION_SUCCESS]
    fresh = Site(twin=twin)
    fresh.esme.restore_nonvolatile_state(site.esme.nonvolatile_state())
    assert fresh.esme.import_mpxn == mpxn


@pytest.mark.parametrize(
    ("twin", "mpxn"),
    [
        (False, b"13123456781111312345678222"),  # two MPANs for one element
        (True, b"1312345678111"),  # one MPAN for two elements
        (False, b"131234567833X"),
    ],
)
def test_an_mpan_that_does_not_fit_the_meter_is_refused(twin: bool, mpxn: bytes) -> None:
    site = Site(twin=twin)
    assert send(site, "ECS39a", {"import_mpxn": mpxn}) == [ACTION_OTHER_REASON]
    assert site.esme.import_mpxn == b""


# -- responses against the RTDS vectors ----------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "prefix", "twin", "party"),
    [
        ("3.3_ECS15a", "ECS15a_3.3_SUCCESS", False, "90b3d51f30010000"),
        ("3.5_ECS14", "ECS14_3.5_SUCCESS", False, "90b3d51f30010000"),
        ("6.12_ECS34", "ECS34_6.12_SUCCESS", False, "90b3d51f30010000"),
        ("4.16_ECS17c", "ECS17c_4.16_SUCCESS", False, "90b3d51f30020000"),  # to the NO
        ("6.20.1_ECS39a", "ECS39a_6.20.1_SINGLE_SUCCESS", False, "90b3d51f30010000"),
        ("6.20.1_ECS39a", "ECS39a_6.20.1_TWIN_SUCCESS", True, "90b3d51f30010000"),
    ],
)
def test_response_reproduces_the_rtds_vector(
    reference_dir: Path, folder: str, prefix: str, twin: bool, party: str
) -> None:
    """Static ECDH is symmetric: the remote party's KA key and the ESME's certificate stand
    in for the ESME's unpublished KA key pair; the handler gets the RTDS command. (The RTDS
    meter draws 10 W and its clock reads 2015-01-01.)"""
    supplier, device = rtds_esme_stand_in(reference_dir, party)
    rtds = reference_dir / "gbcs" / "rtds" / folder
    command = decode_message(parse_hex_or_base64((rtds / f"{prefix}_COMMAND_GBCS.HEX").read_text()))
    assert isinstance(command, GeneralCiphering)
    request = decode_apdu(command.general_signing.payload)
    assert isinstance(request, AccessRequest)
    site = Site(device_ka=supplier, twin=twin)
    site.esme.load_profile = LoadProfile(mean_power_w=10.0, twin_element=twin)
    handler = site.esme.routes[command.general_signing.message_code]
    built = getattr(site.esme, handler)(
        command=command,
        request=request,
        remote_party=RemoteParty(bytes.fromhex(party), device),
        now=datetime(2015, 1, 1, tzinfo=UTC),
    )
    expected = parse_hex_or_base64((rtds / f"{prefix}_RESPONSE_GBCS.HEX").read_text())
    assert built == expected


def test_disable_privacy_pin_is_kept() -> None:
    site = Site()
    assert site.esme.privacy_pin_protected
    assert send(site, "ECS14") == [ACTION_SUCCESS]
    fresh = Site()
    fresh.esme.restore_nonvolatile_state(site.esme.nonvolatile_state())
    assert not fresh.esme.privacy_pin_protected


@pytest.mark.parametrize(("twin", "primary"), [(False, 800), (True, 400)])
def test_active_power_is_the_meters_demand(twin: bool, primary: int) -> None:
    site = Site(twin=twin)
    site.esme.load_profile = LoadProfile(mean_power_w=800.0, twin_element=twin)
    total, unit, element = site.read("ECS17c").items
    assert (total.integer, element.integer) == (800, primary)
    assert [i.integer for i in unit.items] == [0, 27]  # watts


def test_power_thresholds_are_kept_and_must_rise() -> None:
    site = Site()
    thresholds: dict[str, object] = {
        "low_medium_power_threshold": 1000,
        "medium_high_power_threshold": 3000,
    }
    assert send(site, "ECS34", thresholds) == [ACTION_SUCCESS]
    assert site.esme.power_thresholds == (1000, 3000)
    falling: dict[str, object] = {
        "low_medium_power_threshold": 3000,
        "medium_high_power_threshold": 1000,
    }
    assert send(site, "ECS34", falling) == [ACTION_OTHER_REASON]
    fresh = Site()
    fresh.esme.restore_nonvolatile_state(site.esme.nonvolatile_state())
    assert fresh.esme.power_thresholds == (1000, 3000)
