"""Fixtures every end-to-end test shares: a whole installation (each service its own process, a
private RabbitMQ vhost), the demo Supplier as the test User, its Receive Response Service and a
mutual-TLS session. A module needing another installation defines its own ``system``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from dccsim import participants
from dccsim.testuser import ResponseReceiver, TestUser
from tests.system import System


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    sys_ = System(tmp_path_factory.mktemp("dccsim-home"))
    try:
        sys_.start()
        yield sys_
    finally:
        sys_.stop()


@pytest.fixture
def user(system: System) -> TestUser:
    return TestUser.load(system.home / "participants" / "90B3D51F3001D000")


@pytest.fixture
async def receiver(system: System, user: TestUser) -> AsyncIterator[ResponseReceiver]:
    """The User's Receive Response Service, registered as its URL for the test's duration."""
    rx = ResponseReceiver(user.receiver_ssl())
    await rx.start()
    current = participants.load(system.home)[user.user_id]
    participants.upsert(
        system.home, participants.Participant(current.user_id, current.eui, current.roles, rx.url)
    )
    yield rx
    await rx.stop()


@pytest.fixture
async def session(user: TestUser) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=user.client_ssl())) as s:
        yield s
