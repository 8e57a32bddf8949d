"""1.1.1 Update Import Tariff to a GSME (GCS01a): the DUIS templates become the RTDS
Pre-Commands and commands byte for byte; the GSME takes the tariff (now, future-dated with the
RTDS 8F66 alerts, or cancelled), answers as the RTDS responses and its TOU registers follow the
tariff's calendar."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgpack
import pytest

from dccsim.duis.xml import ServiceRequest
from dccsim.gbcs.crypto import (
    content_context,
    decrypt_content,
    verify_frame_signature,
    verify_mac,
)
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.gbcs.zigbee import ZclHeader, decode_gbz, decode_zcl_payload
from emulators.gsme import (
    CURRENT_TIER_SUMMATIONS,
    ZCL_INVALID_FIELD,
    Gsme,
)
from services.transform.srvs import (
    ServiceRequestBodyError,
    build_command,
    lookup,
)
from tests.unit.gbcs_site import (
    CriticalKeys,
    assert_rtds_command_wraps,
    checked_transformation,
    duis_template,
    keystore_private,
    keystore_public,
    request_pre_command,
    rtds,
    rtds_payload,
)
from tests.unit.gsme_site import (
    GSME_EUI,
    RTDS_ISSUED_AT,
    SUPPLIER_EUI,
    keyed_gsme,
    rtds_load,
    signed_command,
    signed_reply,
)

FOLDER = "1.1.1_GCS01a"
TEMPLATES = (
    "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS",
    "GCS01a_1.1.1_FUTURE_DATED_BLOCK_SUCCESS",
    "GCS01a_1.1.1_CANCELLATION_BLOCK_SUCCESS",
)
RTDS_DATE_TIME = bytes.fromhex("07df0101ff000000008000ff")  # 2015-01-01 00:00, the responses'
EXECUTION = dt.datetime(2030, 1, 15, 9, tzinfo=dt.UTC)  # the FUTURE_DATED template's
# the RTDS 8F66 alerts of the future-dated tariff, in the order the GSME raises them (the
# order of the command's components that carry a start time; the alert counters 3009-3013)
FUTURE_DATED_ALERTS = (
    "PUBLISH_CALENDAR",
    "PUBLISH_SPECIAL_DAYS",
    "PUBLISH_TARIFF_INFORMATION",
    "PUBLISH_BLOCK_THRESHOLDS",
    "PUBLISH_PRICE_MATRIX",
)


def _rtds(reference_dir: Path, name: str) -> bytes:
    return rtds(reference_dir, f"{FOLDER}/{name}")


def _request(reference_dir: Path, template: str) -> ServiceRequest:
    return duis_template(reference_dir, f"{template}_REQUEST_DUIS.XML")


# -- the transform ---------------------------------------------------------------------------


@pytest.mark.parametrize("template", TEMPLATES)
def test_the_gas_tariff_template_becomes_the_rtds_pre_command_and_command(
    reference_dir: Path, template: str
) -> None:
    request = _request(reference_dir, template)
    transformation = checked_transformation(request, "GSME", critical=True)
    assert transformation.use_case == "GCS01a"
    rid = request.request_id
    pre_command = request_pre_command(transformation, request, {"issued_at": RTDS_ISSUED_AT})
    assert pre_command == _rtds(reference_dir, f"{template}_PRECOMMAND_GBCS.HEX")
    # the RTDS command is that Pre-Command signed by the Supplier, MAC'd by the ACB
    command = assert_rtds_command_wraps(
        reference_dir,
        _rtds(reference_dir, f"{template}_COMMAND_GBCS.HEX"),
        pre_command,
        originator=rid.originator,
        target=rid.target,
    )
    assert verify_mac(
        command,  # the same bytes: its MAC is the ACB's for the GSME
        private_key=keystore_private(reference_dir),
        peer_public_key=keystore_public(reference_dir, f"{rid.target.hex()}-ka"),
    )


def test_a_tou_day_naming_a_tier_without_a_price_is_refused(reference_dir: Path) -> None:
    request = _request(reference_dir, "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS")
    assert request.body is not None
    prices = request.body.findall(".//{*}TOUPrice")
    parent = prices[-1].getparent()
    assert parent is not None
    parent.remove(prices[-1])  # tier 4's price gone, day 4 still names it
    transformation = lookup("1.1.1", "GSME")
    assert transformation is not None
    with pytest.raises(ServiceRequestBodyError, match="TOUPrice"):
        transformation.payload(
            originator_title=SUPPLIER_EUI, device_title=GSME_EUI, counter=1, body=request.body
        )


# -- the GSME --------------------------------------------------------------------------------


@pytest.fixture
def keys() -> CriticalKeys:
    return CriticalKeys.fresh()


@pytest.fixture
def clock() -> list[dt.datetime]:
    return [RTDS_ISSUED_AT]


def _gsme(keys: CriticalKeys, clock: list[dt.datetime]) -> Gsme:
    return keyed_gsme(
        keys,
        lambda: clock[0],
        load_profile=rtds_load(),
        epoch=RTDS_ISSUED_AT - dt.timedelta(days=30),
    )


@pytest.fixture
def gsme(keys: CriticalKeys, clock: list[dt.datetime]) -> Gsme:
    return _gsme(keys, clock)


def _send(
    gsme: Gsme, keys: CriticalKeys, reference_dir: Path, template: str, counter: int
) -> GeneralSigning:
    body = _request(reference_dir, template).body
    return signed_reply(gsme, keys, signed_command(keys, "1.1.1", counter, body))


def _rtds_payload(reference_dir: Path, name: str) -> bytes:
    return rtds_payload(_rtds(reference_dir, name))


def _tiers(gsme: Gsme) -> list[int]:
    values = gsme.gas_registers().metering_values(gsme.clock())
    return [int(values[a][1]) for a in CURRENT_TIER_SUMMATIONS]


def test_an_immediate_tou_tariff_answers_as_the_rtds_and_is_in_force(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    template = "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS"
    reply = _send(gsme, keys, reference_dir, template, 1007)
    assert reply.payload == _rtds_payload(reference_dir, f"{template}_RESPONSE_GBCS.HEX")
    assert reply.date_time == RTDS_DATE_TIME
    assert gsme.tariff == _rtds_payload(reference_dir, f"{template}_COMMAND_GBCS.HEX")
    assert gsme.pending_tariff is None


def test_the_tou_registers_follow_the_tariffs_calendar(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys, clock: list[dt.datetime]
) -> None:
    """The RTDS TOU tariff: special days (1 and 2 January 2015 among them) on day 2 (tier 2);
    before 20 March the year's last season (week 2: weekdays day 3 = tier 3, weekends day 4 =
    tier 4); the register's history before the tariff stays on tier 1."""
    before = _tiers(gsme)
    assert before[1:] == [0, 0, 0]
    _send(gsme, keys, reference_dir, "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS", 1007)
    registers = gsme.registers

    def day(n: int) -> int:
        start = RTDS_ISSUED_AT + dt.timedelta(days=n)
        return registers.drawn(start, start + dt.timedelta(days=1))

    clock[0] = RTDS_ISSUED_AT + dt.timedelta(days=5)  # Thursday 1 to Monday 5 January
    tiers = _tiers(gsme)
    assert tiers[0] == before[0]
    assert tiers[1] == day(0) + day(1)  # New Year's Day and 2 January: special days
    assert tiers[3] == day(2) + day(3)  # the weekend
    assert tiers[2] == day(4)  # Monday
    assert sum(tiers) == registers.litres(clock[0])


