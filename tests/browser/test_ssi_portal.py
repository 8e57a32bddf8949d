"""The SSI portal in a real browser: Debian's Chromium driven by Playwright.

Logs in by a one-time link, visits every page through the navigation, generates and checks a
GFI message with the forms, and keeps a screenshot of each page under the test's tmp_path
(``screenshots/``). Skips, saying why, when /usr/bin/chromium or the playwright package is
missing (``apt-get install -y chromium``; ``pip install playwright``; Playwright's own browser
download is not used).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from dccsim.config import TestingSettings
from dccsim.seed import DEMO_SUPPLIER_ID, seed_demo
from services.testing.app import STATE, build_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.is_file() and shutil.which("chromium") is None,
        reason="browser test needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="browser test needs the playwright Python package (pip install playwright)",
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def portal(tmp_path: Path) -> AsyncIterator[tuple[str, web.Application]]:
    home = tmp_path / "home"
    seed_demo(home, premises=2)
    port = _free_port()
    app = build_app(TestingSettings(home=home, testing_port=port))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()


async def test_participant_logs_in_by_link_and_visits_every_page(
    portal: tuple[str, web.Application], tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    from services.testing.phases import Phase

    base, app = portal
    state = app[STATE]
    await state.phases.notify(Phase.GFI, dt.date(2026, 2, 1))
    direction = await state.phases.direct(Phase.GFI, reason="industry readiness")
    await state.phases.renotify(
        Phase.GFI, direction_id=direction.id, commencement=dt.date(2026, 3, 2)
    )
    token = await state.logins.create_link(DEMO_SUPPLIER_ID)
    shots = tmp_path / "screenshots"
    shots.mkdir()

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})

            await page.goto(f"{base}/ssi/devices")  # not logged in: sent to the login page
            assert page.url.endswith("/ssi/login")
            await page.screenshot(path=shots / "00-login.png", full_page=True)

            await page.goto(f"{base}/ssi/login?token={token}")
            assert page.url.endswith("/ssi/")
            assert await page.locator("h2").first.inner_text() == "Overview"
            await page.screenshot(path=shots / "01-overview.png", full_page=True)

            for n, (label, heading) in enumerate(
                [
                    ("Devices", "Your devices"),
                    ("Test phases", "Test phases"),
                    ("Testing rules", "Informal testing rules"),
                    ("Certificates", "Your test certificates"),
                    ("GFI", "GBCS Interface Testing for Industry"),
                ],
                start=2,
            ):
                await page.click(f"nav >> text={label}")
                assert heading in await page.locator("h2").first.inner_text()
                await page.screenshot(
                    path=shots / f"{n:02d}-{label.lower().replace(' ', '-')}.png", full_page=True
                )

            await page.click("nav >> text=Test phases")
            assert "2026-03-02" in await page.content()

            await page.click("nav >> text=GFI")
            await page.fill("input[name=active_import]", "31415")
            await page.click("button:has-text('Generate')")
            assert "Conformant" in await page.locator("#verdict").inner_text()
            await page.screenshot(path=shots / "07-gfi-generated.png", full_page=True)
            message = await page.locator("#message-hex").inner_text()

            await page.click("text=Back to GFI")
            await page.fill("textarea[name=message]", message)
            await page.fill("input[name=use_case]", "ECS17b")
            await page.click("button:has-text('Check')")
            assert "Check report" in await page.locator("h2").first.inner_text()
            assert "31415" in await page.content()
            await page.screenshot(path=shots / "08-gfi-check.png", full_page=True)

            await page.click("button:has-text('Log out')")
            assert page.url.endswith("/ssi/login")
        finally:
            await browser.close()

    taken = sorted(p.name for p in shots.glob("*.png"))
    assert len(taken) == 9, taken
    assert all((shots / name).stat().st_size > 1000 for name in taken)


async def test_participant_sees_a_request_timeline_and_controls_its_device(
    portal: tuple[str, web.Application], tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    from dccsim import estate
    from dccsim.seed import DEMO_SUPPLIER_EUI
    from services.testing.timeline import timeline_envelope

    base, app = portal
    state = app[STATE]
    esme = next(
        d.eui
        for p in estate.load(state.settings.home)
        for d in p.devices
        if d.device_type.value == "ESME"
    )
    request_id = f"{DEMO_SUPPLIER_EUI}:{esme}:1000"
    t0 = dt.datetime(2026, 1, 7, 10, 0, tzinfo=dt.UTC)
    for stage, ms, code in [
        ("received", 0, None),
        ("acknowledged", 11, "I99"),
        ("command_sent", 25, None),
        ("device_answered", 410, "I0"),
        ("response_delivered", 460, "I0"),
    ]:
        await state.timelines.record(
            timeline_envelope(
                request_id, stage, at=t0 + dt.timedelta(milliseconds=ms), code=code, srv="4.1.1"
            )
        )
    # the SM WAN gateway's real control API, in-process, found through gateway-control.json
    from aiohttp.test_utils import TestServer

    from dccsim.config import GatewaySettings
    from gateway.control import build_control_app
    from gateway.server import build_server

    control = TestServer(build_control_app(build_server(GatewaySettings(home=state.settings.home))))
    await control.start_server()
    (state.settings.home / "gateway-control.json").write_text(
        json.dumps({"url": str(control.make_url("")).rstrip("/")})
    )
    token = await state.logins.create_link(DEMO_SUPPLIER_ID)
    shots = tmp_path / "screenshots"
    shots.mkdir()

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{base}/ssi/login?token={token}")
            await page.click("nav >> text=Service Requests")
            assert "Your Service Requests" in await page.locator("h2").first.inner_text()
            await page.screenshot(path=shots / "10-requests.png", full_page=True)
            await page.click(f"text={request_id}")
            rows = await page.locator("#timeline tr").all_inner_texts()
            assert len(rows) == 6 and "I99" in rows[2] and "460 ms" in rows[5]
            await page.screenshot(path=shots / "11-request-timeline.png", full_page=True)

            await page.click("nav >> text=Devices")
            await page.click(f"a[href='/ssi/devices/{esme}']")
            assert esme in await page.locator("h2").first.inner_text()
            await page.screenshot(path=shots / "12-device-controls.png", full_page=True)
            await page.select_option("select[name=error]", "E21")
            await page.fill("input[name=times]", "0")
            await page.click("button:has-text('Set conditions')")
            assert "Device conditions set." in await page.locator("#result").inner_text()
            assert "E21" in await page.locator("#forced-error").inner_text()
            await page.click("button:has-text('Start power outage')")
            assert "yes" in await page.locator("#outage").inner_text()
            await page.screenshot(path=shots / "13-device-controlled.png", full_page=True)
        finally:
            await browser.close()
            await control.close()
