"""Anomaly detection end to end: a User over its 4.1.1 threshold has the excess answered I99,
quarantined and reported to it in a signed AD1 DCC Alert; a release through the admin API turns
the kept request into the ordinary async Response."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from dccsim.duis import xmldsig
from dccsim.duis.xml import SR_NS, parse_safely
from dccsim.pki.files import load_certificate
from dccsim.testuser import ReceivedResponse, ResponseReceiver, TestUser
from tests.broker import rabbitmqctl_available
from tests.system import System, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]

NS = {"sr": SR_NS}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    admin_port = free_port()
    sys_ = System(
        tmp_path_factory.mktemp("dccsim-home"),
        extra_env={
            "DCCSIM_ANOMALY_THRESHOLDS": json.dumps({"4.1.1": 1}),
            "DCCSIM_ANOMALY_WINDOW_S": "600",
            "DCCSIM_USER_GATEWAY_ADMIN_PORT": str(admin_port),
        },
    )
    try:
        sys_.start()
        sys_.ports["admin"] = admin_port
        yield sys_
    finally:
        sys_.stop()


def _admin(system: System, path: str) -> str:
    return f"http://127.0.0.1:{system.ports['admin']}{path}"


async def _ack(session: aiohttp.ClientSession, url: str, document: bytes) -> tuple[str, bytes]:
    async with session.post(
        url, data=document, headers={"Content-Type": "application/xml"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        raw = await resp.read()
    code = parse_safely(raw).findtext("sr:Header/sr:ResponseCode", namespaces=NS)
    assert code is not None
    return code, raw


async def _wait_for_alert(
    rx: ResponseReceiver, request_id: str, timeout: float = 30.0
) -> ReceivedResponse:
    async with asyncio.timeout(timeout):
        while True:
            for item in rx.received:
                root = item.response.root
                if item.response.body_name != "DCCAlertMessage" or root is None:
                    continue
                breach = root.find(".//sr:QuarantinedRequest/sr:ADUserThresholdBreach", NS)
                if breach is not None and breach.findtext("sr:RequestID", namespaces=NS) == (
                    request_id
                ):
                    return item
            await asyncio.sleep(0.05)


async def test_excess_is_quarantined_alerted_and_released(
    system: System, user: TestUser, receiver: ResponseReceiver
) -> None:
    device = system.esmes()[0]
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=user.client_ssl())
    ) as session:
        # Within the threshold (1 per window): the ordinary flow.
        first, first_doc = user.service_request("4.1.1", device)
        code, _ = await _ack(session, system.service_s, first_doc)
        assert code == "I99"
        assert (await receiver.wait_for(str(first), timeout=30)).response.response_code == "I0"

        # Over it: acknowledged like any accepted request, but quarantined.
        excess, excess_doc = user.service_request("4.1.1", device)
        code, _ = await _ack(session, system.service_s, excess_doc)
        assert code == "I99"

        alert = await _wait_for_alert(receiver, str(excess))
        assert alert.response.alert_code == "AD1"
        assert alert.response.response_code == "I0"
        assert str(alert.response.response_id).startswith("90-B3-D5-1F-30-00-00-02:")
        dsp = load_certificate(user.bundle / "dcc-xml-sign.pem")
        signer = xmldsig.verify(
            parse_safely(alert.raw),
            find_certificate=lambda s: dsp if s == dsp.serial_number else None,
        )
        assert signer.serial_number == dsp.serial_number
        assert alert.response.root is not None
        ref_text = alert.response.root.findtext(".//sr:QuarantineEventRef", namespaces=NS)
        assert ref_text is not None
        ref = int(ref_text)

        # Kept and visible; no Response while it is held.
        async with aiohttp.ClientSession() as admin:
            async with admin.get(_admin(system, "/quarantine?status=quarantined")) as resp:
                assert resp.status == 200
                listed: dict[str, Any] = await resp.json()
            [entry] = [e for e in listed["entries"] if e["request_id"] == str(excess)]
            assert entry["quarantine_event_ref"] == ref
            assert entry["srv"] == "4.1.1" and entry["user_id"] == user.user_id
            await asyncio.sleep(1.0)
            assert str(excess) not in receiver.by_request
            assert system.metric("user_gateway", "dccsim_anomaly_quarantined_total") >= 1

            # Released: the normal async Response follows.
            async with admin.post(_admin(system, f"/quarantine/{ref}/release")) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["status"] == "released"
            item = await receiver.wait_for(str(excess), timeout=30)
            assert item.response.response_code == "I0"
            assert item.response.service_reference_variant == "4.1.1"
            assert str(item.response.response_id) == excess.response_id()
            assert item.response.gbcs_payload is not None

            async with admin.post(_admin(system, f"/quarantine/{ref}/release")) as resp:
                assert resp.status == 409  # once only
            async with admin.get(_admin(system, f"/quarantine/{ref}")) as resp:
                assert (await resp.json())["status"] == "released"
