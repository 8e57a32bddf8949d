"""RequestID parsing, formatting and the counter rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dccsim.duis.codes import INVALID_REQUEST_ID, MALFORMED_REQUEST, DuisError
from dccsim.duis.requestid import (
    COUNTER_MAX,
    DCC_EUI,
    RequestId,
    check_counter,
    format_eui,
    parse_eui,
)

SUPPLIER = bytes.fromhex("90B3D51F30010000")
ESME = bytes.fromhex("00DB1234567890A0")
TEMPLATE_ID = "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1000"

euis = st.binary(min_size=8, max_size=8)
counters = st.integers(min_value=0, max_value=COUNTER_MAX)
request_ids = st.builds(RequestId, euis, euis, counters)


def test_parse_reads_the_three_parts() -> None:
    assert RequestId.parse(TEMPLATE_ID) == RequestId(SUPPLIER, ESME, 1000)


def test_str_is_the_dcc_upper_case_form() -> None:
    assert str(RequestId.parse(TEMPLATE_ID.lower())) == TEMPLATE_ID


def test_response_id_swaps_the_euis() -> None:
    assert (
        RequestId(SUPPLIER, ESME, 1000).response_id()
        == "00-DB-12-34-56-78-90-A0:90-B3-D5-1F-30-01-00-00:1000"
    )


def test_dcc_eui_is_the_non_device_target() -> None:
    assert format_eui(DCC_EUI) == "90-B3-D5-1F-30-00-00-02"
    assert RequestId(SUPPLIER, DCC_EUI, 1).targets_dcc
    assert not RequestId(SUPPLIER, ESME, 1).targets_dcc


def test_surrounding_blanks_are_ignored() -> None:
    assert RequestId.parse(f"\n  {TEMPLATE_ID}\n") == RequestId(SUPPLIER, ESME, 1000)


def test_counter_may_be_the_largest_unsigned_64_bit_value() -> None:
    text = f"{format_eui(SUPPLIER)}:{format_eui(ESME)}:{COUNTER_MAX}"
    assert RequestId.parse(text).counter == COUNTER_MAX


@pytest.mark.parametrize(
    "text",
    [
        "",
        TEMPLATE_ID + ":1",
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0",
        "90-B3-D5-1F-30-01-00:00-DB-12-34-56-78-90-A0:1000",  # 7 octets
        "90B3D51F30010000:00DB1234567890A0:1000",  # no separators
        "90-B3-D5-1F-30-01-00-0G:00-DB-12-34-56-78-90-A0:1000",  # not hex
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:-1",
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:+1",
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:01",  # leading zero: schema says no
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1_000",
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0: 1000",
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:١٠٠٠",  # non-ASCII digits
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:18446744073709551616",  # 2**64
        "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1000\n0",
    ],
)
def test_malformed_request_ids_are_refused_as_malformed_requests(text: str) -> None:
    with pytest.raises(DuisError) as caught:
        RequestId.parse(text)
    assert caught.value.code == MALFORMED_REQUEST


@given(request_ids)
def test_str_then_parse_is_the_identity(request_id: RequestId) -> None:
    assert RequestId.parse(str(request_id)) == request_id


@given(request_ids)
def test_parse_ignores_case(request_id: RequestId) -> None:
    assert RequestId.parse(str(request_id).lower()) == request_id


@given(request_ids)
def test_response_id_parses_to_the_swapped_request_id(request_id: RequestId) -> None:
    swapped = RequestId.parse(request_id.response_id())
    assert (swapped.originator, swapped.target, swapped.counter) == (
        request_id.target,
        request_id.originator,
        request_id.counter,
    )


@given(st.text())
def test_garbage_gives_a_request_id_or_a_duis_error_only(text: str) -> None:
    try:
        RequestId.parse(text)
    except DuisError as error:
        assert error.code == MALFORMED_REQUEST


@given(st.text(alphabet="0123456789abcdefABCDEF-: \n", max_size=60))
def test_near_miss_garbage_gives_a_request_id_or_a_duis_error_only(text: str) -> None:
    try:
        RequestId.parse(text)
    except DuisError as error:
        assert error.code == MALFORMED_REQUEST


@given(euis)
def test_eui_format_then_parse_is_the_identity(eui: bytes) -> None:
    assert parse_eui(format_eui(eui)) == eui


@pytest.mark.parametrize("eui", [b"", b"\x00" * 7, b"\x00" * 9])
def test_format_eui_needs_eight_bytes(eui: bytes) -> None:
    with pytest.raises(ValueError):
        format_eui(eui)


@pytest.mark.parametrize("text", ["", "90-B3-D5-1F-30-00-00", "90:B3:D5:1F:30:00:00:02", "x"])
def test_parse_eui_refuses_malformed_text(text: str) -> None:
    with pytest.raises(DuisError):
        parse_eui(text)


def test_request_id_refuses_wrong_sizes() -> None:
    with pytest.raises(ValueError):
        RequestId(SUPPLIER[:7], ESME, 1)
    with pytest.raises(ValueError):
        RequestId(SUPPLIER, ESME, COUNTER_MAX + 1)
    with pytest.raises(ValueError):
        RequestId(SUPPLIER, ESME, -1)


def test_first_counter_from_an_originator_is_accepted() -> None:
    check_counter(None, 0)


def test_a_greater_counter_is_accepted() -> None:
    check_counter(1000, 1001)


@pytest.mark.parametrize(("last", "new"), [(1000, 1000), (1000, 999), (COUNTER_MAX, 0)])
def test_a_counter_that_does_not_increase_is_refused(last: int, new: int) -> None:
    with pytest.raises(DuisError) as caught:
        check_counter(last, new)
    assert caught.value.code == INVALID_REQUEST_ID


@pytest.mark.parametrize("new", [-1, COUNTER_MAX + 1])
def test_a_counter_outside_64_bits_is_refused(new: int) -> None:
    with pytest.raises(DuisError):
        check_counter(None, new)


@given(counters, counters)
def test_counter_rule_is_strictly_increasing(last: int, new: int) -> None:
    try:
        check_counter(last, new)
    except DuisError:
        assert new <= last
    else:
        assert new > last
