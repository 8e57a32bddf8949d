"""The DUIS response code table and DuisError."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from dccsim.duis.codes import (
    INVALID_REQUEST_ID,
    INVALID_SIGNATURE,
    MALFORMED_REQUEST,
    RESPONSE_CODES,
    DuisError,
    Outcome,
    response_code,
)

_XS = "{http://www.w3.org/2001/XMLSchema}"


def _xsd_response_codes(reference_dir: Path) -> set[str]:
    xsd = etree.parse(str(reference_dir / "duis" / "xsd" / "DUIS_Schema_V5.4.xsd"))
    (simple_type,) = xsd.getroot().iterfind(f"{_XS}simpleType[@name='ResponseCode']")
    return {e.get("value") or "" for e in simple_type.iter(f"{_XS}enumeration")}


def test_every_code_in_the_table_is_in_the_xsd_enumeration(reference_dir: Path) -> None:
    assert set(RESPONSE_CODES) <= _xsd_response_codes(reference_dir)


def test_the_xsd_has_no_e8_e10_or_e14(reference_dir: Path) -> None:
    # Why the general failures map to named codes instead: these would fail the schema.
    assert not {"E6", "E7", "E8", "E9", "E10", "E14", "E15", "E16", "E18"} & _xsd_response_codes(
        reference_dir
    )


def test_the_table_holds_the_codes_protocol_md_lists() -> None:
    expected = "I0 I99 E1 E2 E3 E4 E5 E11 E12 E13 E17 E19 E20 E21 E30".split()
    assert list(RESPONSE_CODES) == expected


def test_condition_codes_are_in_the_table() -> None:
    for code in (MALFORMED_REQUEST, INVALID_SIGNATURE, INVALID_REQUEST_ID):
        assert code in RESPONSE_CODES


def test_outcome_follows_the_code_letter() -> None:
    assert response_code("I99").outcome is Outcome.INFORMATION
    assert response_code("E19").outcome is Outcome.ERROR


def test_duis_error_carries_code_and_reason() -> None:
    error = DuisError("E19", "device not in the inventory")
    assert (error.code, error.reason) == ("E19", "device not in the inventory")
    assert error.response_code is RESPONSE_CODES["E19"]
    assert "E19" in str(error)


def test_duis_error_allows_service_request_specific_codes() -> None:
    assert DuisError("E080201", "x").response_code is None


@pytest.mark.parametrize("code", ["", "19", "X1", "E", "E1 ", "e19"])
def test_duis_error_refuses_a_code_of_the_wrong_shape(code: str) -> None:
    with pytest.raises(ValueError):
        DuisError(code, "x")
