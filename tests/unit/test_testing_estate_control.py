"""Estate control through services/testing against a real SM WAN gateway control API (the
gateway's own aiohttp app, in-process, found through ``gateway-control.json``)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dccsim import estate
from dccsim.config import GatewaySettings, TestingSettings
from dccsim.seed import DEMO_SUPPLIER_ID, seed_demo, supplier_id
from gateway.control import build_control_app
from gateway.server import build_server
from services.testing.app import build_app

Client = TestClient[web.Request, web.Application]
ME = {"X-Dccsim-Participant": DEMO_SUPPLIER_ID}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    seed_demo(home, premises=2, suppliers=2)  # P0000001 is demo-supplier's, P0000002 not
    return home


@pytest.fixture
def home(seeded: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "home"
    shutil.copytree(seeded, copy)
    return copy


@pytest.fixture
async def gateway(home: Path) -> AsyncIterator[Any]:
    server = build_server(GatewaySettings(home=home))
    async with TestServer(build_control_app(server)) as control:
        (home / "gateway-control.json").write_text(
            json.dumps({"url": str(control.make_url("")).rstrip("/")})
        )
        yield server
    for task in list(server.tasks):
        task.cancel()


@pytest.fixture
async def client(home: Path, gateway: Any) -> AsyncIterator[Client]:
    async with TestClient(TestServer(build_app(TestingSettings(home=home)))) as test_client:
        yield test_client


def _device(home: Path, premises_id: str, device_type: str) -> str:
    premises = next(p for p in estate.load(home) if p.premises_id == premises_id)
    return next(d.eui for d in premises.devices if d.device_type.value == device_type)


async def test_participant_forces_an_error_and_delay_on_its_own_meter(
    client: Client, home: Path, gateway: Any
) -> None:
    esme = _device(home, "P0000001", "ESME")
    resp = await client.put(
        f"/api/v1/estate/devices/{esme}",
        json={"delay_s": 2.5, "error": {"code": "e21"}, "times": 0},
        headers=ME,
    )
    assert resp.status == 200, await resp.text()
    view = await resp.json()
    assert view["delay_s"] == 2.5 and view["error"]["code"] == "E21"
    got = await (await client.get(f"/api/v1/estate/devices/{esme}", headers=ME)).json()
    assert got["error"]["code"] == "E21"


async def test_another_participants_device_is_not_found(client: Client, home: Path) -> None:
    theirs = _device(home, "P0000002", "ESME")
    resp = await client.put(f"/api/v1/estate/devices/{theirs}", json={"delay_s": 1}, headers=ME)
    assert resp.status == 404
    other = {"X-Dccsim-Participant": supplier_id(1)}
    assert (
        await client.put(f"/api/v1/estate/devices/{theirs}", json={"delay_s": 1}, headers=other)
    ).status == 200
    outage = await client.post("/api/v1/estate/premises/P0000002/outage", headers=ME)
    assert outage.status == 404


async def test_requests_the_service_does_not_offer_are_refused_before_the_gateway(
    client: Client, home: Path
) -> None:
    esme = _device(home, "P0000001", "ESME")
    for body in (
        {"error": {"code": "E99"}},
        {"error": {"dlms_result": 0}},
        {"delay_s": 10_000},
        {"offline": "sideways"},
        {},
    ):
        resp = await client.put(f"/api/v1/estate/devices/{esme}", json=body, headers=ME)
        assert resp.status == 400, body
    nobody = await client.put(f"/api/v1/estate/devices/{esme}", json={"delay_s": 1})
    assert nobody.status == 403


async def test_alert_outage_hub_and_reset_on_own_premises(
    client: Client, home: Path, gateway: Any
) -> None:
    esme = _device(home, "P0000001", "ESME")
    hub = _device(home, "P0000001", "CHF")
    alert = await client.post(
        f"/api/v1/estate/devices/{esme}/alerts", json={"alert_code": "0x8F3E"}, headers=ME
    )
    assert alert.status == 202 and (await alert.json())["alert_code"] == "0x8f3e"
    assert (
        await client.put(f"/api/v1/estate/hubs/{esme}", json={"offline": True}, headers=ME)
    ).status == 400  # not a hub
    offline = await client.put(f"/api/v1/estate/hubs/{hub}", json={"offline": True}, headers=ME)
    assert (await offline.json())["offline"] is True
    started = await client.post(
        f"/api/v1/estate/premises/{esme}/outage", json={"duration_s": 60}, headers=ME
    )
    assert started.status == 202 and (await started.json())["premises_id"] == "P0000001"
    ended = await client.delete("/api/v1/estate/premises/P0000001/outage", headers=ME)
    assert (await ended.json())["outage"] is False
    reset = await client.post("/api/v1/estate/premises/P0000001/reset", headers=ME)
    assert (await reset.json())["premises_id"] == "P0000001"


async def test_network_wide_controls_are_dccs(client: Client) -> None:
    assert (await client.post("/api/v1/estate/network/reset", headers=ME)).status == 403
    dcc = {"X-Dccsim-Actor": "dcc"}
    resp = await client.put("/api/v1/estate/network/regions/North", json={"loss": 0.5}, headers=dcc)
    assert resp.status == 200 and (await resp.json())["loss"] == 0.5
    assert (await client.post("/api/v1/estate/network/reset", headers=dcc)).status == 200


async def test_inventory_registration_decides_when_it_answers(home: Path, gateway: Any) -> None:
    """A change of supplier in the inventory takes control away even while the estate file
    still names the old supplier."""
    from dccsim.seed import DEMO_SUPPLIER_EUI

    esme = _device(home, "P0000001", "ESME")

    async def lookup(eui: str) -> dict[str, Any] | None:
        return {"eui": eui, "registrations": {"IS": "90-B3-D5-1F-30-01-D0-01"}}

    app = build_app(TestingSettings(home=home), device_lookup=lookup)
    async with TestClient(TestServer(app)) as c:
        resp = await c.put(f"/api/v1/estate/devices/{esme}", json={"delay_s": 1}, headers=ME)
        assert resp.status == 404
    assert DEMO_SUPPLIER_EUI in next(p for p in estate.load(home)).registrations.values()


async def test_gateway_not_running_is_a_503(home: Path) -> None:
    esme = _device(home, "P0000001", "ESME")
    async with TestClient(TestServer(build_app(TestingSettings(home=home)))) as c:
        resp = await c.put(f"/api/v1/estate/devices/{esme}", json={"delay_s": 1}, headers=ME)
        assert resp.status == 503 and "not running" in (await resp.json())["error"]


async def test_portal_device_page_sets_conditions_with_its_form(client: Client, home: Path) -> None:
    from services.testing.app import STATE

    state = client.app[STATE]
    token = await state.logins.create_link(DEMO_SUPPLIER_ID)
    await client.get(f"/ssi/login?token={token}")
    esme = _device(home, "P0000001", "ESME")
    devices = await (await client.get("/ssi/devices")).text()
    assert f"/ssi/devices/{esme}" in devices
    page = await (await client.get(f"/ssi/devices/{esme}")).text()
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match
    fields = {"csrf": match.group(1), "action": "conditions", "offline": "", "delay_s": "3"}
    fields |= {"error": "dlms", "dlms_result": "1", "times": "2"}
    done = await client.post(f"/ssi/devices/{esme}", data=fields)
    assert done.status == 200
    text = await done.text()
    assert "Device conditions set." in text and "DLMS result 1" in text
    theirs = _device(home, "P0000002", "ESME")
    assert (await client.get(f"/ssi/devices/{theirs}")).status == 404
