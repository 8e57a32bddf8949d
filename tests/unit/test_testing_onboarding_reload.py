"""After onboarding with premises the testing service announces them: ``estate.changed`` on the
bus (the inventory imports them) and ``POST /estate/reload`` on the gateway's control API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dccsim.bus import Envelope
from dccsim.config import TestingSettings
from dccsim.estate import CHANGED_EVENT
from dccsim.seed import seed_demo
from services.testing.app import build_app

NEW = {
    "user_id": "reload-energy",
    "eui": "90-B3-D5-1F-30-06-00-00",
    "roles": ["IS"],
    "kind": "sec_party",
}


class RecordingBus:
    """What the testing service publishes (it consumes nothing the test needs)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Envelope]] = []

    async def publish_event(self, routing_key: str, envelope: Envelope) -> None:
        self.events.append((routing_key, envelope))

    async def subscribe_events(self, pattern: str, handler: Any) -> None:
        pass


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[str, list[str]]]:
    """A stand-in for the gateway's control API, recording the paths it is asked for."""
    calls: list[str] = []

    async def reload(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.json_response({"premises_added": 2, "devices_added": 4})

    app = web.Application()
    app.router.add_post("/estate/reload", reload)
    async with TestServer(app) as server:
        yield str(server.make_url("")), calls


@pytest.fixture
def home(tmp_path: Path) -> Path:
    seed_demo(tmp_path, premises=1)
    return tmp_path


async def test_onboarding_with_premises_tells_the_inventory_and_the_gateway(
    home: Path, gateway: tuple[str, list[str]]
) -> None:
    url, calls = gateway
    bus = RecordingBus()
    app = build_app(TestingSettings(home=home), bus=bus, gateway_url=url)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/api/v1/participants", json=NEW)).status == 201
        onboarding = f"/api/v1/participants/{NEW['user_id']}/onboarding"
        resp = await client.post(onboarding, json={"premises": 0})
        assert resp.status == 201
        assert calls == [] and bus.events == []  # nothing new in the estate

        resp = await client.post(onboarding, json={"premises": 2})
        assert resp.status == 201, await resp.text()
        added = (await resp.json())["premises_added"]
    assert added == ["P0000002", "P0000003"]
    assert calls == ["/estate/reload"]
    assert [(key, env.body) for key, env in bus.events] == [(CHANGED_EVENT, {"premises": added})]


async def test_onboarding_still_succeeds_when_the_gateway_is_not_running(home: Path) -> None:
    # no gateway-control.json: the gateway will read the new estate.json when it starts
    async with TestClient(TestServer(build_app(TestingSettings(home=home)))) as client:
        await client.post("/api/v1/participants", json=NEW)
        resp = await client.post(
            f"/api/v1/participants/{NEW['user_id']}/onboarding", json={"premises": 1}
        )
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["premises_added"] == ["P0000002"]
