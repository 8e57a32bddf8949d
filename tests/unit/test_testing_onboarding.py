"""Onboarding over the API: apply, onboard (bundle, register, premises), suspend, re-activate,
and register a Receive Response Service URL."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dccsim import estate, participants
from dccsim.config import TestingSettings
from dccsim.seed import DEMO_SUPPLIER_ID, seed_demo
from services.testing.app import build_app

Client = TestClient[web.Request, web.Application]
NEW = {
    "user_id": "acme-energy",
    "eui": "90-B3-D5-1F-30-02-00-00",
    "roles": ["IS", "ED"],
    "kind": "sec_party",
    "response_url": "https://acme.example:8443/receive",
}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    seed_demo(home, premises=2)
    return home


@pytest.fixture
def home(seeded: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(seeded, copy)
    return copy


@pytest.fixture
async def client(home: Path) -> AsyncIterator[Client]:
    async with TestClient(TestServer(build_app(TestingSettings(home=home)))) as test_client:
        yield test_client


async def test_an_applicant_is_not_registered_until_onboarded(client: Client, home: Path) -> None:
    resp = await client.post("/api/v1/participants", json=NEW)
    assert resp.status == 201 and (await resp.json())["status"] == "applied"
    assert "acme-energy" not in participants.load(home)
    again = await client.post("/api/v1/participants", json=NEW)
    assert again.status == 409
    listed = {p["user_id"]: p for p in await (await client.get("/api/v1/participants")).json()}
    assert listed["acme-energy"]["status"] == "applied"
    assert listed[DEMO_SUPPLIER_ID]["status"] == "active"


async def test_onboarding_issues_the_bundle_and_allocates_premises_in_its_roles(
    client: Client, home: Path
) -> None:
    await client.post("/api/v1/participants", json=NEW)
    resp = await client.post("/api/v1/participants/acme-energy/onboarding", json={"premises": 3})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["status"] == "active" and body["premises_added"] == [
        "P0000003",
        "P0000004",
        "P0000005",
    ]
    bundle = Path(body["bundle"])
    for name in ("tls-client.pem", "ds.pem", "ka.pem", "xml-sign.pem", "receiver.pem"):
        assert (bundle / name).is_file(), name
    registered = participants.load(home)["acme-energy"]
    assert registered.response_url == NEW["response_url"]
    mine = [p for p in estate.load(home) if p.premises_id in body["premises_added"]]
    assert all(p.registrations == {"ED": NEW["eui"], "IS": NEW["eui"]} for p in mine)
    assert len(estate.load(home)) == 5  # the demo premises are untouched


async def test_suspension_takes_a_participant_out_of_the_register_and_back(
    client: Client, home: Path
) -> None:
    resp = await client.put(
        f"/api/v1/participants/{DEMO_SUPPLIER_ID}/status",
        json={"status": "suspended", "reason": "test misuse"},
    )
    assert resp.status == 200 and (await resp.json())["status"] == "suspended"
    assert DEMO_SUPPLIER_ID not in participants.load(home)
    refused = await client.post(f"/api/v1/participants/{DEMO_SUPPLIER_ID}/onboarding")
    assert refused.status == 409
    back = await client.put(
        f"/api/v1/participants/{DEMO_SUPPLIER_ID}/status", json={"status": "active"}
    )
    assert (await back.json())["status"] == "active"
    assert DEMO_SUPPLIER_ID in participants.load(home)
    history = await (await client.get(f"/api/v1/participants/{DEMO_SUPPLIER_ID}/history")).json()
    assert [h["status"] for h in history] == ["suspended", "active"]


async def test_response_url_must_be_https(client: Client, home: Path) -> None:
    bad = await client.put(
        f"/api/v1/participants/{DEMO_SUPPLIER_ID}/response-url", json={"url": "http://x/"}
    )
    assert bad.status == 400
    good = await client.put(
        f"/api/v1/participants/{DEMO_SUPPLIER_ID}/response-url",
        json={"url": "https://127.0.0.1:8444/receive"},
    )
    assert good.status == 200
    assert (
        participants.load(home)[DEMO_SUPPLIER_ID].response_url == "https://127.0.0.1:8444/receive"
    )


async def test_a_device_maker_applies_without_roles_but_gets_no_premises(client: Client) -> None:
    maker = {
        "user_id": "meterco",
        "eui": "90-B3-D5-1F-30-03-00-00",
        "roles": [],
        "kind": "non_sec_party",
    }
    assert (await client.post("/api/v1/participants", json=maker)).status == 201
    no_premises = await client.post("/api/v1/participants/meterco/onboarding", json={"premises": 1})
    assert no_premises.status == 400
    sec = {**maker, "user_id": "x", "eui": "90-B3-D5-1F-30-04-00-00", "kind": "sec_party"}
    assert (await client.post("/api/v1/participants", json=sec)).status == 400


async def test_several_receive_urls_are_registered_in_order_and_survive_suspension(
    client: Client, home: Path
) -> None:
    urls = ["https://acme.example:8443/receive", "https://backup.acme.example/receive"]
    applied = await client.post(
        "/api/v1/participants", json={**NEW, "response_url": None, "response_urls": urls}
    )
    assert applied.status == 201 and (await applied.json())["response_urls"] == urls
    await client.post("/api/v1/participants/acme-energy/onboarding")
    assert participants.load(home)["acme-energy"].response_urls == tuple(urls)
    for status in ("suspended", "active"):
        await client.put("/api/v1/participants/acme-energy/status", json={"status": status})
    assert participants.load(home)["acme-energy"].response_urls == tuple(urls)
    changed = await client.put(
        "/api/v1/participants/acme-energy/response-url", json={"urls": list(reversed(urls))}
    )
    assert (await changed.json())["response_urls"] == list(reversed(urls))
    assert participants.load(home)["acme-energy"].response_urls == tuple(reversed(urls))
    one_bad = await client.put(
        "/api/v1/participants/acme-energy/response-url",
        json={"urls": [urls[0], "http://plain.example/"]},
    )
    assert one_bad.status == 400  # refused whole: nothing half-registered
    assert participants.load(home)["acme-energy"].response_urls == tuple(reversed(urls))
    cleared = await client.put("/api/v1/participants/acme-energy/response-url", json={"urls": []})
    assert (await cleared.json())["response_urls"] == []
    assert participants.load(home)["acme-energy"].response_urls == ()
