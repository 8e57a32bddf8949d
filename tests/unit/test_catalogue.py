"""The SRV catalogue (dccsim/duis/srvs.csv) against DCC's request matrix and the DUIS XSD."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from dccsim.duis.catalogue import (
    CATALOGUE,
    CatalogueError,
    FutureDating,
    UserRole,
    lookup,
    parse_catalogue,
)

_FUTURE = {
    "No": FutureDating.NONE,
    "Device": FutureDating.DEVICE,
    "DSP": FutureDating.DSP,
    "DSP & Device": FutureDating.DSP_AND_DEVICE,
}
_XS = "{http://www.w3.org/2001/XMLSchema}"


def _matrix(reference_dir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(
        (reference_dir / "duis" / "request-matrix.json").read_text()
    )
    return rows


def _words(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.split("\n", 1)[0].lower())


def test_catalogue_holds_all_129_srvs() -> None:
    assert len(CATALOGUE) == 129
    assert sum(r.critical for r in CATALOGUE.values()) == 37
    assert sum(r.non_device for r in CATALOGUE.values()) == 16


def test_every_row_matches_the_request_matrix(reference_dir: Path) -> None:
    matrix = _matrix(reference_dir)
    assert {m["Service Reference Variant"] for m in matrix} == set(CATALOGUE)
    for m in matrix:
        row = CATALOGUE[m["Service Reference Variant"]]
        # The matrix stores 6.20 as a number, so it reads 6.2; the templates say 6.20.
        expected = "6.20" if row.variant.startswith("6.20.") else m["Service Reference"]
        assert row.reference == expected, row.variant
        assert _words(row.name) == _words(m["Service Request Name"]), row.variant
        assert row.roles == frozenset(UserRole(r) for r in m["Eligible User Roles"]), row.variant
        assert row.critical == (m["Critical"] == "Yes"), row.variant
        assert row.on_demand == (m["On Demand"] == "Yes"), row.variant
        assert row.future_dating is _FUTURE[m["Future Dated Response Pattern"]], row.variant
        assert row.dcc_scheduled == (m["DCC Scheduled"] == "Yes"), row.variant
        assert row.non_device == (m["Non-Device Request"] == "Yes"), row.variant


def test_body_elements_are_the_xsd_request_body_choices(reference_dir: Path) -> None:
    xsd = etree.parse(str(reference_dir / "duis" / "xsd" / "DUIS_Schema_V5.4.xsd"))
    request = next(e for e in xsd.iter(f"{_XS}complexType") if e.get("name") == "Request")
    body = next(e for e in request.iter(f"{_XS}element") if e.get("name") == "Body")
    choices = [e.get("name") for e in body.iter(f"{_XS}element")][1:]
    assert set(choices) - {"SignedPreCommand"} == {r.body_element for r in CATALOGUE.values()}
    # ... in the XSD's own order, which is the matrix's.
    matrix = [m["Service Reference Variant"] for m in _matrix(reference_dir)]
    assert [CATALOGUE[v].body_element for v in matrix] == choices[: len(matrix)]


def test_device_srvs_name_device_types_and_non_device_ones_none() -> None:
    for row in CATALOGUE.values():
        assert bool(row.device_types) != row.non_device, row.variant
    assert lookup("4.1.1") is not None and "ESME" in lookup("4.1.1").device_types  # type: ignore[union-attr]
    assert lookup("99.9") is None


def test_a_malformed_catalogue_is_refused() -> None:
    header = (
        "variant,name,roles,critical,on_demand,future_dated,dcc_scheduled,non_device,"
        "device_types,body_element,local_delivery\n"
    )
    parse_catalogue(header + "1.1.1,X,IS,yes,yes,no,no,no,ESME,X,yes\n")  # the header is fine
    with pytest.raises(CatalogueError, match="maybe"):
        parse_catalogue(header + "1.1.1,X,IS,maybe,yes,no,no,no,ESME,X,yes\n")
    with pytest.raises(CatalogueError):
        parse_catalogue(header + "8.2,X,IS,no,no,no,no,yes,ESME,X,no\n")
    with pytest.raises(CatalogueError):
        parse_catalogue("variant,name\n4.1.1,X\n")


def test_every_transformation_targets_a_device_type_its_srv_allows() -> None:
    """A Transformation the catalogue's device types exclude would be refused E11 before it
    could run (6.11 to a GSME was)."""
    from services.transform.srvs import TRANSFORMATIONS_BY_KEY

    outside = sorted(
        (srv, device_type)
        for srv, device_type in TRANSFORMATIONS_BY_KEY
        if (row := lookup(srv)) is None or device_type not in row.device_types
    )
    assert outside == []


def test_synchronise_clock_targets_the_gsme_as_the_mmc_response_allows(
    reference_dir: Path,
) -> None:
    """6.11's response schema has a Gas branch beside Electricity, and its roles include GS."""
    xsd = etree.parse(str(reference_dir / "duis" / "xsd" / "MMC_Schema_V5.4.xsd"))
    response = next(
        e for e in xsd.iter(f"{_XS}complexType") if e.get("name") == "SynchroniseClockRsp"
    )
    branches = {e.get("name") for e in response.iter(f"{_XS}element")}
    assert {"Electricity", "Gas"} <= branches
    row = lookup("6.11")
    assert row is not None
    assert row.device_types == {"ESME", "GSME"} and UserRole("GS") in row.roles
