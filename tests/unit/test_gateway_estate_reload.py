"""Premises added to estate.json while the gateway runs: merged into its index without moving a
device already hosted, and hosted with their own models while the old ones keep their state."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim import estate
from dccsim.duis.requestid import DCC_EUI, parse_eui
from dccsim.estate import REGIONS, device_eui, format_eui
from dccsim.gbcs.usecases import build_ecs17b_command
from dccsim.pki.devpki import init_pki, issue_devices, issue_party
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage, Role
from dccsim.seed import supplier_eui
from emulators.device import ALERT_FAILED_AUTHENTICATION_OTHER
from gateway.control import build_control_app
from gateway.hosting import DeviceModels, EstateIndex, premises_row
from gateway.network import NetworkModel, OfflineMode
from gateway.server import EstateFile, EstateFileError, GatewayServer
from services.inventory.seed import estate_premises

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
SUPPLIER = parse_eui(supplier_eui(0))


def _rows(*numbers: int) -> list[dict[str, Any]]:
    return [premises_row(estate_premises(n)) for n in numbers]


def _esme(n: int) -> bytes:
    return parse_eui(device_eui(n, 2))


# -- the index ------------------------------------------------------------------------


def test_merge_keeps_every_index_and_premises_number_and_finds_the_new_devices() -> None:
    index = EstateIndex.from_premises(estate_premises(n) for n in (3, 5))
    before = {index.record(i).eui: i for i in range(len(index))}
    premises_before = {index.premises_id(p): p for p in range(index.premises_count)}
    # premises 1 sorts before everything hosted, 4 between, 7 after
    added = index.merge(_rows(1, 3, 4, 7))
    assert [index.premises_id(p) for p in added] == ["P0000001", "P0000004", "P0000007"]
    assert len(index) == 25 and index.premises_count == 5
    for eui, i in before.items():
        assert index.find(eui) == i and index.record(i).eui == eui
    for premises_id, number in premises_before.items():
        assert index.premises_number(premises_id) == number
    for n in (1, 4, 7):
        found = index.find(_esme(n))
        assert found is not None and found >= 10  # new rows after the old ones
        record = index.record(found)
        assert record.premises_id == f"P{n:07d}" and record.device_type.value == "ESME"
        assert record.hub_eui == parse_eui(device_eui(n, 0))
        assert index.premises_number(device_eui(n, 4)) == record.premises
    assert index.find(_esme(2)) is None and index.premises_number("P0000002") is None


def test_extended_leaves_the_index_it_grows_from_alone() -> None:
    index = EstateIndex.from_premises([estate_premises(1)])
    grown = index.extended(_rows(2))
    assert grown is not None and len(grown) == 10
    assert len(index) == 5 and index.find(_esme(2)) is None
    assert index.extended(_rows(1)) is None  # nothing new


def test_merge_skips_hosted_premises_and_other_regions() -> None:
    index = EstateIndex.from_premises([estate_premises(1)], regions=["Central"])
    assert index.region_of(0) == "Central"
    # premises 1 again with another supplier: what was hosted stays
    changed = premises_row(estate_premises(1, suppliers=2))
    changed["registrations"] = {"IS": supplier_eui(1)}
    added = index.merge([changed, *_rows(2, 3, 4)], regions=["Central"])
    assert [index.region_of(p) for p in added] == ["Central"]  # premises 4 (4 % 3 == 1)
    hosted = index.record(index.find(_esme(1)) or 0).registrations
    assert hosted == estate_premises(1).registrations and hosted["IS"] == supplier_eui(0)
    assert index.find(_esme(2)) is None and index.find(_esme(4)) is not None


# -- the server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyStore]:
    home = tmp_path_factory.mktemp("reload-pki")
    init_pki(home)
    issue_party(home, eui=SUPPLIER, role=Role.SUPPLIER, user_id="supplier", out_dir=home / "sup")
    issue_devices(home, [parse_eui(device_eui(n, k)) for n in (1, 2, 3) for k in (0, 2)])
    yield KeyStore(home / "pki" / "keystore")


def _server(home: Path, keystore: KeyStore) -> GatewayServer:
    source = EstateFile(home)
    signature, rows = source.read()
    source.signature = signature
    index = EstateIndex().extended(rows) or EstateIndex()
    models = DeviceModels(index, keystore, lambda: NOW)
    network = NetworkModel.from_config(list(REGIONS), seed=1)
    return GatewayServer(index, models, network, clock=lambda: NOW, estate_file=source)


def _read(keystore: KeyStore, esme: bytes, counter: int) -> bytes:
    acb = keystore.private_key(DCC_EUI, KeyUsage.KA)
    device = keystore.certificate(esme, KeyUsage.KA).public_key()
    assert isinstance(acb, ec.EllipticCurvePrivateKey)
    assert isinstance(device, ec.EllipticCurvePublicKey)
    return build_ecs17b_command(
        originator_title=SUPPLIER,
        device_title=esme,
        counter=counter,
        acb_ka_private=acb,
        device_ka_public=device,
    )


async def _send(server: GatewayServer, eui: bytes, frame: bytes) -> dict[str, Any]:
    reply = await server.execute({"device": format_eui(eui), "frame": frame})
    assert reply is not None
    return reply


async def test_new_premises_are_hosted_and_old_devices_keep_their_state(
    tmp_path: Path, keystore: KeyStore
) -> None:
    estate.save(tmp_path, [estate_premises(2)])
    server = _server(tmp_path, keystore)
    old = server.index.find(_esme(2))
    assert old is not None
    assert (await _send(server, _esme(2), _read(keystore, _esme(2), 1000)))["t"] == "rsp"
    model = server.models.peek(old)
    server.network.device(parse_eui(device_eui(2, 0))).offline = OfflineMode.UNREACHABLE
    unknown = await _send(server, _esme(1), _read(keystore, _esme(1), 1))
    assert unknown["code"] == "E20" and "not on this network" in unknown["reason"]

    estate.save(tmp_path, [estate_premises(n) for n in (1, 2, 3)])
    refresh = await server.refresh_estate()
    assert (refresh.read, refresh.premises_added, refresh.devices_added) == (True, 2, 10)

    assert server.index.find(_esme(2)) == old and server.models.peek(old) is model
    # its anti-replay counter held: an older counter is refused
    replayed = await _send(server, _esme(2), _read(keystore, _esme(2), 999))
    assert replayed["t"] == "err" and replayed["alert"] == ALERT_FAILED_AUTHENTICATION_OTHER
    assert (await _send(server, _esme(2), _read(keystore, _esme(2), 1001)))["t"] == "rsp"
    assert server.network.devices[parse_eui(device_eui(2, 0))].offline is OfflineMode.UNREACHABLE
    for n in (1, 3):
        assert (await _send(server, _esme(n), _read(keystore, _esme(n), 7)))["t"] == "rsp"

    assert (await server.refresh_estate()).read is False  # the file has not changed since
    forced = await server.refresh_estate(force=True)
    assert forced.read and forced.premises_added == 0


async def test_an_unreadable_estate_file_leaves_the_hosted_estate(
    tmp_path: Path, keystore: KeyStore
) -> None:
    estate.save(tmp_path, [estate_premises(1)])
    server = _server(tmp_path, keystore)
    estate.estate_path(tmp_path).write_text('{"premises": [')  # half a file
    with pytest.raises(EstateFileError):
        await server.refresh_estate()
    assert (await server.refresh_estate()).read is False  # not retried until it changes
    assert len(server.index) == 5
    estate.save(tmp_path, [estate_premises(1), estate_premises(2)])
    assert (await server.refresh_estate()).premises_added == 1


async def test_the_watch_notices_a_replaced_estate_file(tmp_path: Path, keystore: KeyStore) -> None:
    estate.save(tmp_path, [estate_premises(1)])
    server = _server(tmp_path, keystore)
    stopping = asyncio.Event()
    watch = asyncio.create_task(server.watch_estate(0.05, stopping))
    try:
        estate.save(tmp_path, [estate_premises(1), estate_premises(3)])
        for _ in range(400):
            if server.index.find(_esme(3)) is not None:
                break
            await asyncio.sleep(0.05)
        assert server.index.find(_esme(3)) is not None
    finally:
        stopping.set()
        await asyncio.wait_for(watch, 10)


@pytest.fixture
async def control(tmp_path: Path, keystore: KeyStore) -> AsyncIterator[TestClient[Any, Any]]:
    estate.save(tmp_path, [estate_premises(1)])
    app: web.Application = build_control_app(_server(tmp_path, keystore))
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_the_control_api_reloads_the_estate(
    control: TestClient[Any, Any], tmp_path: Path
) -> None:
    assert (await control.get(f"/devices/{device_eui(2, 2)}")).status == 404
    estate.save(tmp_path, [estate_premises(1), estate_premises(2)])
    resp = await control.post("/estate/reload")
    assert resp.status == 200
    assert await resp.json() == {
        "premises_added": 1,
        "devices_added": 5,
        "premises": 2,
        "devices": 10,
    }
    device = await control.get(f"/devices/{device_eui(2, 2)}")
    assert device.status == 200 and (await device.json())["premises_id"] == "P0000002"
    estate.estate_path(tmp_path).write_text("not json")
    assert (await control.post("/estate/reload")).status == 409
