"""DSP schedules (5.1-5.3), 11.1 Update Firmware and 8.2 paging end to end.

A User creates a schedule over serviceD; the inventory's scheduler fires each run into the
pipeline like a User's device SR (transform -> wan -> the emulated ESME -> transform -> delivery),
and the User's Receive Response Service gets the async I0 with the GBCS payload. The scheduler's
clock runs a day in 10 s here (``DCCSIM_INVENTORY_SCHEDULE_CLOCK_SPEED``), so a Daily schedule
fires every 10 s without sleeping for days.

4.6.1 (ECS21a, Retrieve Import Daily Read Log) is the scheduled SRV: 4.1.1 is not one the DCC can
schedule (DSPScheduledServiceReferenceVariant in the XSD; "DCC Scheduled" in the SRV matrix).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import hashlib
import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lxml import etree

import tests.system
from dccsim import estate
from dccsim.bus import Bus
from dccsim.bus.topology import INVENTORY_RPC
from dccsim.config import CommonSettings
from dccsim.duis import xmldsig
from dccsim.duis.requestid import parse_eui
from dccsim.duis.xml import load_schema, parse_safely
from dccsim.gbcs.frames import GeneralCiphering, decode_message
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.metrics import ServiceMetrics
from dccsim.pki.files import load_certificate
from dccsim.seed import seed_demo
from dccsim.testuser import ReceivedResponse, ResponseReceiver, TestUser
from tests.broker import rabbitmqctl_available
from tests.system import System

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not rabbitmqctl_available(), reason="needs the local RabbitMQ"),
]

SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
DCC = "90-B3-D5-1F-30-00-00-02"
SHARED_POSTCODE = "DC1 1SM"
PREMISES = 10  # every device under one postcode: more than one 8.2 page of 17
SIM_DAY_S = 10.0  # one day of the scheduler's clock, in real seconds


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    def seed_under_one_postcode(home: Path, **kwargs: Any) -> Any:
        seeded = real_seed(home, **kwargs)
        premises = estate.load(home)
        estate.save(home, [dataclasses.replace(p, postcode=SHARED_POSTCODE) for p in premises])
        return seeded

    real_seed = seed_demo
    sys_ = System(
        tmp_path_factory.mktemp("dccsim-home"),
        premises=PREMISES,
        extra_env={
            "DCCSIM_INVENTORY_SCHEDULE_INTERVAL_S": "0.5",
            "DCCSIM_INVENTORY_SCHEDULE_CLOCK_SPEED": str(86_400 / SIM_DAY_S),
        },
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tests.system, "seed_demo", seed_under_one_postcode)
        try:
            sys_.start()
            yield sys_
        finally:
            sys_.stop()


@pytest.fixture(scope="module")
def schema(reference_dir: Path) -> etree.XMLSchema:
    return load_schema(reference_dir / "duis" / "xsd")


def check_signed_and_valid(
    root: etree._Element, user: TestUser, schema: etree.XMLSchema
) -> etree._Element:
    assert schema.validate(root), schema.error_log
    cert = load_certificate(user.bundle / "dcc-xml-sign.pem")
    xmldsig.verify(root, find_certificate=lambda s: cert if s == cert.serial_number else None)
    return root


async def service_d(
    system: System,
    session: aiohttp.ClientSession,
    user: TestUser,
    srv: str,
    body: str,
    schema: etree.XMLSchema,
) -> tuple[str, etree._Element]:
    rid, document = user.service_request(srv, DCC, command_variant=8, body_xml=body.encode())
    async with session.post(
        system.url("serviceD"), data=document, headers={"Content-Type": "application/xml"}
    ) as resp:
        assert resp.status == 200
        raw = await resp.read()
    return str(rid), check_signed_and_valid(parse_safely(raw), user, schema)


def code_of(root: etree._Element) -> str:
    return root.findtext(f"{SR}Header/{SR}ResponseCode") or ""


def message(root: etree._Element) -> etree._Element:
    found = root.find(f"{SR}Body/{SR}ResponseMessage")
    assert found is not None
    return found


def scheduled_responses(rx: ResponseReceiver, user: TestUser, device: str) -> list[Any]:
    """The async Responses of DSP-scheduled runs: RequestID User:device:counter, 4.6.1."""
    return [
        item
        for item in rx.received
        if item.response.request_id is not None
        and str(item.response.request_id).startswith(f"{user.eui}:{device}:")
        and item.response.service_reference_variant == "4.6.1"
    ]


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.2)
    assert predicate(), what


def create_schedule(device: str) -> str:
    # Runs at 00:00 UTC every (scheduler) day; started long ago, so the next midnight fires.
    return (
        f'<sr:CreateSchedule xmlns:sr="{SR_NS}">'
        "<sr:ScheduleFrequency>Daily</sr:ScheduleFrequency>"
        "<sr:ScheduleStartDate>2020-01-01</sr:ScheduleStartDate>"
        "<sr:ScheduleExecutionStartTime>00:00:00Z</sr:ScheduleExecutionStartTime>"
        "<sr:DSPScheduledServiceReference>4.6</sr:DSPScheduledServiceReference>"
        "<sr:DSPScheduledServiceReferenceVariant>4.6.1</sr:DSPScheduledServiceReferenceVariant>"
        f"<sr:DeviceID>{device}</sr:DeviceID>"
        "<sr:DSPRetrieveImportDailyReadLog><sr:StartDateOffset>-1</sr:StartDateOffset>"
        "<sr:StartTime>00:00:00.00Z</sr:StartTime><sr:EndDateOffset>0</sr:EndDateOffset>"
        "<sr:EndTime>00:00:00.00Z</sr:EndTime></sr:DSPRetrieveImportDailyReadLog>"
        "</sr:CreateSchedule>"
    )


async def test_a_schedule_fires_its_read_and_stops_when_deleted(
    system: System,
    user: TestUser,
    session: aiohttp.ClientSession,
    receiver: ResponseReceiver,
    schema: etree.XMLSchema,
) -> None:
    esme = system.esmes()[-1]
    _, created = await service_d(system, session, user, "5.1", create_schedule(esme), schema)
    assert code_of(created) == "I0", etree.tostring(created)
    schedule_id = message(created).findtext(f"{SR}DSPScheduleID")
    assert schedule_id is not None and int(schedule_id) > 0

    # The run fires within a scheduler day and comes back through the whole pipeline.
    await wait_until(
        lambda: scheduled_responses(receiver, user, esme),
        timeout=SIM_DAY_S + 90,
        what="no response to a scheduled run",
    )
    first: ReceivedResponse = scheduled_responses(receiver, user, esme)[0]
    root = check_signed_and_valid(parse_safely(first.raw), user, schema)
    assert first.response.response_code == "I0"
    assert first.response.response_id is not None
    assert str(first.response.response_id).startswith(f"{esme}:{user.eui}:")
    payload = first.response.gbcs_payload
    assert payload, etree.tostring(root)
    # DUIS's DSPScheduledMessage: the device's response with the DSPScheduleID it ran for.
    scheduled = root.find(f"{SR}Body/{SR}ResponseMessage/{SR}DSPScheduledMessage")
    assert scheduled is not None, etree.tostring(root)
    assert scheduled.findtext(f"{SR}DSPScheduleID") == schedule_id
    assert base64.b64decode(scheduled.findtext(f"{SR}GBCSPayload") or "") == payload
    # The ESME's own ECS21a response, to the User, carrying the run's DCC counter.
    frame = decode_message(payload)
    assert isinstance(frame, GeneralCiphering)
    gs = frame.general_signing
    assert gs.cra_flag == 2 and gs.message_code == USE_CASES_BY_NAME["ECS21a"].message_code
    assert gs.originator_title == parse_eui(esme)
    assert gs.recipient_title == parse_eui(user.eui)
    assert first.response.request_id is not None
    assert gs.originator_counter == first.response.request_id.counter

    # 5.2 shows it, by ID and by device.
    read = (
        f'<sr:ReadSchedule xmlns:sr="{SR_NS}"><sr:DSPScheduleID>{schedule_id}'
        "</sr:DSPScheduleID></sr:ReadSchedule>"
    )
    _, shown = await service_d(system, session, user, "5.2", read, schema)
    assert code_of(shown) == "I0"
    [entry] = message(shown).findall(f"{SR}DSPSchedulesRead/{SR}DSPSchedules")
    assert entry.findtext(f"{SR}DSPScheduleID") == schedule_id
    assert entry.findtext(f"{SR}DSPScheduleDetails/{SR}DeviceID") == esme
    assert entry.findtext(f"{SR}DSPScheduleDetails/{SR}DSPScheduledServiceReferenceVariant") == (
        "4.6.1"
    )
    by_device = (
        f'<sr:ReadSchedule xmlns:sr="{SR_NS}"><sr:DeviceID>{esme}</sr:DeviceID></sr:ReadSchedule>'
    )
    _, listed = await service_d(system, session, user, "5.2", by_device, schema)
    ids = [e.findtext(f"{SR}DSPScheduleID") for e in message(listed).iter(f"{SR}DSPSchedules")]
    assert schedule_id in ids

    # 5.3 deletes it; no further run fires (a run already in flight may still land).
    delete = (
        f'<sr:DeleteSchedule xmlns:sr="{SR_NS}"><sr:DSPScheduleID>{schedule_id}'
        "</sr:DSPScheduleID></sr:DeleteSchedule>"
    )
    _, deleted = await service_d(system, session, user, "5.3", delete, schema)
    assert code_of(deleted) == "I0"
    await asyncio.sleep(5)
    settled = len(scheduled_responses(receiver, user, esme))
    await asyncio.sleep(2.5 * SIM_DAY_S)  # two and a half scheduler days
    assert len(scheduled_responses(receiver, user, esme)) == settled
    _, gone = await service_d(system, session, user, "5.2", read, schema)
    assert code_of(gone) == "E4"
    # each run was its own request: distinct RequestIDs
    rids = [str(r.response.request_id) for r in scheduled_responses(receiver, user, esme)]
    assert len(rids) == len(set(rids))


def recorded_runs(system: System, schedule_id: str) -> list[tuple[str, str, str]]:
    """The inventory's record of a schedule's runs: (run_at, request_id, state), oldest first."""
    with sqlite3.connect(system.home / "data" / "inventory.db") as db:
        rows = db.execute(
            "SELECT run_at, request_id, state FROM dsp_schedule_runs WHERE schedule_id = ?"
            " ORDER BY run_at",
            (int(schedule_id),),
        ).fetchall()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


async def test_runs_are_neither_lost_nor_doubled_across_an_inventory_restart(
    system: System,
    user: TestUser,
    session: aiohttp.ClientSession,
    receiver: ResponseReceiver,
    schema: etree.XMLSchema,
) -> None:
    esme = system.esmes()[-2]
    _, created = await service_d(system, session, user, "5.1", create_schedule(esme), schema)
    schedule_id = message(created).findtext(f"{SR}DSPScheduleID")
    assert code_of(created) == "I0" and schedule_id is not None
    await wait_until(
        lambda: scheduled_responses(receiver, user, esme),
        timeout=SIM_DAY_S + 90,
        what="no response to a scheduled run",
    )
    system.kill("inventory")  # SIGKILL: no clean shutdown
    await asyncio.sleep(1.5 * SIM_DAY_S)  # at least one run falls due while it is down
    down_for = len(scheduled_responses(receiver, user, esme))
    await asyncio.to_thread(system.start_service, "inventory")
    await wait_until(
        lambda: len(scheduled_responses(receiver, user, esme)) >= down_for + 2,
        timeout=2 * SIM_DAY_S + 90,
        what="the runs missed while the inventory was down were not sent",
    )
    delete = (
        f'<sr:DeleteSchedule xmlns:sr="{SR_NS}"><sr:DSPScheduleID>{schedule_id}'
        "</sr:DSPScheduleID></sr:DeleteSchedule>"
    )
    runs = recorded_runs(system, schedule_id)  # read before 5.3 removes them
    _, deleted = await service_d(system, session, user, "5.3", delete, schema)
    assert code_of(deleted) == "I0"
    # Not lost: one run per (scheduler) day, no gaps, across the restart ...
    days = [dt.datetime.fromisoformat(at[:19]) for at, _, _ in runs]
    assert len(days) >= 3
    assert all(b - a == dt.timedelta(days=1) for a, b in itertools.pairwise(days))
    # ... not doubled: each run its own RequestID, each delivered to the User exactly once.
    sent = {rid for _, rid, state in runs if state == "published"}
    assert len(sent) == len(runs)
    await wait_until(
        lambda: sent <= {str(r.response.request_id) for r in receiver.received},
        timeout=60,
        what="a recorded run never reached the User",
    )
    await asyncio.sleep(2)
    for rid in sent:
        assert len(receiver.by_request[rid]) == 1, rid


async def test_create_schedule_for_an_srv_the_dcc_cannot_schedule_is_refused(
    system: System, user: TestUser, session: aiohttp.ClientSession, schema: etree.XMLSchema
) -> None:
    # 4.12.1 is schedulable per the XSD but needs the ESME's registered supplier; another
    # User's device is E4. A device not in the inventory is E19.
    body = create_schedule("00-DC-C5-FF-FF-FF-FF-02")
    _, refused = await service_d(system, session, user, "5.1", body, schema)
    assert code_of(refused) == "E19"


async def test_update_firmware_is_answered_by_the_inventory(
    system: System, user: TestUser, session: aiohttp.ClientSession, schema: etree.XMLSchema
) -> None:
    esme = system.esmes()[0]
    # The device's manufacturer and model, as 8.4 sets them.
    details = (
        f'<sr:UpdateInventory xmlns:sr="{SR_NS}"><sr:DeviceID>{esme}</sr:DeviceID>'
        "<sr:UpdateDeviceDetails><sr:DeviceManufacturer>DCC5</sr:DeviceManufacturer>"
        "<sr:DeviceModel>0E010001</sr:DeviceModel></sr:UpdateDeviceDetails></sr:UpdateInventory>"
    )
    _, updated = await service_d(system, session, user, "8.4", details, schema)
    assert code_of(updated) == "I0"
    image = b"dccsim e2e firmware image " + esme.encode()
    bus = Bus(
        CommonSettings(amqp_url=system.env["DCCSIM_AMQP_URL"]), ServiceMetrics("test"), name="t"
    )
    await bus.connect()
    try:
        added = await bus.call(
            INVENTORY_RPC,
            "firmware.add",
            "",
            {"manufacturer": "DCC5", "model": "0E010001", "version": "00000101", "image": image},
        )
    finally:
        await bus.close()
    assert added["code"] == "I0"
    unknown = "00-DC-C5-FF-FF-FF-FF-02"
    body = (
        f'<sr:UpdateFirmware xmlns:sr="{SR_NS}">'
        f"<sr:FirmwareImage>{base64.b64encode(image).decode()}</sr:FirmwareImage>"
        "<sr:FirmwareVersion>00000101</sr:FirmwareVersion>"
        f"<sr:DeviceIDList>{esme},{unknown}</sr:DeviceIDList></sr:UpdateFirmware>"
    )
    _, answered = await service_d(system, session, user, "11.1", body, schema)
    assert code_of(answered) == "I0"
    warning = message(answered).find(f"{SR}DSPUpdateFirmwareWarning")
    assert warning is not None
    assert warning.findtext(f"{SR}InvalidDeviceIDList") == unknown
    # An image the DCC does not hold is refused by the inventory, through the gateway.
    other = base64.b64encode(hashlib.sha256(image).digest()).decode()
    _, refused = await service_d(
        system, session, user, "11.1", body.replace(base64.b64encode(image).decode(), other), schema
    )
    assert code_of(refused) == "E13"


async def test_read_inventory_past_17_devices_is_i99_then_one_response_per_page(
    system: System,
    user: TestUser,
    session: aiohttp.ClientSession,
    receiver: ResponseReceiver,
    schema: etree.XMLSchema,
) -> None:
    body = (
        f'<sr:ReadInventory xmlns:sr="{SR_NS}"><sr:PropertyFilter><sr:PostCode>{SHARED_POSTCODE}'
        "</sr:PostCode></sr:PropertyFilter></sr:ReadInventory>"
    )
    expected = {d.eui for p in estate.load(system.home) for d in p.devices}
    full, rest = divmod(len(expected), 17)
    sizes = [17] * full + ([rest] if rest else [])
    assert len(sizes) > 1, "the estate must need more than one page"
    rid, acknowledged = await service_d(system, session, user, "8.2", body, schema)
    assert code_of(acknowledged) == "I99"
    await wait_until(
        lambda: len(receiver.by_request.get(rid, [])) >= len(sizes), timeout=60, what="8.2 pages"
    )
    await asyncio.sleep(1)
    # Delivery is at least once: a page whose POST outlived the delivery timeout on a loaded
    # machine comes again, byte for byte. Each page once, each of them whole.
    pages = list({p.raw: p for p in receiver.by_request[rid]}.values())
    assert len(pages) == len(sizes)
    seen: list[str] = []
    for page in pages:
        root = check_signed_and_valid(parse_safely(page.raw), user, schema)
        assert code_of(root) == "I0"
        assert message(root).findtext(f"{SR}ServiceReferenceVariant") == "8.2"
        seen += [
            d.findtext(f"{SR}DeviceID") or ""
            for d in message(root).findall(f"{SR}DSPInventory/{SR}Device")
        ]
    found = sorted(len(message(parse_safely(p.raw)).findall(f".//{SR}Device")) for p in pages)
    assert found == sorted(sizes)
    assert sorted(seen) == sorted(expected)
