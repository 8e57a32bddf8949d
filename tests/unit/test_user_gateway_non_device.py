"""The User Gateway's non-device SRVs (CV 8): how 5.1-5.3, 11.1 and 8.2 bodies become inventory
calls and the inventory's replies become Response content — checked against the DUIS 5.4 XSD
and the reference request templates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from dccsim.duis.codes import DuisError
from dccsim.duis.xml import build_response, dsp_scheduled_message, load_schema
from services.user_gateway.non_device import (
    MAX_INVENTORY_PAGES,
    NON_DEVICE_SERVICES,
    answer_for,
    fetch,
)

SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
RID = "90-B3-D5-1F-30-01-00-00:90-B3-D5-1F-30-00-00-02:1000"
ESME = "00-DB-12-34-56-78-90-A0"


@pytest.fixture(scope="module")
def schema(reference_dir: Path) -> etree.XMLSchema:
    return load_schema(reference_dir / "duis" / "xsd")


def template_body(reference_dir: Path, name: str, element: str) -> etree._Element:
    found = etree.parse(str(reference_dir / "duis" / "templates" / name)).find(
        f"{SR}Body/{SR}{element}"
    )
    assert found is not None
    return found


def response(variant: str, code: str, content: etree._Element | None) -> etree._Element:
    return build_response(
        request_id=RID,
        response_id=None,
        response_code=code,
        response_datetime=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
        service_reference=variant.rsplit(".", 1)[0] if variant.count(".") == 2 else variant,
        service_reference_variant=variant,
        content=content,
    )


def valid(schema: etree.XMLSchema, root: etree._Element) -> bool:
    ok = schema.validate(root)
    assert ok, schema.error_log
    return ok


def device(n: int) -> dict[str, Any]:
    return {
        "device_id": f"00-DC-C5-00-00-00-{n // 256:02X}-{n % 256:02X}",
        "device_type": "ESME",
        "device_status": "Commissioned",
        "device_manufacturer": None,
        "device_model": "0E010001",
    }


# --- 5.1 Create Schedule ------------------------------------------------------------------------


def test_reference_create_schedule_becomes_schedule_create(reference_dir: Path) -> None:
    body = template_body(
        reference_dir, "ECS21a_5.1._DCC_SCHEDULED_REQUEST_DUIS.XML", "CreateSchedule"
    )
    service = NON_DEVICE_SERVICES["5.1"]
    assert service.method == "schedule.create"
    assert service.request(body) == {
        "frequency": "Daily",
        "start_date": "2015-01-02",
        "service_reference": "4.6",
        "variant": "4.6.1",
        "device_id": ESME,
        "request": {
            "DSPRetrieveImportDailyReadLog": {
                "StartDateOffset": "-1",
                "StartTime": "00:00:00.00Z",
                "EndDateOffset": "0",
                "EndTime": "00:00:00.00Z",
            }
        },
    }


def test_create_schedule_without_a_scheduled_body_is_malformed() -> None:
    body = etree.fromstring(
        f'<sr:CreateSchedule xmlns:sr="{SR_NS}"><sr:ScheduleFrequency>Daily</sr:ScheduleFrequency>'
        "<sr:ScheduleStartDate>2027-01-01</sr:ScheduleStartDate>"
        "<sr:DSPScheduledServiceReference>4.6</sr:DSPScheduledServiceReference>"
        "<sr:DSPScheduledServiceReferenceVariant>4.6.1</sr:DSPScheduledServiceReferenceVariant>"
        f"<sr:DeviceID>{ESME}</sr:DeviceID></sr:CreateSchedule>"
    )
    with pytest.raises(DuisError) as refused:
        NON_DEVICE_SERVICES["5.1"].request(body)
    assert refused.value.code == "E13"


def test_create_schedule_is_answered_with_its_dsp_schedule_id(schema: etree.XMLSchema) -> None:
    service = NON_DEVICE_SERVICES["5.1"]
    answer = answer_for(service, [{"code": "I0", "schedule_id": 42}], etree.Element("x"))
    assert answer.code == "I0" and answer.later == ()
    root = response("5.1", answer.code, answer.content)
    assert valid(schema, root)
    assert root.findtext(f"{SR}Body/{SR}ResponseMessage/{SR}DSPScheduleID") == "42"


def test_a_refused_create_schedule_carries_the_inventory_code() -> None:
    with pytest.raises(DuisError) as refused:
        answer_for(
            NON_DEVICE_SERVICES["5.1"], [{"code": "E4", "reason": "not yours"}], etree.Element("x")
        )
    assert refused.value.code == "E4"


# --- 5.2 Read Schedule, 5.3 Delete Schedule -------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "name", "element", "method"),
    [
        ("5.2", "5.2_READ_SCHEDULE_REQUEST_DUIS.XML", "ReadSchedule", "schedule.read"),
        ("5.3", "5.3_DELETE_SCHEDULE_REQUEST_DUIS.XML", "DeleteSchedule", "schedule.delete"),
    ],
)
def test_reference_read_and_delete_name_the_schedule(
    reference_dir: Path, variant: str, name: str, element: str, method: str
) -> None:
    service = NON_DEVICE_SERVICES[variant]
    assert service.method == method
    assert service.request(template_body(reference_dir, name, element)) == {"schedule_id": 123}
    by_device = etree.fromstring(
        f'<sr:{element} xmlns:sr="{SR_NS}"><sr:DeviceID>{ESME}</sr:DeviceID></sr:{element}>'
    )
    assert service.request(by_device) == {"device_id": ESME}


def test_read_schedule_answer_lists_each_schedule_valid_against_the_xsd(
    schema: etree.XMLSchema,
) -> None:
    schedule = {
        "schedule_id": 9,
        "frequency": "Weekly",
        "start_date": "2027-01-02",
        "end_date": "2027-12-31",
        "execution_time": "06:30:00+00:00",
        "service_reference": "4.6",
        "service_reference_variant": "4.6.1",
        "device_id": ESME,
        "request": {
            "DSPRetrieveImportDailyReadLog": {
                "StartDateOffset": "-1",
                "StartTime": "00:00:00Z",
                "EndDateOffset": "0",
                "EndTime": "00:00:00Z",
            }
        },
    }
    reply = {"code": "I0", "schedules": [schedule, schedule | {"schedule_id": 10}]}
    answer = answer_for(NON_DEVICE_SERVICES["5.2"], [reply], etree.Element("x"))
    root = response("5.2", answer.code, answer.content)
    assert valid(schema, root)
    entries = root.findall(f"{SR}Body/{SR}ResponseMessage/{SR}DSPSchedulesRead/{SR}DSPSchedules")
    assert [e.findtext(f"{SR}DSPScheduleID") for e in entries] == ["9", "10"]
    details = entries[0].find(f"{SR}DSPScheduleDetails")
    assert details is not None
    assert details.findtext(f"{SR}ScheduleFrequency") == "Weekly"
    assert details.findtext(f"{SR}DSPRetrieveImportDailyReadLog/{SR}StartDateOffset") == "-1"


def test_read_schedule_with_none_found_is_i0_without_content(schema: etree.XMLSchema) -> None:
    answer = answer_for(
        NON_DEVICE_SERVICES["5.2"], [{"code": "I0", "schedules": []}], etree.Element("x")
    )
    assert (answer.code, answer.content) == ("I0", None)
    assert valid(schema, response("5.2", "I0", None))


# --- 11.1 Update Firmware ------------------------------------------------------------------


def test_reference_update_firmware_becomes_firmware_distribute(reference_dir: Path) -> None:
    body = template_body(reference_dir, "11.1_UPDATE_FIRMWARE_REQUEST_DUIS.XML", "UpdateFirmware")
    request = NON_DEVICE_SERVICES["11.1"].request(body)
    assert NON_DEVICE_SERVICES["11.1"].method == "firmware.distribute"
    assert request["version"] == "00000000" and request["device_ids"] == ESME
    assert request["image_b64"].startswith("HvHuCwAB") and " " not in request["image_b64"]


def test_update_firmware_warnings_become_dsp_update_firmware_warning(
    schema: etree.XMLSchema,
) -> None:
    reply = {
        "code": "I0",
        "warnings": {
            "invalid_device_ids": ["00-DC-C5-FF-FF-FF-FF-01", "00-DC-C5-FF-FF-FF-FF-02"],
            "not_commissioned_device_ids": [],
            "not_applicable_firmware_device_ids": [ESME],
        },
    }
    answer = answer_for(NON_DEVICE_SERVICES["11.1"], [reply], etree.Element("x"))
    root = response("11.1", answer.code, answer.content)
    assert valid(schema, root)
    warning = f"{SR}Body/{SR}ResponseMessage/{SR}DSPUpdateFirmwareWarning/"
    assert (
        root.findtext(f"{warning}{SR}InvalidDeviceIDList")
        == "00-DC-C5-FF-FF-FF-FF-01,00-DC-C5-FF-FF-FF-FF-02"
    )
    assert root.findtext(f"{warning}{SR}NotApplicableFirmwareDeviceIDList") == ESME
    assert root.find(f"{warning}{SR}NotCommissionedDeviceIDList") is None
    clean = answer_for(
        NON_DEVICE_SERVICES["11.1"], [{"code": "I0", "warnings": {}}], etree.Element("x")
    )
    assert clean.content is None


# --- 8.2 Read Inventory paging -------------------------------------------------------------


async def test_fetch_follows_next_page_until_the_inventory_has_no_more() -> None:
    asked: list[dict[str, Any]] = []
    pages = [[device(n)] for n in range(5)]

    async def call(body: dict[str, Any]) -> dict[str, Any]:
        asked.append(body)
        first = int(body.get("first_page", 0))
        served = pages[first : first + 2]
        more = first + len(served) < len(pages)
        return {"code": "I0", "pages": served, "next_page": first + 2 if more else None}

    replies = await fetch(NON_DEVICE_SERVICES["8.2"], call, {"device_id": ESME})
    assert [r["pages"] for r in replies] == [pages[0:2], pages[2:4], pages[4:5]]
    assert [b.get("first_page") for b in asked] == [None, 2, 4]


async def test_fetch_stops_at_the_page_cap() -> None:
    async def call(body: dict[str, Any]) -> dict[str, Any]:
        first = int(body.get("first_page", 0))
        return {"code": "I0", "pages": [[device(first)]], "next_page": first + 1}

    replies = await fetch(NON_DEVICE_SERVICES["8.2"], call, {"device_id": ESME})
    assert sum(len(r["pages"]) for r in replies) == MAX_INVENTORY_PAGES


async def test_fetch_asks_once_for_a_service_that_is_not_paged() -> None:
    calls = 0

    async def call(body: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"code": "I0", "next_page": 1}

    await fetch(NON_DEVICE_SERVICES["8.3"], call, {"device_id": ESME})
    assert calls == 1


def test_one_page_is_the_synchronous_i0(schema: etree.XMLSchema) -> None:
    reply = {"code": "I0", "pages": [[device(n) for n in range(17)]], "next_page": None}
    answer = answer_for(NON_DEVICE_SERVICES["8.2"], [reply], etree.Element("x"))
    assert answer.code == "I0" and answer.later == ()
    root = response("8.2", "I0", answer.content)
    assert valid(schema, root)
    assert len(root.findall(f"{SR}Body/{SR}ResponseMessage/{SR}DSPInventory/{SR}Device")) == 17


def test_more_than_one_page_is_i99_then_one_async_response_per_page(
    schema: etree.XMLSchema,
) -> None:
    devices = [device(n) for n in range(40)]
    replies: list[dict[str, Any]] = [
        {"code": "I0", "pages": [devices[0:17], devices[17:34]], "next_page": 2},
        {"code": "I0", "pages": [devices[34:40]], "next_page": None},
    ]
    answer = answer_for(NON_DEVICE_SERVICES["8.2"], replies, etree.Element("x"))
    assert (answer.code, answer.content) == ("I99", None)
    assert valid(schema, response("8.2", "I99", None))
    seen = []
    for content in answer.later:
        root = response("8.2", "I0", content)
        assert valid(schema, root)
        seen += [
            d.findtext(f"{SR}DeviceID")
            for d in root.findall(f"{SR}Body/{SR}ResponseMessage/{SR}DSPInventory/{SR}Device")
        ]
    assert [len(c) for c in answer.later] == [17, 17, 6]
    assert seen == [d["device_id"] for d in devices]


# --- the Response to a scheduled run --------------------------------------------------------


def test_dsp_scheduled_message_is_valid_response_content(schema: etree.XMLSchema) -> None:
    root = response("4.6.1", "I0", dsp_scheduled_message(b"\xdd\x00\x01", 42))
    assert valid(schema, root)
    content = root.find(f"{SR}Body/{SR}ResponseMessage/{SR}DSPScheduledMessage")
    assert content is not None
    assert content.findtext(f"{SR}GBCSPayload") == "3QAB"
    assert content.findtext(f"{SR}DSPScheduleID") == "42"
    with pytest.raises(ValueError):
        dsp_scheduled_message(b"\x00", -1)
