"""Held future-dated DLMS commands that fail when they fall due: 1.6 (ECS02/ECS03), 1.1.1
(ECS01a) and 2.1 (ECS08a) change nothing and raise 0x8F67 (future-dated command failed), one
per part they would have changed, as 0x8F66 names them on success."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from dccsim.gbcs.alerts import MESSAGE_CODE_FUTURE_DATED_DLMS, describe_alert
from dccsim.gbcs.commands import CREDIT_MODE, PREPAYMENT_MODE
from dccsim.gbcs.crypto import verify_frame_signature
from dccsim.gbcs.dlms import encode_date_time
from dccsim.gbcs.frames import GeneralSigning, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from emulators.device import RaisedAlert
from emulators.esme import DEFAULT_TARIFF, FUTURE_DATED_TARGETS, PrepaymentConfiguration
from tests.unit.esme_site import START, SUPPLIER_EUI, Site

AT = START + dt.timedelta(hours=1)
PREPAYMENT: dict[str, object] = {
    "disablement_threshold": 500,
    "suspend_debt_disabled": True,
    "suspend_debt_emergency": False,
}
CONFIGURATION: dict[str, object] = {
    "debt_recovery_rate_cap": 30,
    "emergency_credit_limit": 300000,
    "emergency_credit_threshold": 100000,
    "low_credit_threshold": 200000,
    "max_meter_balance": 5000000,
    "max_credit_threshold": 1000000,
}
# the held change of each use case, and what it is held as
HELD: dict[str, tuple[dict[str, object], str]] = {
    "ECS02": ({}, "account"),
    "ECS03": (PREPAYMENT, "account"),
    "ECS01a": ({"tariff": dataclasses.replace(DEFAULT_TARIFF, standing_charge=777)}, "tariff"),
    "ECS08a": (CONFIGURATION, "prepayment_configuration"),
}


def _failed(site: Site, alert: RaisedAlert) -> tuple[int, bytes, int]:
    """The (class, instance, member) an 8F67 alert names, its frame and fields checked."""
    assert alert.alert_code == 0x8F67 and alert.recipient == SUPPLIER_EUI
    frame = decode_message(alert.frame)
    assert isinstance(frame, GeneralSigning)
    assert frame.message_code == MESSAGE_CODE_FUTURE_DATED_DLMS
    assert frame.recipient_title == SUPPLIER_EUI
    assert verify_frame_signature(frame, site.device_ds.public_key())
    described = describe_alert(alert.frame)
    assert (
        described["alert_code"] == "0x8f67" and described["date_time"] == encode_date_time(AT).hex()
    )
    fd = described["future_dated"]
    assert fd["outcome"] == "failed"
    return fd["class_id"], bytes.fromhex(fd["instance_id"]), fd["member_id"]


def _state(site: Site) -> tuple[object, ...]:
    esme = site.esme
    return esme.account, esme.tariff, esme.prepayment


@pytest.mark.parametrize("use_case", list(HELD))
def test_a_held_command_scripted_to_fail_changes_nothing_and_raises_8f67(use_case: str) -> None:
    site = Site()
    parameters, kind = HELD[use_case]
    if use_case == "ECS02":  # a credit-mode change is held on a prepayment meter
        site.critical("ECS03", PREPAYMENT, signer=site.supplier_ds)
    site.critical(use_case, {**parameters, "execution_date_time": AT}, signer=site.supplier_ds)
    counter = site.counter
    before = _state(site)
    site.esme.script_future_dated_failure(kind)
    site.esme.run_due(AT)
    alerts = site.esme.take_alerts()
    assert [_failed(site, a) for a in alerts] == list(FUTURE_DATED_TARGETS[use_case])
    for alert in alerts:
        fd = describe_alert(alert.frame)["future_dated"]
        assert fd["originator_counter"] == counter
        assert fd["message_code"] == f"{USE_CASES_BY_NAME[use_case].message_code:#06x}"
    assert _state(site) == before
    assert site.esme.next_due() is None  # dropped, not retried


def test_a_scripted_failure_fails_only_the_next_execution() -> None:
    site = Site()
    site.esme.script_future_dated_failure("account")
    site.critical("ECS03", {**PREPAYMENT, "execution_date_time": AT}, signer=site.supplier_ds)
    site.esme.run_due(AT)
    assert {a.alert_code for a in site.esme.take_alerts()} == {0x8F67}
    assert site.esme.account.payment_mode == CREDIT_MODE
    later = AT + dt.timedelta(hours=1)
    site.critical("ECS03", {**PREPAYMENT, "execution_date_time": later}, signer=site.supplier_ds)
    site.esme.run_due(later)
    assert [a.alert_code for a in site.esme.take_alerts()] == [0x8F66, 0x8F66]
    assert site.esme.account.payment_mode == PREPAYMENT_MODE


def test_a_held_account_that_no_longer_fits_the_meter_fails() -> None:
    """A twin-element account held by a meter whose state is restored onto a single-element
    ESME: at its execution time the meter lacks the second element's charge."""
    twin = Site(twin=True)
    twin.critical(
        "ECS03", {**PREPAYMENT, "twin": True, "execution_date_time": AT}, signer=twin.supplier_ds
    )
    single = twin.with_same_keys(counter=1000)  # and a single-element ESME
    single.esme.restore_nonvolatile_state(twin.esme.nonvolatile_state())
    single.now = AT
    mode = single.read("ECS26j")  # the meter runs what is due before answering
    assert mode.items[0].integer == CREDIT_MODE
    alerts = single.esme.take_alerts()
    assert [_failed(single, a) for a in alerts] == list(FUTURE_DATED_TARGETS["ECS03"])


def test_a_held_command_that_executes_still_raises_8f66() -> None:
    site = Site()
    site.critical("ECS08a", {**CONFIGURATION, "execution_date_time": AT}, signer=site.supplier_ds)
    site.esme.run_due(AT)
    assert [a.alert_code for a in site.esme.take_alerts()] == [0x8F66] * 9
    assert site.esme.prepayment.configuration.emergency_credit_limit == 300000


def test_a_scripted_failure_survives_a_power_cycle() -> None:
    site = Site()
    site.critical("ECS08a", {**CONFIGURATION, "execution_date_time": AT}, signer=site.supplier_ds)
    site.esme.script_future_dated_failure("prepayment_configuration")
    fresh = site.with_same_keys(counter=1000)
    fresh.esme.restore_nonvolatile_state(site.esme.nonvolatile_state())
    fresh.esme.run_due(AT)
    assert [a.alert_code for a in fresh.esme.take_alerts()] == [0x8F67] * 9
    assert fresh.esme.prepayment.configuration == PrepaymentConfiguration()


def test_only_held_dlms_changes_can_be_scripted_to_fail() -> None:
    with pytest.raises(ValueError, match="firmware"):
        Site().esme.script_future_dated_failure("firmware")


def test_the_prepayment_configuration_alert_targets_are_the_rtds_vectors(
    reference_dir: Path,
) -> None:
    """What the 2.1_ECS08a 8F66 alerts name, in counter order, is what the ESME names (for
    8F66 and 8F67 alike)."""
    alerts = []
    for path in (reference_dir / "gbcs" / "rtds" / "2.1_ECS08a").glob("*8F66*ALERT*"):
        described = describe_alert(parse_hex_or_base64(path.read_text()))
        fd = described["future_dated"]
        target = (fd["class_id"], bytes.fromhex(fd["instance_id"]), fd["member_id"])
        alerts.append((described["counter"], target))
    assert len(alerts) == 9
    assert [t for _, t in sorted(alerts)] == list(FUTURE_DATED_TARGETS["ECS08a"])
