"""``dccsim gbcs decode`` on gas messages: the GBZ commands name their use case and layouts, and
the encrypted content of the GSME and GPF responses is decrypted and described."""

from __future__ import annotations

from pathlib import Path

import pytest

from dccsim.gbcs.cli import open_keystore
from dccsim.gbcs.describe import describe
from dccsim.gbcs.frames import parse_hex_or_base64

# (RTDS vector, the layout inside its encrypted component)
ENCRYPTED_RESPONSES = [
    ("4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_RELIABLE_GSME", "read-attributes-response"),
    ("4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_UNRELIABLE", "read-attributes-response"),
    ("4.1.2_GCS13c/GCS13c_4.1.2_SUCCESS_RELIABLE_GPF", "read-attributes-response"),
    ("4.8.1_GCS17/GCS17_4.8.1_SUCCESS", "get-sampled-data-response"),
    ("4.17_GCS61/GCS61_4.17_SUCCESS", "get-sampled-data-response"),
]
COMMANDS = [
    ("4.1.1_GCS13a/GCS13a_4.1.1_SUCCESS_RELIABLE_GPF", "GCS13a", ["read-attributes"]),
    ("4.18_GCS60a/GCS60a_4.18_SUCCESS_RELIABLE_GSME", "GCS60a", ["read-attributes"] * 2),
    ("4.1.2_GCS13c/GCS13c_4.1.2_SUCCESS_RELIABLE_GSME", "GCS13c", ["read-attributes"]),
    ("4.17_GCS61/GCS61_4.17_SUCCESS", "GCS61", ["get-sampled-data"]),
]


def _message(reference_dir: Path, vector: str, kind: str) -> bytes:
    path = reference_dir / "gbcs" / "rtds" / f"{vector}_{kind}_GBCS.HEX"
    return parse_hex_or_base64(path.read_text())


@pytest.mark.parametrize(("vector", "layout"), ENCRYPTED_RESPONSES)
def test_encrypted_gas_response_content_is_decrypted_and_described(
    reference_dir: Path, vector: str, layout: str
) -> None:
    keys = open_keystore(reference_dir / "gbcs" / "keystore")
    described = describe(_message(reference_dir, vector, "RESPONSE"), keys)
    assert described["ok"] and described["content"] == {"status": "verified"}
    (component,) = described["payload"]["components"]
    content = component["content"]
    assert content["status"] == "verified" and content["layout"] == layout
    assert content["records"] and "rest" not in content


def test_gas_response_content_without_keys_is_unchecked(reference_dir: Path) -> None:
    described = describe(_message(reference_dir, "4.8.1_GCS17/GCS17_4.8.1_SUCCESS", "RESPONSE"))
    assert described["ok"] and described["content"] == {"status": "unchecked"}


def test_tampered_gas_content_fails_the_decode(reference_dir: Path) -> None:
    """A flipped ciphertext byte: the block does not authenticate (the MAC fails too)."""
    raw = bytearray(_message(reference_dir, "4.8.1_GCS17/GCS17_4.8.1_SUCCESS", "RESPONSE"))
    raw[-40] ^= 0x01  # inside the encrypted block, before its tag and the frame's MAC
    described = describe(bytes(raw), open_keystore(reference_dir / "gbcs" / "keystore"))
    assert described["content"] == {"status": "failed"} and not described["ok"]


@pytest.mark.parametrize(("vector", "use_case", "layouts"), COMMANDS)
def test_gas_command_names_its_use_case_and_layouts(
    reference_dir: Path, vector: str, use_case: str, layouts: list[str]
) -> None:
    keys = open_keystore(reference_dir / "gbcs" / "keystore")
    described = describe(_message(reference_dir, vector, "COMMAND"), keys)
    assert described["ok"] and described["mac"]["status"] == "verified"
    assert described["header"]["use_case"]["name"] == use_case
    assert [c["layout"] for c in described["payload"]["components"]] == layouts
    assert "content" not in described
