"""Shared fixtures: where the reference data lives, and skipping cleanly when it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def reference_root() -> Path:
    """The DCC reference data folder: $DCCSIM_REFERENCE or ../shared/reference beside the checkout."""
    return Path(os.environ.get("DCCSIM_REFERENCE", _DEFAULT_REFERENCE))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    root = reference_root()
    if not root.is_dir():
        pytest.skip(
            f"DCC reference data not found at {root} (../shared/reference); set DCCSIM_REFERENCE"
        )
    return root
