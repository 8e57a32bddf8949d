"""``dccsim duis sign`` / ``verify``: DCC's request templates re-signed as a participant, the
RequestID rewritten (or its counter kept), tampering caught by the exit code."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest

from dccsim.duis.catalogue import UserRole
from dccsim.duis.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, WEB_SERVICES, register
from dccsim.duis.requestid import RequestId
from dccsim.duis.xml import DS_NS, parse_safely, parse_service_request
from dccsim.seed import DEMO_SUPPLIER_EUI, DEMO_SUPPLIER_ID, seed_participant
from dccsim.testuser import TestUser

TEMPLATE = "ECS17b_4.1.1_REQUEST_DUIS.XML"
TEMPLATE_RID = "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1000"
OTHER_EUI = "90-B3-D5-1F-30-01-D0-01"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("DCCSIM_HOME", str(home))
    monkeypatch.delenv("DCCSIM_CONFIG", raising=False)
    for eui, user_id in ((DEMO_SUPPLIER_EUI, DEMO_SUPPLIER_ID), (OTHER_EUI, "other-supplier")):
        seed_participant(
            home, eui=eui, user_id=user_id, roles=frozenset({UserRole.IMPORT_SUPPLIER})
        )
    return home


@pytest.fixture
def template(reference_dir: Path, tmp_path: Path) -> Path:
    source = reference_dir / "duis" / "templates" / TEMPLATE
    if not source.is_file():
        pytest.skip(f"{source} missing")
    copy = tmp_path / TEMPLATE
    copy.write_bytes(source.read_bytes())
    return copy


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dccsim")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["duis", *argv])
    code: int = args.func(args)
    return code


def request_id(path: Path) -> RequestId:
    return parse_service_request(path.read_bytes()).request_id


def test_web_service_per_command_variant() -> None:
    assert {cv: WEB_SERVICES[cv] for cv in range(1, 9)} == {
        1: "serviceS",
        2: "serviceD",
        3: "serviceS",
        4: "serviceT",
        5: "serviceS",
        6: "serviceD",
        7: "serviceS",
        8: "serviceD",
    }


def test_sign_then_verify_round_trip(
    home: Path, template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "signed.xml"
    assert run("sign", str(template), "-o", str(out)) == EXIT_OK
    root = parse_safely(out.read_bytes())
    signatures = root.findall(f"{{{DS_NS}}}Signature")
    assert len(signatures) == 1  # the template's placeholder is replaced, not kept
    assert b"ZGVmYXVsdA==" not in out.read_bytes()
    rid = request_id(out)
    assert str(rid).startswith(DEMO_SUPPLIER_EUI + ":00-DB-12-34-56-78-90-A0:")
    capsys.readouterr()

    assert run("verify", str(out)) == EXIT_OK
    printed = capsys.readouterr().out
    user = TestUser.load(home / "participants" / "90B3D51F3001D000")
    assert "signature OK" in printed
    assert DEMO_SUPPLIER_EUI in printed
    assert str(user.xml_cert.serial_number) in printed
    assert "role 87" in printed  # XML-signing


def test_sign_as_another_participant_to_stdout(
    home: Path, template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("sign", str(template), "--as", OTHER_EUI.replace("-", "")) == EXIT_OK
    signed = capsys.readouterr().out.encode()
    assert parse_service_request(signed).request_id.originator == bytes.fromhex(
        OTHER_EUI.replace("-", "")
    )
    path = home / "signed.xml"
    path.write_bytes(signed)
    assert run("verify", str(path)) == EXIT_OK
    assert OTHER_EUI in capsys.readouterr().out


def test_placeholder_signature_does_not_verify(
    home: Path, template: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("verify", str(template)) == EXIT_FAILED
    assert "INVALID" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"<sr:ServiceReferenceVariant>4.1.1<", b"<sr:ServiceReferenceVariant>4.1.2<"),
        (b"ReadInstantaneousImportRegisters", b"ReadInstantaneousExportRegisters"),
        (b"<ds:SignatureValue>", b"<ds:SignatureValue>AAAA"),
    ],
)
def test_tampering_is_detected(
    home: Path,
    template: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    old: bytes,
    new: bytes,
) -> None:
    out = tmp_path / "signed.xml"
    assert run("sign", str(template), "-o", str(out)) == EXIT_OK
    data = out.read_bytes()
    assert old in data
    out.write_bytes(data.replace(old, new, 1))
    capsys.readouterr()
    assert run("verify", str(out)) == EXIT_FAILED
    assert "signature INVALID" in capsys.readouterr().out


def test_counter_tampering_is_detected(home: Path, template: Path, tmp_path: Path) -> None:
    out = tmp_path / "signed.xml"
    assert run("sign", str(template), "-o", str(out)) == EXIT_OK
    rid = request_id(out)
    bumped = RequestId(rid.originator, rid.target, rid.counter + 1)
    out.write_bytes(out.read_bytes().replace(str(rid).encode(), str(bumped).encode()))
    assert run("verify", str(out)) == EXIT_FAILED


def test_unknown_signer_fails(home: Path, template: Path, tmp_path: Path) -> None:
    out = tmp_path / "signed.xml"
    assert run("sign", str(template), "-o", str(out)) == EXIT_OK
    empty = tmp_path / "empty-keystore"
    empty.mkdir()
    assert run("verify", str(out), "--keystore", str(empty)) == EXIT_FAILED


def test_counter_rewritten_fresh_and_increasing(home: Path, template: Path, tmp_path: Path) -> None:
    before = time.time_ns() // 1000
    first, second = tmp_path / "1.xml", tmp_path / "2.xml"
    assert run("sign", str(template), "-o", str(first)) == EXIT_OK
    assert run("sign", str(first), "-o", str(second)) == EXIT_OK
    c1, c2 = request_id(first).counter, request_id(second).counter
    assert c1 > before > 1000
    assert c2 > c1


def test_counter_kept_when_asked(home: Path, template: Path, tmp_path: Path) -> None:
    out = tmp_path / "kept.xml"
    assert run("sign", str(template), "--keep-counter", "-o", str(out)) == EXIT_OK
    rid = request_id(out)
    assert rid.counter == 1000
    assert str(rid) == DEMO_SUPPLIER_EUI + TEMPLATE_RID[len(DEMO_SUPPLIER_EUI) :]
    assert run("verify", str(out)) == EXIT_OK


def test_target_rewritten(home: Path, template: Path, tmp_path: Path) -> None:
    out = tmp_path / "targeted.xml"
    target = "00-DC-C5-00-00-00-01-02"
    assert run("sign", str(template), "--target", target, "-o", str(out)) == EXIT_OK
    assert request_id(out).target == bytes.fromhex(target.replace("-", ""))
    assert run("verify", str(out)) == EXIT_OK


def test_unknown_participant_and_bad_input(
    home: Path, template: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("sign", str(template), "--as", "00-11-22-33-44-55-66-77") == EXIT_USAGE
    assert "no participant bundle" in capsys.readouterr().err
    not_duis = tmp_path / "not-duis.xml"
    not_duis.write_bytes(b"<a/>")
    assert run("sign", str(not_duis)) == EXIT_USAGE
    assert run("verify", str(tmp_path / "missing.xml")) == EXIT_USAGE
    with pytest.raises(SystemExit):
        run("sign", str(template), "--as", "not-an-eui")
