"""Critical gas commands on the GSME model: the transform's Pre-Command, signed by the User and
wrapped by the ACB, reaches the GSME, which checks the User's signature, changes its state and
answers signed as the RTDS responses (payload byte for byte)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgpack
import pytest
from lxml import etree

from dccsim.duis.xml import parse_service_request
from dccsim.gbcs.alerts import describe_alert
from dccsim.gbcs.commands import CREDIT_PAYMENT_CONFIGURATION
from dccsim.gbcs.crypto import verify_frame_signature
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_command
from dccsim.gbcs.zigbee import METERING, decode_gbz
from emulators.device import ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE, DeviceRefusal
from emulators.gsme import (
    SUPPLY_OFF,
    SUPPLY_OFF_ARMED,
    SUPPLY_ON,
    SUPPLY_STATUS,
    Gsme,
)
from services.transform.srvs import lookup
from tests.unit.gbcs_site import CriticalKeys, rtds, rtds_payload
from tests.unit.gsme_site import (
    GSME_EUI,
    RTDS_ISSUED_AT,
    SUPPLIER_EUI,
    keyed_gsme,
    rtds_load,
    signed_command,
    signed_reply,
)

NOW = datetime(2015, 1, 1, 9, 17, tzinfo=UTC)


@pytest.fixture
def keys() -> CriticalKeys:
    return CriticalKeys.fresh()


@pytest.fixture
def clock() -> list[datetime]:
    return [NOW]


@pytest.fixture
def gsme(keys: CriticalKeys, clock: list[datetime]) -> Gsme:
    return keyed_gsme(
        keys, lambda: clock[0], load_profile=rtds_load(), epoch=NOW - timedelta(days=30)
    )


def _rtds_payload(reference_dir: Path, name: str) -> bytes:
    return rtds_payload(rtds(reference_dir, name))


def _register(gsme: Gsme) -> int:
    return gsme.registers.litres(gsme.clock())


def test_close_valve_answers_as_the_rtds_and_the_valve_reads_closed(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    reply = signed_reply(gsme, keys, signed_command(keys, "7.2", 1000))
    assert reply.payload == _rtds_payload(
        reference_dir, "7.2_GCS32/GCS32_7.2_SUCCESS_RESPONSE_GBCS.HEX"
    )
    assert gsme.supply_status == SUPPLY_OFF
    assert gsme.attributes[(METERING, SUPPLY_STATUS)][1] == SUPPLY_OFF


def test_arm_after_close_answers_as_the_rtds_and_the_consumer_opens_it(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys, clock: list[datetime]
) -> None:
    signed_reply(gsme, keys, signed_command(keys, "7.2", 1000))
    reply = signed_reply(gsme, keys, signed_command(keys, "7.3", 1001))
    assert reply.payload == _rtds_payload(
        reference_dir, "7.3_GCS39/GCS39_7.3_SUCCESS_RESPONSE_GBCS.HEX"
    )
    assert gsme.supply_status == SUPPLY_OFF_ARMED
    clock[0] += timedelta(hours=2)
    armed = _register(gsme)
    assert gsme.consumer_opens_valve(clock[0])
    assert gsme.supply_status == SUPPLY_ON
    clock[0] += timedelta(hours=2)
    assert _register(gsme) > armed  # gas flows again


def test_arming_an_open_valve_leaves_it_open(gsme: Gsme, keys: CriticalKeys) -> None:
    reply = signed_reply(gsme, keys, signed_command(keys, "7.3", 1000))
    (component,) = decode_gbz(reply.payload).components
    assert component.payload.values["supply_status"] == SUPPLY_ON
    assert gsme.supply_status == SUPPLY_ON
    assert not gsme.consumer_opens_valve(NOW)


def test_the_register_stops_while_the_valve_is_closed(
    gsme: Gsme, keys: CriticalKeys, clock: list[datetime]
) -> None:
    clock[0] += timedelta(hours=1)
    before = _register(gsme)
    signed_reply(gsme, keys, signed_command(keys, "7.2", 1000))
    clock[0] += timedelta(days=2)
    assert _register(gsme) == before
    # a reading of a moment before the closure still shows the gas drawn up to then
    assert gsme.registers.litres(clock[0] - timedelta(days=3)) < before


def test_a_valve_command_without_the_users_signature_is_refused(
    gsme: Gsme, keys: CriticalKeys
) -> None:
    transformation = lookup("7.2", "GSME")
    assert transformation is not None
    payload = transformation.payload(
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=1000,
        extra_parameters={"issued_at": RTDS_ISSUED_AT},
    )
    unsigned = build_command(
        USE_CASES_BY_NAME["GCS32"],
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=1000,
        payload=payload,
        acb_ka_private=keys.acb,
        device_ka_public=keys.device_ka.public_key(),
    )
    with pytest.raises(DeviceRefusal) as refused:
        gsme.handle(unsigned)
    assert refused.value.alert_code == ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE
    assert gsme.supply_status == SUPPLY_ON


def test_a_valve_fault_is_the_rtds_signed_error_and_leaves_the_valve(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    gsme.script_fault(USE_CASES_BY_NAME["GCS32"], 1)
    reply = signed_reply(gsme, keys, signed_command(keys, "7.2", 1005))
    assert reply.payload == _rtds_payload(
        reference_dir, "7.2_GCS32/GCS32_7.2_ERROR_RESPONSE_GBCS.HEX"
    )
    assert reply.date_time is None
    assert gsme.supply_status == SUPPLY_ON


def test_the_closed_valve_survives_a_power_cycle(
    gsme: Gsme, keys: CriticalKeys, clock: list[datetime]
) -> None:
    signed_reply(gsme, keys, signed_command(keys, "7.2", 1000))
    clock[0] += timedelta(hours=5)
    closed_at = _register(gsme)
    state = msgpack.unpackb(msgpack.packb(gsme.nonvolatile_state(), use_bin_type=True), raw=False)
    fresh = Gsme(
        eui=GSME_EUI,
        ka_private_key=keys.device_ka,
        ds_private_key=keys.device_ds,
        acb_ka_public=keys.acb.public_key(),
        remote_parties={},
        clock=lambda: clock[0],
        load_profile=gsme.registers.profile,
        epoch=gsme.registers.epoch,
    )
    fresh.restore_nonvolatile_state(state)
    assert fresh.supply_status == SUPPLY_OFF
    clock[0] += timedelta(days=1)
    assert _register(fresh) == closed_at


def _template_body(reference_dir: Path, template: str) -> etree._Element | None:
    path = reference_dir / "duis" / "templates" / f"{template}_REQUEST_DUIS.XML"
    return parse_service_request(path.read_bytes()).body


@pytest.mark.parametrize(
    ("template", "folder"),
    [
        ("GCS02_1.6_IMMEDIATE_SUCCESS", "1.6_GCS02"),
        ("GCS03_1.6_IMMEDIATE_SUCCESS", "1.6_GCS03"),
    ],
)
def test_payment_mode_change_answers_as_the_rtds_and_the_read_shows_it(
    reference_dir: Path,
    gsme: Gsme,
    keys: CriticalKeys,
    clock: list[datetime],
    template: str,
    folder: str,
) -> None:
    clock[0] = RTDS_ISSUED_AT  # the RTDS response's date-time
    command = signed_command(keys, "1.6", 1000, _template_body(reference_dir, template))
    reply = signed_reply(gsme, keys, command)
    assert reply.payload == _rtds_payload(reference_dir, f"{folder}/{template}_RESPONSE_GBCS.HEX")
    assert reply.date_time == bytes.fromhex("07df0101ff000000008000ff")
    (component,) = decode_gbz(decode_command_payload(command)).components
    proposed = component.payload.values["proposed_payment_control_configuration"]
    assert gsme.payment_configuration == proposed
    assert gsme.nonvolatile_state()["payment_mode"] == proposed


def decode_command_payload(command: bytes) -> bytes:
    message = decode_message(command)
    assert isinstance(message, GeneralCiphering)
    return message.general_signing.payload


def test_a_future_dated_payment_mode_runs_at_its_time_with_the_rtds_outcome_alert(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys, clock: list[datetime]
) -> None:
    before = gsme.payment_configuration
    body = _template_body(reference_dir, "GCS02_1.6_FUTURE_DATED_SUCCESS")
    signed_reply(gsme, keys, signed_command(keys, "1.6", 1001, body))
    assert gsme.payment_configuration == before and gsme.pending_payment_mode is not None
    due = gsme.next_due()
    assert due == datetime(2030, 1, 15, 9, tzinfo=UTC)
    gsme.run_due(due - timedelta(seconds=1))
    assert gsme.take_alerts() == []
    gsme.run_due(due)
    assert gsme.payment_configuration == CREDIT_PAYMENT_CONFIGURATION
    (alert,) = gsme.take_alerts()
    frame = decode_message(alert.frame)
    assert isinstance(frame, GeneralSigning) and alert.recipient == SUPPLIER_EUI
    assert verify_frame_signature(frame, keys.device_ds.public_key())
    rtds = decode_message(
        parse_hex_or_base64(
            (
                reference_dir
                / "gbcs/rtds/1.6_GCS02/GCS02_1.6_8F66_FUTURE_DATED_SUCCESS_ALERT_CHANGE_PAYMENT_MODE_GBCS.HEX"
            ).read_text()
        )
    )
    assert isinstance(rtds, GeneralSigning)
    assert frame.message_code == rtds.message_code
    assert frame.payload == rtds.payload
    assert describe_alert(alert.frame)["alert_code"] == describe_alert(rtds.encode())["alert_code"]


def test_a_cancellation_drops_the_held_payment_mode(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    future = _template_body(reference_dir, "GCS03_1.6_FUTURE_DATED_SUCCESS")
    cancel = _template_body(reference_dir, "GCS03_1.6_CANCELLATION_SUCCESS")
    signed_reply(gsme, keys, signed_command(keys, "1.6", 1005, future))
    assert gsme.pending_payment_mode is not None
    before = gsme.payment_configuration
    signed_reply(gsme, keys, signed_command(keys, "1.6", 1006, cancel))
    assert gsme.pending_payment_mode is None and gsme.next_due() is None
    assert gsme.payment_configuration == before


def test_a_held_payment_mode_survives_a_power_cycle(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys, clock: list[datetime]
) -> None:
    body = _template_body(reference_dir, "GCS02_1.6_FUTURE_DATED_SUCCESS")
    signed_reply(gsme, keys, signed_command(keys, "1.6", 1001, body))
    state = msgpack.unpackb(msgpack.packb(gsme.nonvolatile_state(), use_bin_type=True), raw=False)
    fresh = Gsme(
        eui=GSME_EUI,
        ka_private_key=keys.device_ka,
        ds_private_key=keys.device_ds,
        acb_ka_public=keys.acb.public_key(),
        remote_parties={},
        clock=lambda: clock[0],
    )
    fresh.restore_nonvolatile_state(state)
    assert fresh.pending_payment_mode == gsme.pending_payment_mode
    assert fresh.next_due() == datetime(2030, 1, 15, 9, tzinfo=UTC)


def _clock_body(current: datetime, tolerance: int) -> etree._Element:
    return etree.fromstring(
        '<sr:SynchroniseClock xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway">'
        f"<sr:CurrentDateTime>{current:%Y-%m-%dT%H:%M:%SZ}</sr:CurrentDateTime>"
        f"<sr:TolerancePeriod>{tolerance}</sr:TolerancePeriod></sr:SynchroniseClock>"
    )


def test_set_clock_within_the_tolerance_answers_as_the_rtds_and_moves_the_clock(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys, clock: list[datetime]
) -> None:
    """The RTDS GCS28: valid from 23:30 for an hour; the GSME, at 23:45, sets 23:30."""
    clock[0] = datetime(2014, 12, 31, 23, 45, tzinfo=UTC)
    body = _template_body(reference_dir, "GCS28_6.11_SUCCESS")
    reply = signed_reply(gsme, keys, signed_command(keys, "6.11", 1000, body))
    assert reply.payload == _rtds_payload(
        reference_dir, "6.11_GCS28/GCS28_6.11_SUCCESS_RESPONSE_GBCS.HEX"
    )
    assert gsme.device_time(clock[0]) == datetime(2014, 12, 31, 23, 30, tzinfo=UTC)
    state = msgpack.unpackb(msgpack.packb(gsme.nonvolatile_state(), use_bin_type=True), raw=False)
    assert state["clock_offset_us"] == -15 * 60 * 1_000_000


def test_set_clock_outside_the_tolerance_is_refused_and_leaves_the_clock(
    gsme: Gsme, keys: CriticalKeys, clock: list[datetime]
) -> None:
    body = _clock_body(clock[0] - timedelta(hours=3), 3600)
    reply = signed_reply(gsme, keys, signed_command(keys, "6.11", 1000, body))
    assert reply.payload[-3:] == bytes.fromhex("020102")  # result 2: not set
    assert gsme.device_time(clock[0]) == clock[0]


def test_commissioning_sets_the_clock_too(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys, clock: list[datetime]
) -> None:
    clock[0] = datetime(2015, 1, 1, 0, 10, tzinfo=UTC)
    body = _template_body(reference_dir, "GCS28Commission_8.1.1_SUCCESS")
    signed_reply(gsme, keys, signed_command(keys, "8.1.1", 1000, body))
    assert gsme.device_time(clock[0]) == datetime(2014, 12, 31, 23, 30, tzinfo=UTC)
