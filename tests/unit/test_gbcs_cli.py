"""``dccsim gbcs decode`` over the RTDS vectors: fields, MAC and signature checks, exit codes."""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from dccsim.gbcs.cli import EXIT_CHECK_FAILED, EXIT_NOT_DECODED, EXIT_OK, register
from dccsim.gbcs.frames import parse_hex_or_base64
from dccsim.pki.files import parse_private_key
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage

ECS42 = "7.1_ECS42/ECS42_7.1_SUCCESS_COMMAND_GBCS.HEX"
ECS17B_RESPONSE = "4.1.1_ECS17b/ECS17b_4.1.1_SINGLE_SUCCESS_RESPONSE_GBCS.HEX"
ESME = bytes.fromhex("00DB1234567890A0")
ACB = bytes.fromhex("90B3D51F30000002")
SUPPLIER = bytes.fromhex("90B3D51F30010000")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    parser = argparse.ArgumentParser(prog="dccsim")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["gbcs", "decode", *argv])
    code = args.func(args)
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def rtds(reference_dir: Path) -> Path:
    return reference_dir / "gbcs" / "rtds"


@pytest.fixture
def keystore(reference_dir: Path) -> Path:
    return reference_dir / "gbcs" / "keystore"


def test_critical_command_decodes_with_mac_and_signature_verified(
    rtds: Path, keystore: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _run([str(rtds / ECS42), "--keystore", str(keystore)], capsys)
    assert code == EXIT_OK
    assert report["apdu"] == "general-ciphering"
    header = report["header"]
    assert header["cra"] == "command"
    assert header["originator_counter"] == 1000
    assert header["originator_title"] == "90-B3-D5-1F-30-01-00-00"
    assert header["message_code"] == "0x004f"
    assert header["use_case"]["name"] == "ECS42"
    assert report["payload"]["apdu"] == "access-request"
    assert report["payload"]["specs"][0]["instance_id"] == "0-0:10.0.106.255"
    assert report["payload"]["data"] == [{"type": "long-unsigned", "value": 51}]
    assert report["mac"]["status"] == "verified"
    assert report["signature"]["status"] == "verified"


def test_every_rtds_vector_decodes_and_no_check_fails(
    rtds: Path, keystore: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    statuses: dict[str, int] = {}
    paths = sorted(rtds.rglob("*.HEX"))
    for path in paths:
        code, report = _run([str(path), "--keystore", str(keystore)], capsys)
        assert code == EXIT_OK, path.name
        for check in ("mac", "signature"):
            key = f"{check}:{report[check]['status']}"
            statuses[key] = statuses.get(key, 0) + 1
            if report[check]["status"] == "unchecked":
                assert path.name.startswith(("PCS01", "PCS02")), path.name
    print(f"\n{len(paths)} vectors decoded: {statuses}")
    assert statuses["mac:verified"] >= 510 and statuses["signature:verified"] >= 310


def test_without_keys_checks_are_unchecked_not_failed(
    rtds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _run([str(rtds / ECS42)], capsys)
    assert code == EXIT_OK
    assert report["mac"]["status"] == "unchecked"
    assert report["signature"]["status"] == "unchecked"


def test_tampered_mac_fails_with_exit_1(
    rtds: Path, keystore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytearray(parse_hex_or_base64((rtds / ECS42).read_text()))
    data[-1] ^= 0x01
    path = tmp_path / "tampered.hex"
    path.write_text(data.hex())
    code, report = _run([str(path), "--keystore", str(keystore)], capsys)
    assert code == EXIT_CHECK_FAILED
    assert report["mac"]["status"] == "failed"
    assert report["signature"]["status"] == "verified"
    assert report["ok"] is False


def test_tampered_payload_fails_both_checks(
    rtds: Path, keystore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (rtds / ECS42).read_text()
    data = bytearray(parse_hex_or_base64(text))
    data[-12 - 65 - 1] ^= 0x01  # the script id, the last payload byte
    path = tmp_path / "tampered.hex"
    path.write_text(data.hex())
    code, report = _run([str(path), "--keystore", str(keystore)], capsys)
    assert code == EXIT_CHECK_FAILED
    assert report["mac"]["status"] == "failed"
    assert report["signature"]["status"] == "failed"


def test_base64_and_raw_input_are_accepted(
    rtds: Path, keystore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = parse_hex_or_base64((rtds / ECS17B_RESPONSE).read_text())
    (tmp_path / "m.b64").write_text(base64.b64encode(data).decode())
    (tmp_path / "m.bin").write_bytes(data)
    for name in ("m.b64", "m.bin"):
        code, report = _run([str(tmp_path / name), "--keystore", str(keystore)], capsys)
        assert code == EXIT_OK
        assert report["header"]["cra"] == "response"
        assert report["header"]["date_time"] is not None
        assert report["payload"]["apdu"] == "access-response"
        assert report["mac"]["status"] == "verified"


def test_garbage_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for text in ("DF0900", "not a message", "DD000000000000"):
        path = tmp_path / "bad.txt"
        path.write_text(text)
        code, report = _run([str(path)], capsys)
        assert code == EXIT_NOT_DECODED
        assert report["ok"] is False and report["error"]


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="dccsim")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["gbcs", "decode", str(tmp_path / "absent.hex")])
    assert args.func(args) == EXIT_NOT_DECODED
    assert "absent.hex" in capsys.readouterr().err


def test_dccsim_keystore_is_accepted(
    rtds: Path, keystore: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = KeyStore(tmp_path / "store")

    def cert(name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((keystore / f"{name}.pem").read_bytes())

    acb_key = parse_private_key((keystore / "90b3d51f30000002-ka.key").read_bytes())
    store.put(ACB, KeyUsage.KA, cert("90b3d51f30000002-ka"), acb_key, role=4)
    store.put(ESME, KeyUsage.KA, cert("00db1234567890a0-ka"), None, role=None)
    store.put(SUPPLIER, KeyUsage.DS, cert("90b3d51f30010000-ds"), None, role=2)
    code, report = _run([str(rtds / ECS42), "--keystore", str(tmp_path / "store")], capsys)
    assert code == EXIT_OK
    assert report["mac"]["status"] == "verified"
    assert report["signature"]["status"] == "verified"


def test_cli_entry_point_reads_stdin(rtds: Path, keystore: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dccsim", "gbcs", "decode", "-", "--keystore", str(keystore)],
        input=(rtds / ECS42).read_bytes(),
        capture_output=True,
        check=False,
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["signature"]["status"] == "verified"
