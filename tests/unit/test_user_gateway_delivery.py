"""Delivery to a User with several Receive Response Service URLs: the first that accepts takes
the Response, in the order registered; the outbox holds and retries it when none does."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from dccsim import participants
from dccsim.bus import Envelope
from dccsim.config import UserGatewaySettings
from dccsim.duis.catalogue import UserRole
from dccsim.metrics import ServiceMetrics
from dccsim.participants import Participant, ParticipantRegister
from dccsim.storage import Database
from services.user_gateway.delivery import Outbox

USER_ID = "supplier"
USER_EUI = "90-B3-D5-1F-30-01-D0-00"
ROLES = frozenset({UserRole.IMPORT_SUPPLIER})
RID = f"{USER_EUI}:00-DC-C5-00-00-00-01-02:"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Receiver:
    """A Receive Response Service on a fixed port that can go down and come back."""

    def __init__(self, status: int = 200) -> None:
        self.port = _free_port()
        self.status = status
        self.bodies: list[bytes] = []
        self.posts = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/receive"

    async def _receive(self, request: web.Request) -> web.Response:
        self.posts += 1
        body = await request.read()
        if 200 <= self.status < 300:
            self.bodies.append(body)
        return web.Response(status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/receive", self._receive)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    made: list[Receiver] = []

    async def make(*, up: bool = True, status: int = 200) -> Receiver:
        receiver = Receiver(status)
        made.append(receiver)
        if up:
            await receiver.start()
        return receiver

    yield make
    for receiver in made:
        await receiver.stop()


def _register(home: Path, *urls: str) -> None:
    participants.upsert(home, Participant.with_urls(USER_ID, USER_EUI, ROLES, list(urls)))


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def outbox(tmp_path: Path, registry: CollectorRegistry) -> AsyncIterator[Outbox]:
    settings = UserGatewaySettings(
        home=tmp_path,
        delivery_retry_initial_s=0.05,
        delivery_retry_max_s=0.1,
        delivery_timeout_s=5.0,
    )
    box = Outbox(
        Database(f"sqlite:///{tmp_path / 'outbox.db'}"),
        settings,
        ParticipantRegister(tmp_path),
        None,  # plain HTTP receivers: TLS is not what these tests are about
        ServiceMetrics("user_gateway", registry),
    )
    await box.create_schema()
    yield box


def _response(counter: int) -> Envelope:
    rid = f"{RID}{counter}"
    body = {
        "delivery_key": f"response:{rid}",
        "user_id": USER_ID,
        "xml": f"<response counter='{counter}'/>".encode(),
    }
    return Envelope("duis.response", rid, body)


def _sample(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    return float(registry.get_sample_value(name, labels or {}) or 0.0)


async def _until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait for ``condition`` (a bound on a test that would otherwise hang, not a timing check)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _worker(box: Outbox) -> AsyncIterator[None]:
    task = asyncio.create_task(box.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_response_goes_to_the_second_url_when_the_first_is_down(
    tmp_path: Path,
    outbox: Outbox,
    registry: CollectorRegistry,
    receivers: Callable[..., Awaitable[Receiver]],
) -> None:
    down, up = await receivers(up=False), await receivers()
    _register(tmp_path, down.url, up.url)
    await outbox.enqueue(_response(1))
    assert up.bodies == [b"<response counter='1'/>"]
    assert await outbox.pending_count() == 0
    assert _sample(registry, "dccsim_delivery_failovers_total") == 1
    assert _sample(registry, "dccsim_delivery_delivered_total") == 1


async def test_the_first_url_takes_the_response_while_it_is_up(
    tmp_path: Path,
    outbox: Outbox,
    registry: CollectorRegistry,
    receivers: Callable[..., Awaitable[Receiver]],
) -> None:
    first, second = await receivers(), await receivers()
    _register(tmp_path, first.url, second.url)
    await outbox.enqueue(_response(1))
    assert first.bodies == [b"<response counter='1'/>"]
    assert second.posts == 0
    assert _sample(registry, "dccsim_delivery_failovers_total") == 0


async def test_a_first_url_answering_an_http_error_fails_over(
    tmp_path: Path, outbox: Outbox, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    refusing, up = await receivers(status=503), await receivers()
    _register(tmp_path, refusing.url, up.url)
    await outbox.enqueue(_response(1))
    assert refusing.posts == 1
    assert up.bodies == [b"<response counter='1'/>"]


async def test_a_users_responses_keep_their_order_through_failover(
    tmp_path: Path, outbox: Outbox, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    down, up = await receivers(up=False), await receivers()
    _register(tmp_path, down.url, up.url)
    for counter in range(1, 6):
        await outbox.enqueue(_response(counter))
    assert up.bodies == [f"<response counter='{c}'/>".encode() for c in range(1, 6)]


async def test_the_primary_is_used_again_once_it_is_back(
    tmp_path: Path, outbox: Outbox, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    primary, standby = await receivers(up=False), await receivers()
    _register(tmp_path, primary.url, standby.url)
    await outbox.enqueue(_response(1))
    await primary.start()
    await outbox.enqueue(_response(2))
    assert standby.bodies == [b"<response counter='1'/>"]
    assert primary.bodies == [b"<response counter='2'/>"]


async def test_when_every_url_is_down_the_outbox_holds_it_until_one_comes_back(
    tmp_path: Path,
    outbox: Outbox,
    registry: CollectorRegistry,
    receivers: Callable[..., Awaitable[Receiver]],
) -> None:
    first, second = await receivers(up=False), await receivers(up=False)
    _register(tmp_path, first.url, second.url)
    await outbox.enqueue(_response(1))
    assert await outbox.pending_count() == 1
    held = next(iter(outbox._fresh.values()))
    assert held.last_error is not None
    assert first.url in held.last_error and second.url in held.last_error
    async with _worker(outbox):
        await _until(
            lambda: _sample(registry, "dccsim_delivery_attempts_total", {"outcome": "failed"}) >= 3,
            "retries",
        )
        await second.start()  # the standby comes back first
        await _until(lambda: bool(second.bodies), "delivery to the standby")
        async with asyncio.timeout(10):  # marked delivered once the POST's answer is back
            while await outbox.pending_count():
                await asyncio.sleep(0.02)
    assert second.bodies == [b"<response counter='1'/>"]
    assert first.posts == 0
    assert _sample(registry, "dccsim_delivery_failovers_total") == 1


async def test_a_retry_uses_the_urls_registered_at_the_time(
    tmp_path: Path, outbox: Outbox, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    gone, added = await receivers(up=False), await receivers()
    _register(tmp_path, gone.url)
    await outbox.enqueue(_response(1))
    assert await outbox.pending_count() == 1
    participants.set_response_urls(tmp_path, USER_ID, [gone.url, added.url])
    async with _worker(outbox):
        await _until(lambda: bool(added.bodies), "delivery to the URL registered later")
    assert added.bodies == [b"<response counter='1'/>"]
    assert await outbox.pending_count() == 0


async def test_a_single_url_failure_reads_as_before(
    tmp_path: Path, outbox: Outbox, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    down = await receivers(up=False)
    _register(tmp_path, down.url)
    await outbox.enqueue(_response(1))
    held = next(iter(outbox._fresh.values()))
    assert held.last_error is not None and not held.last_error.startswith(down.url)


async def test_a_user_without_urls_is_held_not_dropped(tmp_path: Path, outbox: Outbox) -> None:
    _register(tmp_path)
    await outbox.enqueue(_response(1))
    assert await outbox.pending_count() == 1
    held = next(iter(outbox._fresh.values()))
    assert held.last_error == f"User {USER_ID} has no Receive Response Service URL registered"
