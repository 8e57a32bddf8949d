"""services/testing: test coordination. Today: the read side of the participant register and the
test estate, as a JSON control API on localhost (``/api/v1/participants``, ``/api/v1/estate``).
Phases, quotas, estate control and the SSI portal build on this (see the open issues).
"""

from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp import web

from dccsim import estate, participants
from dccsim.config import TestingSettings
from dccsim.runtime import ServiceRuntime, run_service

SETTINGS: web.AppKey[TestingSettings] = web.AppKey("settings", TestingSettings)


async def list_participants(request: web.Request) -> web.Response:
    home = request.app[SETTINGS].home
    return web.json_response(
        [
            {
                "user_id": p.user_id,
                "eui": p.eui,
                "roles": sorted(r.value for r in p.roles),
                "response_url": p.response_url,
            }
            for p in participants.load(home).values()
        ]
    )


async def estate_summary(request: web.Request) -> web.Response:
    premises = estate.load(request.app[SETTINGS].home)
    by_type = Counter(d.device_type.value for p in premises for d in p.devices)
    by_region = Counter(p.region for p in premises)
    return web.json_response(
        {
            "premises": len(premises),
            "devices": sum(by_type.values()),
            "by_type": dict(by_type),
            "by_region": dict(by_region),
        }
    )


def build_app(settings: TestingSettings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app.router.add_get("/api/v1/participants", list_participants)
    app.router.add_get("/api/v1/estate", estate_summary)
    return app


async def _setup(rt: ServiceRuntime) -> None:
    settings = rt.settings
    assert isinstance(settings, TestingSettings)
    runner = web.AppRunner(build_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.testing_host, settings.testing_port).start()
    rt.cleanups.append(runner.cleanup)


def run(settings: TestingSettings | None = None) -> None:
    settings = settings or TestingSettings()
    asyncio.run(
        run_service("testing", settings, settings.testing_metrics_port, _setup, use_bus=False)
    )
