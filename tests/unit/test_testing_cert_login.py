"""The SSI portal logs a participant in by its DCCKI client certificate over TLS; without one it
asks for a login link. A real TLS listener with an optional client certificate."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from dccsim.config import TestingSettings
from dccsim.pki.dccki import server_ssl_context
from dccsim.pki.devpki import PkiLayout
from dccsim.seed import seed_demo
from dccsim.testuser import TestUser
from services.testing.app import build_app
from tests.system import free_port


@pytest.fixture
async def portal(tmp_path: Path) -> AsyncIterator[tuple[str, TestUser]]:
    result = seed_demo(tmp_path, premises=1)
    pki = PkiLayout.of(tmp_path)
    ctx = server_ssl_context(
        pki.tls_server_cert,
        pki.tls_server_key,
        pki.tls_ca,
        require_client_cert=False,
        optional_client_cert=True,
    )
    runner = web.AppRunner(build_app(TestingSettings(home=tmp_path)))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    yield f"https://127.0.0.1:{port}", TestUser.load(result.supplier_bundle)
    await runner.cleanup()


async def test_client_certificate_logs_the_participant_in(
    portal: tuple[str, TestUser],
) -> None:
    base, user = portal
    jar = aiohttp.CookieJar(unsafe=True)  # the portal is on an IP address
    connector = aiohttp.TCPConnector(ssl=user.client_ssl())
    async with aiohttp.ClientSession(connector=connector, cookie_jar=jar) as s:
        async with s.get(f"{base}/ssi/login", allow_redirects=False) as resp:
            assert resp.status in (302, 303)
            assert resp.cookies  # a session cookie is set
        async with s.get(f"{base}/ssi/", allow_redirects=False) as resp:
            assert resp.status == 200


async def test_without_a_certificate_the_portal_asks_for_a_link(
    portal: tuple[str, TestUser],
) -> None:
    base, user = portal
    ctx = ssl.create_default_context(cafile=str(user.bundle / "dccki-ca.pem"))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.get(f"{base}/ssi/login", allow_redirects=False) as resp:
            assert resp.status == 401