def test_a_future_dated_tariff_is_held_and_runs_with_the_rtds_8f66_alerts(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    template = "GCS01a_1.1.1_FUTURE_DATED_BLOCK_SUCCESS"
    reply = _send(gsme, keys, reference_dir, template, 1005)
    assert reply.payload == _rtds_payload(reference_dir, f"{template}_RESPONSE_GBCS.HEX")
    assert gsme.tariff is None and gsme.pending_tariff is not None
    assert gsme.next_due() == EXECUTION
    gsme.run_due(EXECUTION - dt.timedelta(seconds=1))
    assert gsme.take_alerts() == [] and gsme.tariff is None
    gsme.run_due(EXECUTION)
    assert gsme.tariff == _rtds_payload(reference_dir, f"{template}_COMMAND_GBCS.HEX")
    assert gsme.pending_tariff is None
    alerts = gsme.take_alerts()
    assert len(alerts) == len(FUTURE_DATED_ALERTS)
    counters = []
    for alert, name in zip(alerts, FUTURE_DATED_ALERTS, strict=True):
        frame = decode_message(alert.frame)
        assert isinstance(frame, GeneralSigning) and alert.recipient == SUPPLIER_EUI
        assert verify_frame_signature(frame, keys.device_ds.public_key())
        rtds = decode_message(
            _rtds(
                reference_dir, f"GCS01a_1.1.1_8F66_FUTURE_DATED_BLOCK_SUCCESS_ALERT_{name}_GBCS.HEX"
            )
        )
        assert isinstance(rtds, GeneralSigning)
        assert (frame.message_code, frame.payload) == (rtds.message_code, rtds.payload)
        counters.append(frame.originator_counter)
    assert counters == sorted(set(counters))  # each alert its own, rising counter
    assert gsme.next_due() is None


def test_a_cancellation_drops_the_held_tariff_and_answers_as_the_rtds(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    _send(gsme, keys, reference_dir, "GCS01a_1.1.1_FUTURE_DATED_BLOCK_SUCCESS", 1005)
    template = "GCS01a_1.1.1_CANCELLATION_BLOCK_SUCCESS"
    reply = _send(gsme, keys, reference_dir, template, 1006)
    assert reply.payload == _rtds_payload(reference_dir, f"{template}_RESPONSE_GBCS.HEX")
    assert gsme.pending_tariff is None and gsme.next_due() is None
    gsme.run_due(EXECUTION)
    assert gsme.tariff is None and gsme.take_alerts() == []


def test_a_tariff_dated_in_the_past_is_refused(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys, clock: list[dt.datetime]
) -> None:
    clock[0] = EXECUTION + dt.timedelta(days=1)
    reply = _send(gsme, keys, reference_dir, "GCS01a_1.1.1_FUTURE_DATED_BLOCK_SUCCESS", 1005)
    statuses = {c.payload.values["status"] for c in decode_gbz(reply.payload).components}
    assert statuses == {ZCL_INVALID_FIELD}
    assert gsme.pending_tariff is None and gsme.tariff is None


def test_a_tariff_fault_has_the_rtds_error_responses_structure(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    gsme.script_fault(USE_CASES_BY_NAME["GCS01a"], 1)
    reply = _send(gsme, keys, reference_dir, "GCS01a_1.1.1_FUTURE_DATED_BLOCK_SUCCESS", 1008)
    rtds = decode_gbz(
        _rtds_payload(reference_dir, "GCS01a_1.1.1_FUTURE_DATED_BLOCK_ERROR_RESPONSE_GBCS.HEX")
    )
    ours = decode_gbz(reply.payload)
    assert reply.date_time == RTDS_DATE_TIME
    assert [(c.control, c.cluster, c.header, c.payload.layout) for c in ours.components] == [
        (c.control, c.cluster, c.header, c.payload.layout) for c in rtds.components
    ]
    assert any(c.payload.values["status"] for c in ours.components)
    assert gsme.pending_tariff is None and gsme.tariff is None


def test_the_tariff_and_the_held_one_survive_a_power_cycle(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys, clock: list[dt.datetime]
) -> None:
    _send(gsme, keys, reference_dir, "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS", 1007)
    _send(gsme, keys, reference_dir, "GCS01a_1.1.1_FUTURE_DATED_BLOCK_SUCCESS", 1008)
    clock[0] += dt.timedelta(days=3)
    tiers = _tiers(gsme)
    state = msgpack.unpackb(msgpack.packb(gsme.nonvolatile_state(), use_bin_type=True), raw=False)
    fresh = _gsme(keys, clock)
    fresh.restore_nonvolatile_state(state)
    assert fresh.tariff == gsme.tariff
    assert fresh.pending_tariff == gsme.pending_tariff
    assert fresh.next_due() == EXECUTION
    assert _tiers(fresh) == tiers
    assert tiers[1] > 0  # the TOU calendar, not tier 1 alone


def test_the_tou_matrix_read_reports_the_tariffs_tiers(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys, clock: list[dt.datetime]
) -> None:
    """4.1.2 (GCS13c) after the RTDS TOU tariff: the TOU registers the GSME answers,
    decrypted by the Supplier, are the calendar's split of the gas."""
    _send(gsme, keys, reference_dir, "GCS01a_1.1.1_IMMEDIATE_TOU_SUCCESS", 1007)
    clock[0] = RTDS_ISSUED_AT + dt.timedelta(days=5)
    transformation = lookup("4.1.2", "GSME")
    assert transformation is not None
    command = build_command(
        transformation,
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=1008,
        acb_ka_private=keys.acb,
        device_ka_public=keys.device_ka.public_key(),
    )
    reply = decode_message(gsme.handle(command))
    assert isinstance(reply, GeneralCiphering)
    frame = reply.general_signing
    (component,) = decode_gbz(frame.payload).components
    assert component.encrypted_content is not None
    context = content_context(frame)
    plaintext = decrypt_content(
        component.encrypted_content,
        device_title=context.device_title,
        counter=context.counter,
        recipient_title=context.recipient_title,
        private_key=keys.supplier_ka,
        peer_public_key=keys.device_ka.public_key(),
    )
    header = ZclHeader(0x18, component.header.sequence, component.header.command)
    records = decode_zcl_payload(component.cluster, header, plaintext).records
    read = {int(r["attribute_id"]): r["value"] for r in records}
    tiers = [read[a] for a in CURRENT_TIER_SUMMATIONS]
    assert tiers == _tiers(gsme)
    # tier 1 stopped when the tariff came in: 1 and 2 January went to tier 2, the weekend
    # to tier 4, Monday to tier 3
    assert tiers[0] == gsme.registers.litres(RTDS_ISSUED_AT)
    assert all(tiers[1:])
