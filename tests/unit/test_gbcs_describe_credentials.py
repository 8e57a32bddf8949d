"""``dccsim gbcs decode`` on CS02b/CS02g credentials updates: the DER parts the generic schema
keeps as DER (replacements, seq numbers, replacement outcomes) are described too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dccsim.gbcs.describe import describe
from dccsim.gbcs.frames import parse_hex_or_base64


def _parts(reference_dir: Path, name: str) -> Any:
    data = parse_hex_or_base64((reference_dir / "gbcs" / "rtds" / name).read_text())
    return describe(data)["payload"]["parts"]


@pytest.mark.parametrize(
    ("name", "cells"),
    [
        (
            "6.15.1_CS02bSupplierBySupplier/"
            "CS02bSupplierBySupplier_6.15.1_IMMEDIATE_SUCCESS_PRECOMMAND_GBCS.HEX",
            [("0780", None), ("0308", None), ("0308", 1)],
        ),
        (
            "6.15.1_CS02bNOByNO/CS02bNOByNO_6.15.1_SUCCESS_PRECOMMAND_GBCS.HEX",
            [("0780", None), ("0308", None)],
        ),
    ],
)
def test_a_credentials_update_describes_its_replacements(
    reference_dir: Path, name: str, cells: list[tuple[str, int | None]]
) -> None:
    replacements = _parts(reference_dir, name)["replacements"]
    described = [
        (r["trust_anchor_cell"]["key_usage"], r["trust_anchor_cell"].get("cell_usage"))
        for r in replacements
    ]
    assert described == cells
    assert all(r["certificate"].startswith("30") for r in replacements)


def test_a_cos_update_describes_the_suppliers_new_seq_numbers(reference_dir: Path) -> None:
    parts = _parts(
        reference_dir,
        "6.23_CS02bSupplierByTransCoS/CS02bSupplierByTransCoS_6.23_IMMEDIATE_SUCCESS_COMMAND_GBCS.HEX",
    )
    (change,) = parts["new_seq_numbers"]
    assert change["remote_party_role"] == 2
    assert change["specialist_floor_seq_numbers"] == [{"usage": 0, "seq_number": 0}]


def test_an_update_response_describes_each_replacement_outcome(reference_dir: Path) -> None:
    parts = _parts(
        reference_dir,
        "6.15.1_CS02bSupplierBySupplier/"
        "CS02bSupplierBySupplier_6.15.1_IMMEDIATE_ERROR_RESPONSE_GBCS.HEX",
    )
    assert [o["status"] for o in parts["replacement_results"]] == [0, 10, 0]
    assert parts["seq_numbers"][0]["remote_party_role"] == 2
