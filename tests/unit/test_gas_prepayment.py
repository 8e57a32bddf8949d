"""2.2 Top Up Device (CS01b) and 2.5 Activate Emergency Credit (GCS06) to a GSME: the transform
builds the RTDS commands byte for byte, and the GSME credits a UTRN once (4.18 then reads the
new credit), refuses a malformed or repeated one as the RTDS ERROR response does, and switches
emergency credit on where it is available, answering as the RTDS responses."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgpack
import pytest
from lxml import etree

from dccsim.gbcs.crypto import verify_mac
from dccsim.gbcs.frames import GeneralCiphering, GeneralSigning, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_command
from dccsim.gbcs.zigbee import PREPAYMENT, decode_gbz
from emulators.gsme import (
    CS01B,
    GCS60A,
    PREPAYMENT_CREDIT_REMAINING,
    TOP_UP_ACCEPTED,
    TOP_UP_REJECTED_DUPLICATE,
    TOP_UP_REJECTED_INVALID,
    Gsme,
    well_formed_utrn,
)
from services.transform.srvs import (
    SR_NS,
    build_pre_command,
    lookup,
)
from services.transform.srvs import build_command as build_srv_command
from tests.unit.gbcs_site import (
    CriticalKeys,
    assert_rtds_command_wraps,
    build_rtds_command,
    checked_transformation,
    duis_template,
    rtds_payload,
)
from tests.unit.gbcs_site import rtds as rtds_vector
from tests.unit.gsme_site import (
    GSME_EUI,
    SUPPLIER_EUI,
    keyed_gsme,
    rtds_load,
    signed_command,
    signed_reply,
)

RTDS_DATE_TIME = bytes.fromhex("07df0101ff000000008000ff")  # 2015-01-01 00:00
NOW = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
SUCCESS_UTRN = "73950067887105178605"  # the RTDS SUCCESS command's (and template's)
ERROR_UTRN = "12345678910121314156"  # the RTDS ERROR command's
RTDS_CREDIT_AFTER = 25_144_000  # what the RTDS SUCCESS response reports after the top-up


def _rtds(reference_dir: Path, folder: str, name: str) -> bytes:
    return rtds_vector(reference_dir, f"{folder}/{name}")


# -- the transform ---------------------------------------------------------------------------


def test_the_top_up_template_becomes_the_rtds_command(reference_dir: Path) -> None:
    request = duis_template(reference_dir, "CS01b_2.2_SUCCESS_REQUEST_DUIS.XML")
    transformation = checked_transformation(request, "GSME", critical=False)
    assert (transformation.use_case, transformation.body_element) == ("CS01b", request.body_name)
    built = build_rtds_command(reference_dir, transformation, request)
    assert built == _rtds(reference_dir, "2.2_CS01b", "CS01b_2.2_SUCCESS_COMMAND_GBCS.HEX")


def _emergency_credit_body() -> etree._Element:
    return etree.fromstring(f'<sr:ActivateEmergencyCredit xmlns:sr="{SR_NS}"/>')


@pytest.mark.parametrize(("outcome", "counter"), [("SUCCESS", 1000), ("ERROR", 1001)])
def test_activate_emergency_credit_becomes_the_rtds_pre_command_and_command(
    reference_dir: Path, outcome: str, counter: int
) -> None:
    transformation = lookup("2.5", "GSME")
    assert transformation is not None and transformation.critical
    assert transformation.use_case == "GCS06"
    pre_command = build_pre_command(
        transformation,
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=counter,
        body=_emergency_credit_body(),
    )
    folder = "2.5_GCS06"
    assert pre_command == _rtds(reference_dir, folder, f"GCS06_2.5_{outcome}_PRECOMMAND_GBCS.HEX")
    assert_rtds_command_wraps(
        reference_dir,
        _rtds(reference_dir, folder, f"GCS06_2.5_{outcome}_COMMAND_GBCS.HEX"),
        pre_command,
        originator=SUPPLIER_EUI,
        target=GSME_EUI,
    )


# -- the GSME --------------------------------------------------------------------------------


@pytest.fixture
def keys() -> CriticalKeys:
    return CriticalKeys.fresh()


def _gsme(keys: CriticalKeys) -> Gsme:
    return keyed_gsme(
        keys, lambda: NOW, load_profile=rtds_load(), epoch=NOW - dt.timedelta(days=30)
    )


@pytest.fixture
def gsme(keys: CriticalKeys) -> Gsme:
    return _gsme(keys)


class Counter:
    def __init__(self) -> None:
        self.value = 1000

    def next(self) -> int:
        self.value += 1
        return self.value


@pytest.fixture
def counter() -> Counter:
    return Counter()


def _top_up(gsme: Gsme, keys: CriticalKeys, utrn: str, counter: int) -> GeneralCiphering:
    """The transform's CS01b for ``utrn`` (a TopUpDevice body), answered MAC'd by the GSME."""
    transformation = lookup("2.2", "GSME")
    assert transformation is not None
    body = etree.fromstring(
        f'<sr:TopUpDevice xmlns:sr="{SR_NS}"><sr:UTRN>{utrn}</sr:UTRN></sr:TopUpDevice>'
    )
    command = build_srv_command(
        transformation,
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=counter,
        acb_ka_private=keys.acb,
        device_ka_public=keys.device_ka.public_key(),
        body=body,
    )
    reply = decode_message(gsme.handle(command))
    assert isinstance(reply, GeneralCiphering)
    assert verify_mac(
        reply, private_key=keys.supplier_ka, peer_public_key=keys.device_ka.public_key()
    )
    return reply


def _top_up_result(reply: GeneralCiphering) -> dict[str, object]:
    (component,) = decode_gbz(reply.general_signing.payload).components
    assert component.payload.layout == "consumer-top-up-response"
    return dict(component.payload.values)


def test_a_top_up_answers_as_the_rtds_success(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    # the RTDS meter held 1,250,000 less than it reports after the top-up
    gsme.attributes[(PREPAYMENT, PREPAYMENT_CREDIT_REMAINING)] = (
        0x2B,
        RTDS_CREDIT_AFTER - 1_250_000,
    )
    reply = _top_up(gsme, keys, SUCCESS_UTRN, 25769803776)
    rtds = _rtds(reference_dir, "2.2_CS01b", "CS01b_2.2_SUCCESS_RESPONSE_GBCS.HEX")
    assert reply.general_signing.payload == rtds_payload(rtds)
    assert reply.general_signing.date_time == RTDS_DATE_TIME
    assert gsme.credit_remaining == RTDS_CREDIT_AFTER


def test_a_top_up_raises_the_credit_the_meter_balance_read_reports(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys, counter: Counter
) -> None:
    before = gsme.credit_remaining
    result = _top_up_result(_top_up(gsme, keys, SUCCESS_UTRN, counter.next()))
    assert result["result_type"] == TOP_UP_ACCEPTED
    assert result["top_up_value"] == gsme.top_up_value
    assert result["credit_remaining"] == before + gsme.top_up_value
    # 4.18 (GCS60a): the RTDS command, answered from the meter's attributes
    read = build_command(
        GCS60A,
        originator_title=SUPPLIER_EUI,
        device_title=GSME_EUI,
        counter=counter.next(),
        payload=rtds_payload(
            _rtds(
                reference_dir,
                "4.18_GCS60a",
                "GCS60a_4.18_SUCCESS_UNRELIABLE_GSME_COMMAND_GBCS.HEX",
            )
        ),
        acb_ka_private=keys.acb,
        device_ka_public=keys.device_ka.public_key(),
    )
    components = decode_gbz(rtds_payload(gsme.handle(read))).components
    credit = {
        int(r["attribute_id"]): r.get("value")
        for c in components
        if c.cluster == PREPAYMENT
        for r in c.payload.records
    }
    assert credit[PREPAYMENT_CREDIT_REMAINING] == before + gsme.top_up_value


def test_a_malformed_utrn_answers_as_the_rtds_error_and_leaves_the_credit(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    before = gsme.credit_remaining
    reply = _top_up(gsme, keys, ERROR_UTRN, 30064771072)
    rtds = _rtds(reference_dir, "2.2_CS01b", "CS01b_2.2_ERROR_RESPONSE_GBCS.HEX")
    assert reply.general_signing.payload == rtds_payload(rtds)
    assert _top_up_result(reply)["result_type"] == TOP_UP_REJECTED_INVALID
    assert gsme.credit_remaining == before and gsme.applied_utrns == []


def test_a_utrn_is_credited_once(gsme: Gsme, keys: CriticalKeys, counter: Counter) -> None:
    _top_up(gsme, keys, SUCCESS_UTRN, counter.next())
    credited = gsme.credit_remaining
    result = _top_up_result(_top_up(gsme, keys, SUCCESS_UTRN, counter.next()))
    assert result["result_type"] == TOP_UP_REJECTED_DUPLICATE
    assert (result["top_up_value"], result["credit_remaining"]) == (-1, -1)
    assert gsme.credit_remaining == credited
    assert gsme.applied_utrns == [SUCCESS_UTRN.encode()]


@pytest.mark.parametrize(
    ("utrn", "well_formed"),
    [
        (SUCCESS_UTRN, True),
        ("73946144332040217315", True),  # the RTDS ESME top-up's
        (ERROR_UTRN, False),  # below 2**66: a 66-bit (STS) number
        ("7395006788710517860", False),  # 19 digits
        ("7395006788710517860A", False),
    ],
)
def test_which_utrns_are_well_formed(utrn: str, well_formed: bool) -> None:
    assert well_formed_utrn(utrn.encode()) is well_formed


def test_the_credit_and_the_applied_utrns_survive_a_power_cycle(
    gsme: Gsme, keys: CriticalKeys, counter: Counter
) -> None:
    _top_up(gsme, keys, SUCCESS_UTRN, counter.next())
    state = msgpack.unpackb(msgpack.packb(gsme.nonvolatile_state(), use_bin_type=True), raw=False)
    fresh = _gsme(keys)
    fresh.restore_nonvolatile_state(state)
    assert fresh.credit_remaining == gsme.credit_remaining
    fresh.last_counters = dict(gsme.last_counters)
    result = _top_up_result(_top_up(fresh, keys, SUCCESS_UTRN, counter.next()))
    assert result["result_type"] == TOP_UP_REJECTED_DUPLICATE


def _emergency_credit(gsme: Gsme, keys: CriticalKeys, counter: int) -> GeneralSigning:
    command = signed_command(keys, "2.5", counter, _emergency_credit_body(), issued_at=None)
    return signed_reply(gsme, keys, command)


def test_emergency_credit_on_low_credit_answers_as_the_rtds_success(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    gsme.attributes[(PREPAYMENT, PREPAYMENT_CREDIT_REMAINING)] = (0x2B, 100_000)
    reply = _emergency_credit(gsme, keys, 1000)
    rtds = _rtds(reference_dir, "2.5_GCS06", "GCS06_2.5_SUCCESS_RESPONSE_GBCS.HEX")
    assert reply.payload == rtds_payload(rtds)
    assert reply.date_time is None
    assert gsme.emergency_credit_active
    # selecting it again still succeeds (GBCS: whether or not it was active before)
    assert _emergency_credit(gsme, keys, 1001).payload == rtds_payload(rtds)


def test_emergency_credit_is_refused_while_the_credit_is_ample(
    reference_dir: Path, gsme: Gsme, keys: CriticalKeys
) -> None:
    reply = _emergency_credit(gsme, keys, 1001)
    rtds = decode_gbz(
        rtds_payload(_rtds(reference_dir, "2.5_GCS06", "GCS06_2.5_ERROR_RESPONSE_GBCS.HEX"))
    )
    ours = decode_gbz(reply.payload)
    assert [(c.control, c.cluster, c.header, c.payload.layout) for c in ours.components] == [
        (c.control, c.cluster, c.header, c.payload.layout) for c in rtds.components
    ]
    (component,) = ours.components
    assert component.payload.values["status"] == 0x01  # FAILURE, as GBCS names it
    assert not gsme.emergency_credit_active


def test_a_scripted_top_up_fault_leaves_the_credit(gsme: Gsme, keys: CriticalKeys) -> None:
    before = gsme.credit_remaining
    gsme.script_fault(CS01B, 1)
    reply = _top_up(gsme, keys, SUCCESS_UTRN, 2000)
    (component,) = decode_gbz(reply.general_signing.payload).components
    assert component.payload.layout == "default-response"
    assert gsme.credit_remaining == before
    assert USE_CASES_BY_NAME["CS01b"] is CS01B
