"""Onboarding while the system runs: a participant onboarded through the testing service's API
gets premises that the inventory, the User Gateway and the SM WAN gateway all serve at once —
no service restarts — so its first SRV 4.1.1 to a new ESME is answered I99 and then I0 with
the meter's GBCS response, and 8.2 Read Inventory lists its devices."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim import estate
from dccsim.duis.requestid import parse_eui
from dccsim.duis.xml import parse_safely
from dccsim.gbcs.frames import GeneralCiphering, decode_message
from dccsim.gbcs.usecases import read_ecs17b_response
from dccsim.pki.files import load_private_key
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage
from dccsim.testuser import ResponseReceiver, TestUser, post
from gateway.server import control_file
from tests.broker import rabbitmqctl_available
from tests.system import System, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]

SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
DCC = "90-B3-D5-1F-30-00-00-02"
NEWCO = {
    "user_id": "newco-energy",
    "eui": "90-B3-D5-1F-30-05-00-00",
    "roles": ["IS"],
    "kind": "sec_party",
}
PREMISES = 3


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The usual installation plus the testing service (its API onboards participants)."""
    ports = {"testing": free_port(), "testing_metrics": free_port()}
    sys_ = System(
        tmp_path_factory.mktemp("dccsim-home"),
        extra_env={
            "DCCSIM_TESTING_PORT": str(ports["testing"]),
            "DCCSIM_TESTING_METRICS_PORT": str(ports["testing_metrics"]),
            "DCCSIM_GATEWAY_CONTROL_PORT": str(free_port()),
        },
    )
    try:
        sys_.start()
        sys_.ports.update(ports)
        sys_.start_service("testing")
        yield sys_
    finally:
        sys_.stop()


async def read_inventory(
    system: System, session: aiohttp.ClientSession, user: TestUser, eui: str
) -> tuple[str, set[str]]:
    """8.2 Read Inventory by device: the response code and the DeviceIDs listed."""
    body = (
        f'<sr:ReadInventory xmlns:sr="{SR_NS}"><sr:DeviceID>{eui}</sr:DeviceID></sr:ReadInventory>'
    )
    _, document = user.service_request("8.2", DCC, command_variant=8, body_xml=body.encode())
    async with session.post(
        system.url("serviceD"), data=document, headers={"Content-Type": "application/xml"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        root = parse_safely(await resp.read())
    code = root.findtext(f"{SR}Header/{SR}ResponseCode") or ""
    devices = root.findall(f"{SR}Body/{SR}ResponseMessage/{SR}DSPInventory/{SR}Device")
    return code, {d.findtext(f"{SR}DeviceID") or "" for d in devices}


async def test_an_onboarded_participant_is_served_without_a_restart(
    system: System, user: TestUser, session: aiohttp.ClientSession
) -> None:
    pids = {name: proc.pid for name, proc in system.procs.items()}
    api = f"http://127.0.0.1:{system.ports['testing']}/api/v1"
    control = json.loads(control_file(system.home).read_text())["url"]
    first = max(int(p.premises_id[1:]) for p in estate.load(system.home)) + 1
    new_esme = estate.device_eui(first, 2)

    # Before: the User Gateway answers E19 for the ESME-to-be (and caches that answer), and
    # the gateway does not host it.
    _, document = user.service_request("4.1.1", new_esme)
    assert (await post(session, system.service_s, document)).response_code == "E19"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{control}/devices/{new_esme}") as resp:
            assert resp.status == 404

        async with http.post(f"{api}/participants", json=NEWCO) as resp:
            assert resp.status == 201, await resp.text()
        onboarding = f"{api}/participants/{NEWCO['user_id']}/onboarding"
        async with http.post(onboarding, json={"premises": PREMISES}) as resp:
            assert resp.status == 201, await resp.text()
            onboarded = await resp.json()
        assert onboarded["premises_added"][0] == f"P{first:07d}"
        assert len(onboarded["premises_added"]) == PREMISES
        newco = TestUser.load(Path(onboarded["bundle"]))

        # The testing service told the gateway before it answered: hosted now.
        async with http.get(f"{control}/devices/{new_esme}") as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["premises_id"] == f"P{first:07d}"

        receiver = ResponseReceiver(newco.receiver_ssl())
        await receiver.start()
        try:
            url = f"{api}/participants/{NEWCO['user_id']}/response-url"
            async with http.put(url, json={"url": receiver.url}) as resp:
                assert resp.status == 200, await resp.text()
            await _first_requests(system, newco, receiver, onboarded["premises_added"], new_esme)
        finally:
            await receiver.stop()

    assert {name: proc.pid for name, proc in system.procs.items()} == pids
    assert all(proc.poll() is None for proc in system.procs.values())


async def _first_requests(
    system: System,
    newco: TestUser,
    receiver: ResponseReceiver,
    premises_ids: list[str],
    esme: str,
) -> None:
    mine = [p for p in estate.load(system.home) if p.premises_id in premises_ids]
    assert len(mine) == PREMISES
    connector = aiohttp.TCPConnector(ssl=newco.client_ssl())
    async with aiohttp.ClientSession(connector=connector) as mtls:
        # The inventory imports the premises on estate.changed; 8.2 lists them once it has.
        listed: set[str] = set()
        async with asyncio.timeout(180):
            while esme not in listed:
                code, listed = await read_inventory(system, mtls, newco, esme)
                assert code == "I0"
                if esme not in listed:
                    await asyncio.sleep(0.5)
        premises = next(p for p in mine if any(d.eui == esme for d in p.devices))
        assert {d.eui for d in premises.devices} <= listed

        rid, document = newco.service_request("4.1.1", esme)
        ack = await post(mtls, system.service_s, document)
        assert ack.response_code == "I99", ack
        item = await receiver.wait_for(str(rid), timeout=120)

    response = item.response
    assert response.response_code == "I0"
    assert response.service_reference_variant == "4.1.1"
    assert response.gbcs_payload is not None
    frame = decode_message(response.gbcs_payload)
    assert isinstance(frame, GeneralCiphering)
    gs = frame.general_signing
    assert gs.message_code == 0x0027 and gs.originator_counter == rid.counter
    assert gs.originator_title == parse_eui(esme)
    assert gs.recipient_title == parse_eui(newco.eui)
    newco_ka = load_private_key(newco.bundle / "ka.key")
    assert isinstance(newco_ka, ec.EllipticCurvePrivateKey)
    keystore = KeyStore(system.home / "pki" / "keystore")
    device_ka = keystore.certificate(parse_eui(esme), KeyUsage.KA).public_key()
    assert isinstance(device_ka, ec.EllipticCurvePublicKey)
    registers = read_ecs17b_response(
        response.gbcs_payload, recipient_ka_private=newco_ka, device_ka_public=device_ka
    )
    assert registers.active_import > 0
