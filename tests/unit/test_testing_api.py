"""The testing service over HTTP: JSON API, SSI portal sessions, and the gfi/ssi CLI."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dccsim.cli import main
from dccsim.config import TestingSettings
from dccsim.seed import DEMO_SUPPLIER_EUI, DEMO_SUPPLIER_ID, seed_demo
from services.testing.app import build_app

NOW = dt.datetime(2026, 1, 7, 10, 0, tzinfo=dt.UTC)
Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    seed_demo(home, premises=2)
    return home


@pytest.fixture
def home(seeded: Path, tmp_path: Path) -> Path:
    """The seeded installation with a database of its own for each test."""
    import shutil

    copy = tmp_path / "home"
    shutil.copytree(seeded, copy)
    return copy


@pytest.fixture
async def client(home: Path) -> AsyncIterator[Client]:
    app = build_app(TestingSettings(home=home), clock=lambda: NOW)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def _esme(home: Path) -> str:
    from dccsim import estate

    return next(
        d.eui for p in estate.load(home) for d in p.devices if d.device_type.value == "ESME"
    )


async def test_phase_notification_direction_and_renotification(
    client: Client,
) -> None:
    resp = await client.post("/api/v1/phases/IT/notification", json={"commencement": "2026-04-01"})
    assert resp.status == 201
    assert (await resp.json())["audience"] == "Parties"
    again = await client.post("/api/v1/phases/IT/notification", json={"commencement": "2026-05-01"})
    assert again.status == 409
    resp = await client.post(
        "/api/v1/phases/IT/directions", json={"reason": "readiness", "requested_date": "2026-06-01"}
    )
    assert resp.status == 201
    direction = await resp.json()
    resp = await client.post(
        "/api/v1/phases/it/renotification",
        json={"direction_id": direction["id"], "commencement": "2026-06-01"},
    )
    assert resp.status == 201
    status = await (await client.get("/api/v1/phases/IT")).json()
    assert status["commencement"] == "2026-06-01" and status["open_direction"] is None
    history = await (await client.get("/api/v1/phases/IT/history")).json()
    assert [e["event"] for e in history] == ["notified", "direction", "renotified"]
    notices = await (await client.get(f"/api/v1/notices?participant={DEMO_SUPPLIER_ID}")).json()
    assert len(notices) == 2
    phases = await (await client.get("/api/v1/phases")).json()
    assert [p["phase"] for p in phases] == ["SIT", "IT", "E2E", "SRT", "pre-UIT", "GFI"]


async def test_phase_errors_are_json(client: Client) -> None:
    resp = await client.post("/api/v1/phases/XYZ/notification", json={"commencement": "2026-04-01"})
    assert resp.status == 404
    resp = await client.post("/api/v1/phases/SIT/notification", json={"commencement": "soon"})
    assert resp.status == 400 and "YYYY-MM-DD" in (await resp.json())["error"]


async def test_rules_and_decision(client: Client) -> None:
    rules = await (await client.get("/api/v1/rules")).json()
    assert rules["version"] == 1 and rules["problem"] is None
    ok = await (
        await client.get(f"/api/v1/rules/decision?participant={DEMO_SUPPLIER_ID}&srv=4.1.1")
    ).json()
    assert ok == {"accept": True}
    over = await (
        await client.get(
            f"/api/v1/rules/decision?participant={DEMO_SUPPLIER_ID}&srv=4.1.1&used_count=10000"
        )
    ).json()
    assert over["accept"] is False and over["response_code"] == "E3"
    unknown = await (await client.get("/api/v1/rules/decision?participant=nobody&srv=4.1.1")).json()
    assert unknown["response_code"] == "E1"


async def test_gfi_generate_then_check_over_the_api(client: Client, home: Path) -> None:
    resp = await client.post(
        "/api/v1/gfi/generate",
        json={
            "device": _esme(home),
            "recipient": DEMO_SUPPLIER_EUI,
            "counter": 1000,
            "active_import": 99,
        },
    )
    assert resp.status == 200
    message = (await resp.json())["message"]
    report = await (
        await client.post(
            "/api/v1/gfi/check", json={"message": message["base64"], "use_case": "ECS17b"}
        )
    ).json()
    assert report["conformant"] is True
    assert {
        "field": "active_import",
        "value": "99",
        "verdict": "info",
        "detail": "unit 30",
    } in report["findings"]
    bad = await client.post("/api/v1/gfi/generate", json={"device": "x", "recipient": "y"})
    assert bad.status == 400


async def test_pma_acts_as_the_named_actor(client: Client) -> None:
    created = await client.post(
        "/api/v1/pma/entries",
        json={"kind": "recommendation", "title": "Rotate DCCKI CA", "body": ""},
        headers={"X-Dccsim-Actor": "dccki_pma"},
    )
    assert created.status == 201
    entry_id = (await created.json())["id"]
    refused = await client.post(
        "/api/v1/pma/entries",
        json={"kind": "review", "title": "x"},
        headers={"X-Dccsim-Actor": "dcc"},
    )
    assert refused.status == 403
    assert (await client.get("/api/v1/pma/entries")).status == 403  # no actor
    hidden = await client.get(f"/api/v1/pma/entries/{entry_id}", headers={"X-Dccsim-Actor": "ssc"})
    assert hidden.status == 403
    req = await client.post(
        f"/api/v1/pma/entries/{entry_id}/access-requests",
        json={"reason": "review"},
        headers={"X-Dccsim-Actor": "ssc"},
    )
    request_id = (await req.json())["id"]
    await client.post(
        f"/api/v1/pma/access-requests/{request_id}/grant", headers={"X-Dccsim-Actor": "dccki_pma"}
    )
    seen = await client.get(f"/api/v1/pma/entries/{entry_id}", headers={"X-Dccsim-Actor": "ssc"})
    assert seen.status == 200
    decided = await client.post(
        f"/api/v1/pma/entries/{entry_id}/decision",
        json={"decision": "no_modification_proposal", "reason": "n/a", "transition": True},
        headers={"X-Dccsim-Actor": "dcc"},
    )
    assert (await decided.json())["notified_to_secretary_of_state"] is True


async def _log_in(client: Client) -> str:
    resp = await client.post("/api/v1/ssi/links", json={"user_id": DEMO_SUPPLIER_ID})
    url = str((await resp.json())["url"])
    token = url.split("token=")[1]
    page = await client.get(f"/ssi/login?token={token}")
    assert page.status == 200 and "Overview" in await page.text()
    return token


async def test_ssi_needs_a_login(client: Client) -> None:
    resp = await client.get("/ssi/devices", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/ssi/login"


async def test_ssi_login_link_works_once(client: Client) -> None:
    token = await _log_in(client)
    client.session.cookie_jar.clear()
    again = await client.get(f"/ssi/login?token={token}")
    assert again.status == 401 and "used or expired" in await again.text()


async def test_ssi_pages_show_the_participants_things(client: Client, home: Path) -> None:
    await client.post("/api/v1/phases/GFI/notification", json={"commencement": "2026-02-01"})
    await _log_in(client)
    devices = await (await client.get("/ssi/devices")).text()
    assert _esme(home) in devices and "Commissioned" in devices
    phases = await (await client.get("/ssi/phases")).text()
    assert "GBCS Interface Testing for Industry" in phases and "2026-02-01" in phases
    rules = await (await client.get("/ssi/rules")).text()
    assert "version 1" in rules
    certs = await (await client.get("/ssi/certificates")).text()
    assert "tls-client.pem" in certs and ".key" not in certs
    pem = await client.get("/ssi/certificates/ka.pem")
    assert pem.status == 200 and (await pem.read()).startswith(b"-----BEGIN CERTIFICATE")
    assert (await client.get("/ssi/certificates/ka.key")).status == 404


async def test_ssi_gfi_forms_need_the_csrf_token(client: Client, home: Path) -> None:
    await _log_in(client)
    form = await (await client.get("/ssi/gfi")).text()
    match = re.search(r'name="csrf" value="([^"]+)"', form)
    assert match is not None
    fields = {
        "use_case": "ECS17b",
        "device": _esme(home),
        "recipient": DEMO_SUPPLIER_EUI,
        "counter": "5",
    }
    refused = await client.post("/ssi/gfi/generate", data={**fields, "csrf": "wrong"})
    assert refused.status == 403
    page = await (
        await client.post("/ssi/gfi/generate", data={**fields, "csrf": match.group(1)})
    ).text()
    assert "Conformant" in page
    hex_text = re.search(r'id="message-hex">([0-9A-F]+)<', page)
    assert hex_text is not None
    checked = await (
        await client.post(
            "/ssi/gfi/check", data={"message": hex_text.group(1), "csrf": match.group(1)}
        )
    ).text()
    assert "Check report" in checked and "Conformant" in checked


async def test_ssi_logout_ends_the_session(client: Client) -> None:
    await _log_in(client)
    form = await (await client.get("/ssi/")).text()
    match = re.search(r'name="csrf" value="([^"]+)"', form)
    assert match is not None
    await client.post("/ssi/logout", data={"csrf": match.group(1)})
    resp = await client.get("/ssi/", allow_redirects=False)
    assert resp.status == 303


def test_cli_generate_check_and_link(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DCCSIM_HOME", str(home))
    assert (
        main(
            [
                "gfi",
                "generate",
                "--device",
                _esme(home),
                "--recipient",
                DEMO_SUPPLIER_EUI,
                "--counter",
                "0x10",
                "--active-import",
                "5",
            ]
        )
        == 0
    )
    message = capsys.readouterr().out.strip()
    assert re.fullmatch(r"[0-9A-F]+", message)
    assert main(["gfi", "check", message, "--use-case", "ECS17b"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["conformant"] is True
    assert main(["gfi", "check", message, "--use-case", "ECS70"]) == 1
    capsys.readouterr()
    assert main(["ssi", "link", "--user-id", DEMO_SUPPLIER_ID]) == 0
    assert "/ssi/login?token=" in capsys.readouterr().out
    assert main(["ssi", "link", "--user-id", "nobody"]) == 2
