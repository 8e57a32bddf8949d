"""DSP schedules (5.1-5.3): when scheduled SRs fire (month ends, DST changes in UK local time),
and the schedule methods with their owner check — on SQLite and PostgreSQL (the ``inventory``
fixture of the inventory suite)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from lxml import etree

from dccsim.duis.catalogue import UserRole
from dccsim.seed import supplier_eui
from services.inventory.schedules import (
    DspSchedule,
    DspSchedules,
    PipelineFirer,
    ScheduledRun,
    ScheduleFrequency,
    ScheduleRequests,
    ScheduleRunner,
    accelerated_clock,
    due_runs,
    run_scheduler,
    scheduled_request_body,
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


# --- firing the runs: once per run, across restarts ----------------------------------------


class Clock:
    """A settable clock for the scheduler."""

    def __init__(self, now: str) -> None:
        self.now = utc(now)

    def __call__(self) -> datetime:
        return self.now


class Firer:
    """Records the runs it is handed; ``fail`` makes the next call raise (a broker outage)."""

    def __init__(self) -> None:
        self.runs: list[ScheduledRun] = []
        self.fail = False

    async def __call__(self, run: ScheduledRun) -> str | None:
        if self.fail:
            self.fail = False
            raise ConnectionError("broker gone")
        self.runs.append(run)
        return None


async def daily(store: DspSchedules, **fields: object) -> DspSchedule:
    values: dict[str, object] = {
        "user_eui": S1,
        "device_id": eui(1, 2),
        "variant": "4.6.1",
        "frequency": ScheduleFrequency.DAILY,
        "start_date": date(2027, 1, 1),
        "execution_time": time(0, 1),
        "created_at": utc("2026-12-31T12:00"),
    }
    return await store.create(**(values | fields))  # type: ignore[arg-type]


def run_times(runs: list[ScheduledRun]) -> list[str]:
    return [r.run_at.strftime("%Y-%m-%dT%H:%M") for r in runs]


async def test_each_due_run_fires_once_however_often_the_scheduler_ticks(
    inventory: SmartMeteringInventory,  # noqa: F811
) -> None:
    store = DspSchedules(inventory)
    made = await daily(store)
    clock, fire = Clock("2027-01-01T00:00"), Firer()
    runner = ScheduleRunner(store, fire, clock=clock)
    assert await runner.tick() == []  # 00:01 is not due yet
    clock.now = utc("2027-01-01T00:01")
    await runner.tick()
    await runner.tick()
    clock.now = utc("2027-01-02T12:00")
    await runner.tick()
    assert run_times(fire.runs) == ["2027-01-01T00:01", "2027-01-02T00:01"]
    assert {r.schedule.schedule_id for r in fire.runs} == {made.schedule_id}
    assert [r["state"] for r in await runner.runs(made.schedule_id)] == ["published"] * 2


async def test_runs_due_while_the_service_was_down_fire_after_a_restart_and_no_others(
    inventory: SmartMeteringInventory,  # noqa: F811
) -> None:
    store = DspSchedules(inventory)
    await daily(store)
    before = Firer()
    await ScheduleRunner(store, before, clock=Clock("2027-01-02T00:05")).tick()
    assert run_times(before.runs) == ["2027-01-01T00:01", "2027-01-02T00:01"]
    # "restart": a new runner on a new connection to the same database, three days later
    reopened = SmartMeteringInventory(str(inventory.engine.url.render_as_string(False)))
    try:
        after = Firer()
        runner = ScheduleRunner(DspSchedules(reopened), after, clock=Clock("2027-01-05T06:00"))
        await runner.tick()
        await runner.tick()
    finally:
        await reopened.close()
    assert run_times(after.runs) == ["2027-01-03T00:01", "2027-01-04T00:01", "2027-01-05T00:01"]


async def test_a_run_claimed_but_not_sent_is_sent_again_with_the_same_request_id(
    inventory: SmartMeteringInventory,  # noqa: F811
) -> None:
    store = DspSchedules(inventory)
    made = await daily(store)
    fire = Firer()
    fire.fail = True
    crashed = ScheduleRunner(store, fire, clock=Clock("2027-01-01T00:02"))
    with pytest.raises(ConnectionError):
        await crashed.tick()
    [claimed] = await crashed.runs(made.schedule_id)
    assert claimed["state"] == "claimed"
    await ScheduleRunner(store, fire, clock=Clock("2027-01-01T00:03")).tick()
    [sent] = fire.runs
    assert sent.request_id == claimed["request_id"]
    assert [r["state"] for r in await crashed.runs(made.schedule_id)] == ["published"]


async def test_run_request_ids_name_user_and_device_with_a_rising_dcc_counter(
    inventory: SmartMeteringInventory,  # noqa: F811
) -> None:
    store = DspSchedules(inventory)
    await daily(store)
    await daily(store, device_id=eui(1, 3), execution_time=time(0, 2))
    counters = iter([5_000, 4_000, 9_000])  # the wall clock stepping back must not matter
    fire = Firer()
    runner = ScheduleRunner(
        store, fire, clock=Clock("2027-01-01T00:03"), counter_clock=lambda: next(counters)
    )
    await runner.tick()
    assert [r.request_id for r in fire.runs] == [
        f"{S1}:{eui(1, 2)}:5000",
        f"{S1}:{eui(1, 3)}:5001",
    ]
    assert [r.counter for r in fire.runs] == [5000, 5001]


async def test_a_deleted_schedule_fires_no_further_runs(
    inventory: SmartMeteringInventory,  # noqa: F811
) -> None:
    store = DspSchedules(inventory)
    made = await daily(store)
    clock, fire = Clock("2027-01-01T00:05"), Firer()
    runner = ScheduleRunner(store, fire, clock=clock)
    await runner.tick()
    await store.delete([made.schedule_id])
    clock.now = utc("2027-01-04T00:05")
    await runner.tick()
    assert run_times(fire.runs) == ["2027-01-01T00:01"]
    assert await runner.runs(made.schedule_id) == []


async def test_a_refused_run_is_recorded_with_its_code_and_not_retried(
    inventory: SmartMeteringInventory,  # noqa: F811
) -> None:
    store = DspSchedules(inventory)
    made = await daily(store)
    calls: list[ScheduledRun] = []

    async def refuse(run: ScheduledRun) -> str | None:
        calls.append(run)
        return "E4"

    runner = ScheduleRunner(store, refuse, clock=Clock("2027-01-01T00:05"))
    assert await runner.tick() == []
    await runner.tick()
    assert len(calls) == 1
    assert [(r["state"], r["code"]) for r in await runner.runs(made.schedule_id)] == [
        ("refused", "E4")
    ]


async def test_run_scheduler_ticks_until_stopped(
    inventory: SmartMeteringInventory,  # noqa: F811
) -> None:
    store = DspSchedules(inventory)
    await daily(store)
    stopping = asyncio.Event()
    seen: list[ScheduledRun] = []

    async def fire(run: ScheduledRun) -> str | None:
        seen.append(run)
        stopping.set()
        return None

    runner = ScheduleRunner(store, fire, clock=Clock("2027-01-01T00:02"))
    await asyncio.wait_for(run_scheduler(runner, stopping=stopping, interval=0.001), timeout=10)
    assert run_times(seen) == ["2027-01-01T00:01"]


def test_accelerated_clock_runs_faster_than_real_time() -> None:
    wall = Clock("2026-12-01T00:00")
    clock = accelerated_clock(86_400, utc("2027-01-01T00:00"), wall_clock=wall)  # a day a second
    assert clock() == utc("2027-01-01T00:00")
    wall.now += timedelta(seconds=1.5)
    assert clock() == utc("2027-01-02T12:00")
    assert accelerated_clock(1, wall_clock=wall)() == wall.now


def test_accelerated_clock_with_an_origin_file_goes_on_across_restarts(tmp_path: Path) -> None:
    origin = tmp_path / "data" / "clock-origin"
    wall = Clock("2026-12-01T00:00")
    first = accelerated_clock(3600, origin_file=origin, wall_clock=wall)  # an hour a second
    wall.now += timedelta(seconds=2)
    before = first()
    # "restart" ten seconds later: the clock counts the downtime as if it had run on
    wall.now += timedelta(seconds=10)
    again = accelerated_clock(3600, origin_file=origin, wall_clock=wall)
    assert before == utc("2026-12-01T02:00")
    assert again() == utc("2026-12-01T12:00") == first()


# --- what a run sends ----------------------------------------------------------------------


def test_scheduled_body_resolves_the_read_log_offsets_against_the_run_date() -> None:
    made = DspSchedule(
        schedule_id=7,
        user_eui=S1,
        device_id=eui(1, 2),
        variant="4.6.1",
        frequency=ScheduleFrequency.DAILY,
        start_date=date(2027, 7, 1),
        request={
            "DSPRetrieveImportDailyReadLog": {
                "StartDateOffset": "-1",
                "StartTime": "00:00:00.00Z",
                "EndDateOffset": "0",
                "EndTime": "00:00:00",  # no offset: UK local (BST in July)
            }
        },
    )
    element = etree.fromstring(scheduled_request_body(made, utc("2027-07-09T23:00")))
    assert etree.QName(element).localname == "RetrieveImportDailyReadLog"
    # the run is at 00:00 BST on 10 July: its UK date is the 10th
    assert element.findtext(f"{SR}ReadLogPeriod/{SR}StartDateTime") == "2027-07-09T00:00:00Z"
    assert element.findtext(f"{SR}ReadLogPeriod/{SR}EndDateTime") == "2027-07-09T23:00:00Z"


def test_scheduled_body_of_an_srv_without_a_period_is_its_empty_element() -> None:
    made = DspSchedule(1, S1, eui(1, 2), "4.12.1", ScheduleFrequency.DAILY, date(2027, 1, 1))
    element = etree.fromstring(scheduled_request_body(made, utc("2027-01-01T00:00")))
    assert etree.QName(element).localname == "ReadMaximumDemandImportRegisters"
    assert len(element) == 0


async def test_pipeline_firer_publishes_what_the_gateway_would_for_an_eligible_user(
    methods: ScheduleRequests,
) -> None:
    smi = methods.schedules.inventory
    published: list[tuple[str, dict[str, object]]] = []

    async def publish(request_id: str, body: dict[str, object]) -> None:
        published.append((request_id, body))

    users = {S1: ("SUPPLIER1", frozenset({UserRole.IMPORT_SUPPLIER}))}
    firer = PipelineFirer(smi, users.get, publish, wall_clock=lambda: 1.5)
    made = await methods.schedules.create(
        user_eui=S1,
        device_id=eui(1, 2),
        variant="4.6.1",
        frequency=ScheduleFrequency.DAILY,
        start_date=date(2027, 1, 1),
        request={"DSPRetrieveImportDailyReadLog": {"StartDateOffset": "-1"}},
    )
    run = ScheduledRun(made, utc("2027-01-02T00:00"), f"{S1}:{eui(1, 2)}:77", 77)
    assert await firer(run) is None
    [(request_id, body)] = published
    assert request_id == run.request_id
    assert (body["srv"], body["cv"], body["user_id"], body["counter"]) == (
        "4.6.1",
        1,
        "SUPPLIER1",
        77,
    )
    assert body["originator"] == bytes.fromhex(S1.replace("-", ""))
    assert body["target"] == bytes.fromhex(eui(1, 2).replace("-", ""))
    assert isinstance(body["device"], dict) and body["device"]["device_type"] == "ESME"
    assert body["dsp_schedule_id"] == made.schedule_id and body["received_at"] == 1.5
    assert isinstance(body["body_xml"], bytes) and b"RetrieveImportDailyReadLog" in body["body_xml"]


async def test_pipeline_firer_refuses_a_user_no_longer_eligible_or_unknown(
    methods: ScheduleRequests,
) -> None:
    smi = methods.schedules.inventory
    published: list[str] = []

    async def publish(request_id: str, body: dict[str, object]) -> None:
        published.append(request_id)

    made = await methods.schedules.create(
        user_eui=S1,
        device_id=eui(2, 2),  # S2's ESME
        variant="4.6.1",
        frequency=ScheduleFrequency.DAILY,
        start_date=date(2027, 1, 1),
    )
    run = ScheduledRun(made, utc("2027-01-02T00:00"), f"{S1}:{eui(2, 2)}:1", 1)
    known = {S1: ("SUPPLIER1", frozenset({UserRole.IMPORT_SUPPLIER}))}
    assert await PipelineFirer(smi, known.get, publish)(run) == "E4"
    nobody: dict[str, tuple[str, frozenset[UserRole]]] = {}
    assert await PipelineFirer(smi, nobody.get, publish)(run) == "E1"
    assert published == []


async def test_create_refuses_a_body_element_of_another_srv(methods: ScheduleRequests) -> None:
    wrong = create_body(request={"DSPReadActiveImportProfileData": {"StartDateOffset": "-1"}})
    assert (await methods.create(wrong))["code"] == "E13"
    assert (await methods.create(create_body(service_reference="4.8")))["code"] == "E13"


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
