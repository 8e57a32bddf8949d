"""DSP schedules (5.1-5.3): when scheduled SRs fire (month ends, DST changes in UK local time),
and the schedule methods with their owner check — on SQLite and PostgreSQL (the ``inventory``
fixture of the inventory suite)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from lxml import etree

from dccsim.seed import supplier_eui
from services.inventory.schedules import (
    DspSchedule,
    DspSchedules,
    ScheduleFrequency,
    ScheduleRequests,
    due_runs,
    run_scheduler,
)
from services.inventory.seed import seed_estate
from services.inventory.store import SmartMeteringInventory
from tests.unit.test_inventory_store import eui, inventory, pg_database  # noqa: F401

S1, S2 = supplier_eui(0), supplier_eui(1)
SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def schedule(
    frequency: ScheduleFrequency = ScheduleFrequency.DAILY,
    start: str = "2027-01-01",
    *,
    end: str | None = None,
    at: time | None = None,
    schedule_id: int = 1,
) -> DspSchedule:
    return DspSchedule(
        schedule_id=schedule_id,
        user_eui=S1,
        device_id=eui(1, 2),
        variant="4.6.1",
        frequency=frequency,
        start_date=date.fromisoformat(start),
        end_date=date.fromisoformat(end) if end else None,
        execution_time=at,
    )


def times(runs: list[tuple[int, datetime]]) -> list[str]:
    return [at.strftime("%Y-%m-%dT%H:%M") for _, at in runs]


# --- due_runs, pure ----------------------------------------------------------------------------


def test_daily_run_is_uk_midnight_in_winter_and_summer() -> None:
    daily = schedule(start="2027-01-01")
    winter = due_runs([daily], utc("2027-01-10T00:00"), utc("2027-01-12T00:00"))
    summer = due_runs([daily], utc("2027-07-09T12:00"), utc("2027-07-11T12:00"))
    assert times(winter) == ["2027-01-10T00:00", "2027-01-11T00:00"]
    assert times(summer) == ["2027-07-09T23:00", "2027-07-10T23:00"]


def test_spring_forward_gap_time_runs_once_an_hour_later_by_the_wall_clock() -> None:
    # 28 March 2027: 01:00 GMT becomes 02:00 BST, so 01:30 local does not exist that day.
    daily = schedule(start="2027-03-01", at=time(1, 30))
    runs = due_runs([daily], utc("2027-03-27T00:00"), utc("2027-03-30T00:00"))
    assert times(runs) == ["2027-03-27T01:30", "2027-03-28T01:30", "2027-03-29T00:30"]


def test_fall_back_repeated_time_runs_once_at_its_first_occurrence() -> None:
    # 31 October 2027: 02:00 BST becomes 01:00 GMT, so 01:30 local happens twice.
    daily = schedule(start="2027-10-01", at=time(1, 30))
    runs = due_runs([daily], utc("2027-10-30T00:00"), utc("2027-11-02T00:00"))
    assert times(runs) == ["2027-10-30T00:30", "2027-10-31T00:30", "2027-11-01T01:30"]


def test_execution_time_with_an_offset_stays_fixed_in_utc_across_dst() -> None:
    daily = schedule(start="2027-03-01", at=time(6, 0, tzinfo=UTC))
    runs = due_runs([daily], utc("2027-03-27T00:00"), utc("2027-03-30T00:00"))
    assert times(runs) == ["2027-03-27T06:00", "2027-03-28T06:00", "2027-03-29T06:00"]


def test_monthly_from_the_31st_clamps_to_each_month_end_and_keeps_its_day() -> None:
    monthly = schedule(ScheduleFrequency.MONTHLY, start="2027-01-31", at=time(12, 0))
    runs = due_runs([monthly], utc("2027-01-01T00:00"), utc("2028-03-01T00:00"))
    days = [at.date().isoformat() for _, at in runs]
    assert days[:4] == ["2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30"]
    assert "2028-02-29" in days  # leap year


def test_monthly_crosses_the_year_end() -> None:
    monthly = schedule(ScheduleFrequency.MONTHLY, start="2027-11-15")
    runs = due_runs([monthly], utc("2027-12-01T00:00"), utc("2028-02-01T00:00"))
    assert times(runs) == ["2027-12-15T00:00", "2028-01-15T00:00"]


def test_monthly_run_on_the_last_day_of_a_summer_month_is_the_evening_before_in_utc() -> None:
    monthly = schedule(ScheduleFrequency.MONTHLY, start="2027-05-31")
    runs = due_runs([monthly], utc("2027-06-01T00:00"), utc("2027-07-01T00:00"))
    assert times(runs) == ["2027-06-29T23:00"]  # 30 June 00:00 BST


def test_quarterly_half_yearly_and_yearly_count_calendar_months() -> None:
    since, until = utc("2027-01-01T00:00"), utc("2029-01-02T00:00")
    start = "2027-02-28"
    quarterly = due_runs([schedule(ScheduleFrequency.QUARTERLY, start)], since, until)
    half = due_runs([schedule(ScheduleFrequency.HALF_YEARLY, start)], since, until)
    yearly = due_runs([schedule(ScheduleFrequency.YEARLY, start)], since, until)
    assert len(quarterly) == 8 and len(half) == 4
    assert [at.date().isoformat() for _, at in yearly] == ["2027-02-28", "2028-02-28"]


def test_weekly_runs_every_seven_days_until_the_end_date_inclusive() -> None:
    weekly = schedule(ScheduleFrequency.WEEKLY, start="2027-01-04", end="2027-01-25")
    runs = due_runs([weekly], utc("2027-01-01T00:00"), utc("2027-03-01T00:00"))
    assert times(runs) == [
        "2027-01-04T00:00",
        "2027-01-11T00:00",
        "2027-01-18T00:00",
        "2027-01-25T00:00",
    ]


def test_window_includes_since_and_excludes_until() -> None:
    daily = schedule(start="2027-01-01")
    assert times(due_runs([daily], utc("2027-01-05T00:00"), utc("2027-01-06T00:00"))) == [
        "2027-01-05T00:00"
    ]
    assert due_runs([daily], utc("2027-01-05T00:01"), utc("2027-01-06T00:00")) == []


def test_nothing_runs_before_the_start_date() -> None:
    daily = schedule(start="2027-06-01")
    assert due_runs([daily], utc("2027-01-01T00:00"), utc("2027-05-31T22:00")) == []


def test_a_schedule_started_years_ago_still_runs_on_its_day() -> None:
    daily = schedule(start="2019-01-01", at=time(3, 0))
    monthly = schedule(ScheduleFrequency.MONTHLY, start="2019-01-31", schedule_id=2)
    runs = due_runs([daily, monthly], utc("2027-02-27T12:00"), utc("2027-02-28T12:00"))
    assert runs == [(2, utc("2027-02-28T00:00")), (1, utc("2027-02-28T03:00"))]


def test_runs_of_several_schedules_come_in_time_order() -> None:
    late = schedule(start="2027-01-01", at=time(9, 0), schedule_id=1)
    early = schedule(start="2027-01-01", at=time(8, 0), schedule_id=2)
    runs = due_runs([late, early], utc("2027-01-02T00:00"), utc("2027-01-03T00:00"))
    assert [sid for sid, _ in runs] == [2, 1]


def test_due_runs_refuses_naive_times() -> None:
    with pytest.raises(ValueError):
        due_runs([schedule()], datetime(2027, 1, 1), utc("2027-01-02T00:00"))


# --- the schedule methods, SQLite and PostgreSQL ----------------------------------------------


@pytest.fixture
async def methods(inventory: SmartMeteringInventory) -> ScheduleRequests:  # noqa: F811
    await seed_estate(inventory, premises=3, suppliers=2)
    return ScheduleRequests(DspSchedules(inventory))


def create_body(
    user: str = S1, roles: tuple[str, ...] = ("IS",), **fields: object
) -> dict[str, object]:
    body: dict[str, object] = {
        "user_eui": user,
        "user_roles": list(roles),
        "device_id": eui(1, 2),  # premises 1's ESME, S1's
        "variant": "4.6.1",
        "frequency": "Daily",
        "start_date": "2027-01-02",
    }
    return body | fields


def as_user(user: str, **fields: object) -> dict[str, object]:
    return {"user_eui": user, "user_roles": ["IS"], **fields}


async def test_create_then_the_creator_reads_it_by_id(methods: ScheduleRequests) -> None:
    created = await methods.create(create_body(end_date="2027-12-31", execution_time="06:30:00"))
    assert created["code"] == "I0"
    read = await methods.read(as_user(S1, schedule_id=created["schedule_id"]))
    assert read["code"] == "I0" and read["truncated"] is False
    [found] = read["schedules"]
    assert found["schedule_id"] == created["schedule_id"]
    assert (found["service_reference"], found["service_reference_variant"]) == ("4.6", "4.6.1")
    assert (found["frequency"], found["start_date"], found["end_date"]) == (
        "Daily",
        "2027-01-02",
        "2027-12-31",
    )
    assert found["execution_time"] == "06:30:00" and found["device_id"] == eui(1, 2)


async def test_another_user_reading_or_deleting_is_refused_e4(methods: ScheduleRequests) -> None:
    created = await methods.create(create_body())
    sid = created["schedule_id"]
    assert (await methods.read(as_user(S2, schedule_id=sid)))["code"] == "E4"
    assert (await methods.delete(as_user(S2, schedule_id=sid)))["code"] == "E4"
    assert (await methods.read(as_user(S1, schedule_id=sid)))["code"] == "I0"


async def test_an_unknown_schedule_id_is_answered_like_another_users(
    methods: ScheduleRequests,
) -> None:
    theirs = (await methods.create(create_body()))["schedule_id"]
    unknown = await methods.read(as_user(S2, schedule_id=theirs + 1000))
    other = await methods.read(as_user(S2, schedule_id=theirs))
    assert unknown["code"] == other["code"] == "E4"
    assert unknown["reason"].replace(str(theirs + 1000), "N") == other["reason"].replace(
        str(theirs), "N"
    )


async def test_creator_deletes_and_the_schedule_is_gone(methods: ScheduleRequests) -> None:
    sid = (await methods.create(create_body()))["schedule_id"]
    deleted = await methods.delete(as_user(S1, schedule_id=sid))
    assert deleted == {"code": "I0", "deleted": [sid]}
    assert (await methods.read(as_user(S1, schedule_id=sid)))["code"] == "E4"


async def test_read_and_delete_by_device_touch_only_the_users_own(
    methods: ScheduleRequests,
) -> None:
    hub = eui(1, 0)  # S1 is IS and GS of premises 1's hub; S2 is nothing there
    mine = [
        (await methods.create(create_body(device_id=eui(1, 2))))["schedule_id"],
        (await methods.create(create_body(device_id=eui(1, 2), frequency="Weekly")))["schedule_id"],
    ]
    elsewhere = (
        await methods.create(create_body(S2, device_id=eui(2, 2)))  # premises 2: S2's ESME
    )["schedule_id"]
    read = await methods.read(as_user(S1, device_id=eui(1, 2)))
    assert [s["schedule_id"] for s in read["schedules"]] == mine
    assert (await methods.read(as_user(S2, device_id=eui(1, 2))))["schedules"] == []
    assert (await methods.read(as_user(S1, device_id=hub)))["schedules"] == []
    assert (await methods.delete(as_user(S2, device_id=eui(1, 2))))["deleted"] == []
    assert (await methods.delete(as_user(S1, device_id=eui(1, 2))))["deleted"] == mine
    assert (await methods.read(as_user(S2, schedule_id=elsewhere)))["code"] == "I0"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"variant": "1.1.1"}, "E13"),  # not DCC-schedulable
        ({"variant": "9.9.9"}, "E13"),
        ({"frequency": "Fortnightly"}, "E13"),
        ({"end_date": "2027-01-01"}, "E13"),  # before the start
        ({"start_date": "not a date"}, "E13"),
        ({"device_id": "00-DC-C5-FF-FF-FF-FF-02"}, "E19"),
        ({"device_id": eui(1, 0)}, "E11"),  # 4.6.1 is for a meter, not a hub
        ({"device_id": eui(2, 2)}, "E4"),  # S2's ESME
        ({"user_roles": ["ED"]}, "E2"),  # 4.6.1 is for suppliers
    ],
)
async def test_create_refusals(
    methods: ScheduleRequests, fields: dict[str, object], code: str
) -> None:
    assert (await methods.create(create_body() | fields))["code"] == code


async def test_read_needs_exactly_one_selector(methods: ScheduleRequests) -> None:
    assert (await methods.read(as_user(S1)))["code"] == "E13"
    both = as_user(S1, schedule_id=1, device_id=eui(1, 2))
    assert (await methods.read(both))["code"] == "E13"


async def test_active_schedules_exclude_ended_ones_and_feed_due_runs(
    inventory: SmartMeteringInventory,  # noqa: F811
) -> None:
    store = DspSchedules(inventory)
    kept = await store.create(
        user_eui=S1,
        device_id=eui(1, 2),
        variant="4.6.1",
        frequency=ScheduleFrequency.MONTHLY,
        start_date=date(2027, 1, 31),
    )
    await store.create(
        user_eui=S1,
        device_id=eui(1, 2),
        variant="4.6.1",
        frequency=ScheduleFrequency.DAILY,
        start_date=date(2027, 1, 1),
        end_date=date(2027, 1, 31),
    )
    active = await store.active(date(2027, 2, 1))
    assert [s.schedule_id for s in active] == [kept.schedule_id]
    runs = due_runs(active, utc("2027-02-01T00:00"), utc("2027-03-01T00:00"))
    assert runs == [(kept.schedule_id, utc("2027-02-28T00:00"))]


async def test_scheduler_hands_each_due_run_to_the_callback_once(
    inventory: SmartMeteringInventory,  # noqa: F811
) -> None:
    store = DspSchedules(inventory)
    made = await store.create(
        user_eui=S1,
        device_id=eui(1, 2),
        variant="4.6.1",
        frequency=ScheduleFrequency.DAILY,
        start_date=date(2027, 1, 1),
        execution_time=time(0, 1),
    )
    ticks: Iterator[datetime] = (utc("2027-01-05T00:00") + timedelta(minutes=m) for m in range(99))
    seen: list[tuple[int, datetime]] = []
    stopping = asyncio.Event()

    async def on_due(s: DspSchedule, at: datetime) -> None:
        seen.append((s.schedule_id, at))
        stopping.set()

    await asyncio.wait_for(
        run_scheduler(store, on_due, stopping=stopping, interval=0.001, clock=lambda: next(ticks)),
        timeout=10,
    )
    assert seen == [(made.schedule_id, utc("2027-01-05T00:01"))]


# --- the reference requests ------------------------------------------------------------------


def _body_element(path: Path, name: str) -> etree._Element:
    element = etree.parse(str(path)).find(f"{SR}Body/{SR}{name}")
    assert element is not None
    return element


async def test_reference_create_schedule_maps_onto_schedule_create(
    methods: ScheduleRequests, reference_dir: Path
) -> None:
    element = _body_element(
        reference_dir / "duis/templates/ECS21a_5.1._DCC_SCHEDULED_REQUEST_DUIS.XML",
        "CreateSchedule",
    )
    fields = {etree.QName(c).localname: c for c in element}
    request = fields["DSPRetrieveImportDailyReadLog"]
    created = await methods.create(
        create_body(
            frequency=fields["ScheduleFrequency"].text,
            start_date=fields["ScheduleStartDate"].text,
            variant=fields["DSPScheduledServiceReferenceVariant"].text,
            request={
                "DSPRetrieveImportDailyReadLog": {etree.QName(c).localname: c.text for c in request}
            },
        )
    )
    assert created["code"] == "I0"
    read = await methods.read(as_user(S1, schedule_id=created["schedule_id"]))
    [found] = read["schedules"]
    assert found["service_reference"] == fields["DSPScheduledServiceReference"].text
    assert found["request"]["DSPRetrieveImportDailyReadLog"]["StartDateOffset"] == "-1"


@pytest.mark.parametrize(
    ("template", "element", "method"),
    [
        ("5.2_READ_SCHEDULE_REQUEST_DUIS.XML", "ReadSchedule", "read"),
        ("5.3_DELETE_SCHEDULE_REQUEST_DUIS.XML", "DeleteSchedule", "delete"),
    ],
)
async def test_reference_read_and_delete_of_a_schedule_not_the_users_are_e4(
    methods: ScheduleRequests, reference_dir: Path, template: str, element: str, method: str
) -> None:
    body = _body_element(reference_dir / "duis/templates" / template, element)
    schedule_id = body.findtext(f"{SR}DSPScheduleID")
    assert schedule_id is not None
    reply = await getattr(methods, method)(as_user(S1, schedule_id=int(schedule_id)))
    assert reply["code"] == "E4"
