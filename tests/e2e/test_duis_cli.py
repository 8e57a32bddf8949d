"""``dccsim duis send --wait`` end to end: DCC's own request templates, re-signed by the command as
the demo Supplier, sent over mutual TLS to a running system (every service a separate process, the
real RabbitMQ), the synchronous answer and the decoded asynchronous Response printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dccsim import participants
from tests.broker import rabbitmqctl_available
from tests.system import System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]

DEMO_SUPPLIER = "90-B3-D5-1F-30-01-D0-00"


def template(reference_dir: Path, name: str) -> Path:
    path = reference_dir / "duis" / "templates" / name
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return path


def dccsim(system: System, *argv: str) -> tuple[int, list[dict[str, Any]], str]:
    """Run the real ``dccsim`` command; its exit code, the JSON objects it printed, stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "dccsim", *argv],
        env=system.env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout.decode()
    decoder = json.JSONDecoder()
    objects: list[dict[str, Any]] = []
    index = 0
    while (index := out.find("{", index)) != -1:
        value, index = decoder.raw_decode(out, index)
        objects.append(value)
    return proc.returncode, objects, proc.stderr.decode()


def test_send_wait_read_registers_template(system: System, reference_dir: Path) -> None:
    device = system.esmes()[0]
    url_before = participants.load(system.home)["demo-supplier"].response_url
    code, answers, err = dccsim(
        system,
        "duis",
        "send",
        str(template(reference_dir, "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML")),
        "--as",
        DEMO_SUPPLIER,
        "--target",
        device,
        "--wait",
        "30",
    )
    assert code == 0, (answers, err)
    sync, response = answers
    assert sync["answer"] == "synchronous"
    assert sync["url"].endswith("/api/v1/serviceS")
    assert sync["response_code"] == "I99"
    rid = sync["sent_request_id"]
    assert rid.startswith(f"{DEMO_SUPPLIER}:{device}:")
    assert sync["request_id"] == rid
    assert sync["signature"].startswith("verified")

    assert response["answer"] == "asynchronous"
    assert response["response_code"] == "I0"
    assert response["request_id"] == rid
    assert response["service_reference_variant"] == "4.1.1"
    assert response["signature"].startswith("verified")
    gbcs = response["gbcs"]
    assert gbcs["ok"] is True
    assert gbcs["apdu"] == "general-ciphering"
    assert gbcs["header"]["originator_title"] == device
    assert gbcs["header"]["originator_counter"] == int(rid.rsplit(":", 1)[1])
    assert gbcs["mac"]["status"] == "verified"
    # The Receive Response Service was registered only for the time being.
    assert participants.load(system.home)["demo-supplier"].response_url == url_before


def test_send_critical_template_through_pre_command(system: System, reference_dir: Path) -> None:
    device = system.esmes()[1]
    code, answers, err = dccsim(
        system,
        "duis",
        "send",
        str(template(reference_dir, "ECS43_7.2_SUCCESS_REQUEST_DUIS.XML")),
        "--target",
        device,
        "--wait",
        "30",
    )
    assert code == 0, (answers, err)
    transform, cv5, response = answers
    assert transform["url"].endswith("/api/v1/serviceT")
    assert transform["response_code"] == "I0"
    assert transform["pre_command"]["gbcs_payload"]
    assert cv5["command_variant"] == 5
    assert cv5["url"].endswith("/api/v1/serviceS")
    assert cv5["response_code"] == "I99"
    assert cv5["request_id"] == transform["request_id"] == transform["sent_request_id"]
    assert response["response_code"] == "I0"
    assert response["request_id"] == transform["request_id"]
    assert response["gbcs"]["ok"] is True


def test_send_error_answer_exits_non_zero(system: System, reference_dir: Path) -> None:
    # A counter no greater than one already accepted from this originator: E-code, exit 1.
    path = template(reference_dir, "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML")
    code, answers, err = dccsim(
        system, "duis", "send", str(path), "--target", system.esmes()[0], "--keep-counter"
    )
    assert code == 1, (answers, err)
    assert answers[0]["response_code"].startswith("E")
