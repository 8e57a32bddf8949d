"""DSP schedules (DUIS 5.1 Create Schedule, 5.2 Read Schedule, 5.3 Delete Schedule): a User asks
the DCC to send one of the DCC-schedulable SRVs (4.6.1, 4.8.1, ...; ``dcc_scheduled`` in the SRV
catalogue) to a device on a repeating timetable, and the DCC then sends it on its behalf.

**When a schedule fires.** Occurrence *n* (n = 0, 1, ...) falls on ``ScheduleStartDate`` plus n
periods: Daily 1 day, Weekly 7 days, Monthly / Quarterly / Half-Yearly / Yearly 1 / 3 / 6 / 12
calendar months. A monthly date is always counted from the start date, not from the previous
run, and is clamped to the month's last day (a schedule starting 31 January runs 28/29 February,
31 March, 30 April, ...). The last occurrence is on or before ``ScheduleEndDate`` (inclusive;
none: forever). It runs at ``ScheduleExecutionStartTime`` (default 00:00) on that date in UK local
time (Europe/London) — or at the time's own offset when the xs:time carries one (``...Z``), so
that a UTC time stays fixed in UTC across DST changes. A local time that does not exist (the
spring-forward hour) runs an hour later by the wall clock; one that happens twice (the
fall-back hour) runs once, at its first occurrence. ``due_runs`` is the pure rule.

**How a run is sent.** ``ScheduleRunner`` (each ``inventory_schedule_interval_s``) claims every
run due since the schedule's last run (or its creation) in the database — one row per schedule
and run time, with the RequestID it will carry — then ``PipelineFirer`` publishes it as the User
Gateway publishes a User's device SR (``sr.accepted``, CV 1, the device record, the scheduled
SRV's body element with its ReadLogPeriod resolved from the ReadLogPeriodOffset against the run's
date), after the checks the gateway would make at that moment (User known, eligible for the
device); then the row is marked published (or refused, with the code). A crash between claim
and publish republishes the same RequestID at start (the pipeline keeps one Response per
RequestID); runs that fell due while the inventory was down are sent when it is back.

**The RequestID of a run** is ``<User EUI>:<Device EUI>:<DCC counter>``: the XSD's Response
header has RequestID and ResponseID as for any device Response, and the scheduled Response's
content ``DSPScheduledMessage`` carries GBCSPayload and the DSPScheduleID — there is no
User-issued request, so the DCC issues the ID in the User's name, with its own counter
(microseconds since the epoch when the run is claimed, strictly above every counter it issued
before). The counter is the GBCS Originator Counter of the command, as for a User's request.
The ``sr.accepted`` body adds ``dsp_schedule_id`` and ``dsp_run_at`` for the Response.

**Time** is the scheduler's clock, injectable (``ScheduleRunner(clock=...)``); the setting
``inventory_schedule_clock_speed`` makes it run faster than real time for tests, and a
schedule's creation time is taken on the same clock.

Only the User that created a schedule may read or delete it: any other User, and a schedule ID
that does not exist, is answered E4 with the same reason, so that one User cannot learn which
schedule IDs another holds.

RPC methods (routing key ``rpc.inventory``); bodies carry ``user_eui`` and ``user_roles`` as in
``services.inventory.requests``, every reply ``code`` (and ``reason`` when refused).
``schedule`` = ``{schedule_id, user_eui, device_id, service_reference, service_reference_variant,
frequency, start_date, end_date | None, execution_time | None, request, created_at}``
where ``request`` is the scheduled SRV's body element as ``{element: {field: value}}``.

5.1 ``schedule.create``  {user_eui, user_roles, device_id, variant (the scheduled SRV, e.g.
    "4.6.1"), frequency ("Daily" | "Weekly" | "Monthly" | "Quarterly" | "Half-Yearly" |
    "Yearly"), start_date, [end_date], [execution_time] (xs:time), [request]}
    -> {code: "I0", schedule_id, schedule}; E13 (not a schedulable SRV, bad frequency or
    dates), and the scheduled SRV's own eligibility for the device: E2, E19, E11, E4, E5.
5.2 ``schedule.read``  {user_eui, user_roles, schedule_id | device_id}
    -> {code: "I0", schedules: [schedule, ...<=99], truncated}; by device, the User's own
    schedules for it (none: I0 and an empty list); by ID, E4 unless the User created it.
5.3 ``schedule.delete``  {user_eui, user_roles, schedule_id | device_id}
    -> {code: "I0", deleted: [schedule_id, ...]}; by ID, E4 unless the User created it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from lxml import etree
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from dccsim.duis.catalogue import UserRole, lookup
from dccsim.duis.codes import DuisError
from dccsim.duis.requestid import parse_eui
from dccsim.duis.xml import SR_NS
from dccsim.smi import check_eligibility
from services.inventory.store import (
    DspScheduleRow,
    DspScheduleRunRow,
    SmartMeteringInventory,
    _aware,
    utcnow,
)

UK = ZoneInfo("Europe/London")
DEFAULT_EXECUTION_TIME = time(0, 0)
READ_SCHEDULE_LIMIT = 99  # DSPSchedulesRead: at most 99 DSPSchedules per Response

Body = dict[str, Any]
Reply = dict[str, Any]
Method = Callable[[Body], Awaitable[Reply]]
DueCallback = Callable[["DspSchedule", datetime], Awaitable[None]]


class ScheduleFrequency(StrEnum):
    """DUIS ``ScheduleFrequency``."""

    DAILY = "Daily"
    WEEKLY = "Weekly"
    MONTHLY = "Monthly"
    QUARTERLY = "Quarterly"
    HALF_YEARLY = "Half-Yearly"
    YEARLY = "Yearly"


# One period of each frequency: (days, calendar months).
PERIOD: dict[ScheduleFrequency, tuple[int, int]] = {
    ScheduleFrequency.DAILY: (1, 0),
    ScheduleFrequency.WEEKLY: (7, 0),
    ScheduleFrequency.MONTHLY: (0, 1),
    ScheduleFrequency.QUARTERLY: (0, 3),
    ScheduleFrequency.HALF_YEARLY: (0, 6),
    ScheduleFrequency.YEARLY: (0, 12),
}


@dataclass(frozen=True)
class DspSchedule:
    """A DSP schedule as ``due_runs`` and the replies see it."""

    schedule_id: int
    user_eui: str
    device_id: str
    variant: str
    frequency: ScheduleFrequency
    start_date: date
    end_date: date | None = None
    execution_time: time | None = None
    request: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None

    @classmethod
    def from_row(cls, row: DspScheduleRow) -> DspSchedule:
        return cls(
            schedule_id=row.schedule_id,
            user_eui=row.user_eui,
            device_id=row.device_id,
            variant=row.variant,
            frequency=ScheduleFrequency(row.frequency),
            start_date=row.start_date,
            end_date=row.end_date,
            execution_time=time.fromisoformat(row.execution_time) if row.execution_time else None,
            request=dict(row.request or {}),
            created_at=_aware(row.created_at),
        )

    def to_wire(self) -> dict[str, Any]:
        srv = lookup(self.variant)
        return {
            "schedule_id": self.schedule_id,
            "user_eui": self.user_eui,
            "device_id": self.device_id,
            "service_reference": srv.reference if srv else self.variant,
            "service_reference_variant": self.variant,
            "frequency": self.frequency.value,
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat() if self.end_date else None,
            "execution_time": self.execution_time.isoformat() if self.execution_time else None,
            "request": self.request,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


def _add_months(day: date, months: int, anchor_day: int) -> date:
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    first_next = date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1)
    last = (first_next - timedelta(days=1)).day
    return date(year, month + 1, min(anchor_day, last))


def occurrence(schedule: DspSchedule, n: int) -> date | None:
    """The date of the schedule's ``n``-th run (0 = the start date), or None past its end."""
    days, months = PERIOD[schedule.frequency]
    start = schedule.start_date
    day = (
        start + timedelta(days=days * n)
        if days
        else _add_months(start, months * n, anchor_day=start.day)
    )
    if schedule.end_date is not None and day > schedule.end_date:
        return None
    return day


def run_at(schedule: DspSchedule, day: date) -> datetime:
    """When (UTC) the run dated ``day`` fires: the execution time in UK local time, or in the
    time's own offset when it has one."""
    at = schedule.execution_time or DEFAULT_EXECUTION_TIME
    zone: tzinfo = at.tzinfo or UK
    local = datetime.combine(day, at.replace(tzinfo=None)).replace(tzinfo=zone, fold=0)
    return local.astimezone(UTC)


def _first_index(schedule: DspSchedule, since: datetime) -> int:
    """An occurrence index at or before the first run at/after ``since`` (a run fires within a
    day of its date either way, so starting two days early is always safe)."""
    target = since.astimezone(UTC).date() - timedelta(days=2)
    if target <= schedule.start_date:
        return 0
    days, months = PERIOD[schedule.frequency]
    if days:
        return (target - schedule.start_date).days // days
    elapsed = (target.year - schedule.start_date.year) * 12 + (
        target.month - schedule.start_date.month
    )
    return max(0, elapsed // months - 1)


def due_runs(
    schedules: Iterable[DspSchedule], since: datetime, until: datetime
) -> list[tuple[int, datetime]]:
    """Which scheduled SRs fire in ``[since, until)``: ``(schedule_id, run_at)`` pairs, ``run_at``
    in UTC, ordered by time then schedule. ``since`` and ``until`` must be timezone-aware."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("due_runs needs timezone-aware since and until")
    runs: list[tuple[int, datetime]] = []
    for schedule in schedules:
        n = _first_index(schedule, since)
        while (day := occurrence(schedule, n)) is not None:
            at = run_at(schedule, day)
            if at >= until:
                break
            if at >= since:
                runs.append((schedule.schedule_id, at))
            n += 1
    return sorted(runs, key=lambda run: (run[1], run[0]))


# --- the store ---------------------------------------------------------------------------------


class DspSchedules:
    """DSP schedules kept in the inventory's database."""

    def __init__(self, inventory: SmartMeteringInventory) -> None:
        self.inventory = inventory

    async def create(
        self,
        *,
        user_eui: str,
        device_id: str,
        variant: str,
        frequency: ScheduleFrequency,
        start_date: date,
        end_date: date | None = None,
        execution_time: time | None = None,
        request: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> DspSchedule:
        """Store a schedule (already validated) and return it with its DSPScheduleID."""
        row = DspScheduleRow(
            user_eui=user_eui.upper(),
            device_id=device_id.upper(),
            variant=variant,
            frequency=frequency.value,
            start_date=start_date,
            end_date=end_date,
            execution_time=execution_time.isoformat() if execution_time else None,
            request=request or {},
            created_at=created_at or utcnow(),
        )
        async with self.inventory.sessions.begin() as session:
            session.add(row)
            await session.flush()
        return DspSchedule.from_row(row)

    async def get(self, schedule_id: int) -> DspSchedule | None:
        async with self.inventory.sessions() as session:
            row = await session.get(DspScheduleRow, schedule_id)
        return DspSchedule.from_row(row) if row else None

    async def owned(self, user_eui: str, *, device_id: str | None = None) -> list[DspSchedule]:
        """The User's schedules, optionally for one device, by schedule ID."""
        query = select(DspScheduleRow).where(DspScheduleRow.user_eui == user_eui.upper())
        if device_id is not None:
            query = query.where(DspScheduleRow.device_id == device_id.upper())
        async with self.inventory.sessions() as session:
            rows = (await session.scalars(query.order_by(DspScheduleRow.schedule_id))).all()
        return [DspSchedule.from_row(r) for r in rows]

    async def active(self, on: date) -> list[DspSchedule]:
        """Every schedule that has not ended before ``on`` (what the scheduler looks at)."""
        query = select(DspScheduleRow).where(
            (DspScheduleRow.end_date.is_(None)) | (DspScheduleRow.end_date >= on)
        )
        async with self.inventory.sessions() as session:
            rows = (await session.scalars(query.order_by(DspScheduleRow.schedule_id))).all()
        return [DspSchedule.from_row(r) for r in rows]

    async def delete(self, schedule_ids: Iterable[int]) -> None:
        ids = list(schedule_ids)
        if not ids:
            return
        async with self.inventory.sessions.begin() as session:
            await session.execute(delete(DspScheduleRow).where(DspScheduleRow.schedule_id.in_(ids)))
            # Its runs go too: a schedule ID may be used again (SQLite reuses the highest).
            await session.execute(
                delete(DspScheduleRunRow).where(DspScheduleRunRow.schedule_id.in_(ids))
            )


# --- firing the runs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduledRun:
    """One run of a schedule as the DCC sends it: the RequestID it carries through the pipeline
    (``<User EUI>:<Device EUI>:<DCC counter>``) and the body of the scheduled Service Request."""

    schedule: DspSchedule
    run_at: datetime
    request_id: str
    counter: int

    def body_xml(self) -> bytes:
        return scheduled_request_body(self.schedule, self.run_at)


# Fire one run: publish its Service Request; None when published, or the DUIS code it was
# refused with (the User is no longer eligible for the device, or the device has gone).
RunFirer = Callable[[ScheduledRun], Awaitable[str | None]]

CLAIMED, PUBLISHED, REFUSED = "claimed", "published", "refused"


def _offset_date_time(day: date, offset: str | None, at: str | None) -> str:
    """A ReadLogPeriodOffset end: ``day`` + ``offset`` days at the xs:time ``at`` (UK local time
    unless it carries an offset), as an xs:dateTime in UTC."""
    when = _xs_time(at) if at else DEFAULT_EXECUTION_TIME
    moment = datetime.combine(day + timedelta(days=int(offset or 0)), when.replace(tzinfo=None))
    aware = moment.replace(tzinfo=when.tzinfo or UK)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_request_body(schedule: DspSchedule, run_at: datetime) -> bytes:
    """The DUIS body element of the Service Request a run sends: the scheduled SRV's own element
    (``RetrieveImportDailyReadLog`` for 4.6.1, ...), its ReadLogPeriod resolved from the
    schedule's ReadLogPeriodOffset against the run's date (UK local)."""
    srv = lookup(schedule.variant)
    if srv is None:
        raise ValueError(f"{schedule.variant} is not in the SRV catalogue")
    element = etree.Element(f"{{{SR_NS}}}{srv.body_element}", nsmap={"sr": SR_NS})
    fields = next(iter(schedule.request.values()), None) or {}
    if "StartDateOffset" in fields or "EndDateOffset" in fields:
        day = run_at.astimezone(UK).date()
        period = etree.SubElement(element, f"{{{SR_NS}}}ReadLogPeriod")
        etree.SubElement(period, f"{{{SR_NS}}}StartDateTime").text = _offset_date_time(
            day, fields.get("StartDateOffset"), fields.get("StartTime")
        )
        etree.SubElement(period, f"{{{SR_NS}}}EndDateTime").text = _offset_date_time(
            day, fields.get("EndDateOffset"), fields.get("EndTime")
        )
    return bytes(etree.tostring(element))


def _real_counter() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)


class ScheduleRunner:
    """Sends each due run exactly once in effect, across restarts: a run is claimed in the
    database (unique per schedule and run time, with the RequestID it will carry) before it is
    fired, and marked published after; a run claimed but not marked (a crash between the two) is
    fired again with the same RequestID, which the pipeline collapses. A schedule's runs are
    looked for from its last run (or its creation), so the runs that fell due while the service
    was down are sent when it is back.

    The RequestID counter is the DCC's: microseconds since the epoch when the run is claimed,
    and above every counter the DCC used before, so it increases per User like a User's own."""

    def __init__(
        self,
        schedules: DspSchedules,
        fire: RunFirer,
        *,
        clock: Callable[[], datetime] = utcnow,
        counter_clock: Callable[[], int] = _real_counter,
        max_runs_per_tick: int = 100,
    ) -> None:
        self.schedules = schedules
        self.fire = fire
        self.clock = clock
        self.counter_clock = counter_clock
        self.max_runs_per_tick = max_runs_per_tick

    async def tick(self) -> list[ScheduledRun]:
        """Fire what is due now (and what a crash left claimed); returns the runs fired."""
        fired = [run for run in await self._claimed() if await self._fire(run)]
        now = self.clock()
        budget = self.max_runs_per_tick
        last_runs = await self._last_runs()
        for schedule in await self.schedules.active(now.date() - timedelta(days=1)):
            last = last_runs.get(schedule.schedule_id)
            since = (
                last + timedelta(microseconds=1)
                if last is not None
                else (schedule.created_at or now)
            )
            for _, at in due_runs([schedule], since, now + timedelta(microseconds=1)):
                if budget <= 0:
                    return fired
                run = await self._claim(schedule, at)
                if run is not None and await self._fire(run):
                    fired.append(run)
                budget -= 1
        return fired

    async def _fire(self, run: ScheduledRun) -> bool:
        code = await self.fire(run)
        state = PUBLISHED if code is None else REFUSED
        async with self.schedules.inventory.sessions.begin() as session:
            row = await session.scalar(
                select(DspScheduleRunRow).where(DspScheduleRunRow.request_id == run.request_id)
            )
            if row is not None:
                row.state, row.code = state, code
        return code is None

    async def _last_runs(self) -> dict[int, datetime]:
        """Each schedule's latest recorded run (one query for the whole tick)."""
        async with self.schedules.inventory.sessions() as session:
            rows = (
                await session.execute(
                    select(
                        DspScheduleRunRow.schedule_id, func.max(DspScheduleRunRow.run_at)
                    ).group_by(DspScheduleRunRow.schedule_id)
                )
            ).all()
        return {int(sid): _aware(at) for sid, at in rows if at is not None}

    async def _claim(self, schedule: DspSchedule, run_at: datetime) -> ScheduledRun | None:
        """Record the run with its RequestID; None when it is already recorded (another
        inventory instance claimed it)."""
        try:
            async with self.schedules.inventory.sessions.begin() as session:
                highest = await session.scalar(select(func.max(DspScheduleRunRow.counter)))
                counter = max(self.counter_clock(), (highest or 0) + 1)
                request_id = f"{schedule.user_eui}:{schedule.device_id}:{counter}"
                session.add(
                    DspScheduleRunRow(
                        schedule_id=schedule.schedule_id,
                        run_at=run_at,
                        counter=counter,
                        request_id=request_id,
                        state=CLAIMED,
                        claimed_at=utcnow(),
                    )
                )
        except IntegrityError:
            return None
        return ScheduledRun(schedule, run_at, request_id, counter)

    async def _claimed(self) -> list[ScheduledRun]:
        """Runs claimed but never marked fired: a crash came between claim and publish."""
        async with self.schedules.inventory.sessions() as session:
            rows = (
                await session.scalars(
                    select(DspScheduleRunRow)
                    .where(DspScheduleRunRow.state == CLAIMED)
                    .order_by(DspScheduleRunRow.run_id)
                )
            ).all()
        runs = []
        for row in rows:
            schedule = await self.schedules.get(row.schedule_id)
            if schedule is not None:  # deleted since: nothing to send
                runs.append(ScheduledRun(schedule, _aware(row.run_at), row.request_id, row.counter))
        return runs

    async def runs(self, schedule_id: int) -> list[dict[str, Any]]:
        """The recorded runs of a schedule, oldest first (for tests and inspection)."""
        async with self.schedules.inventory.sessions() as session:
            rows = (
                await session.scalars(
                    select(DspScheduleRunRow)
                    .where(DspScheduleRunRow.schedule_id == schedule_id)
                    .order_by(DspScheduleRunRow.run_at)
                )
            ).all()
        return [
            {
                "run_at": _aware(r.run_at).isoformat(),
                "request_id": r.request_id,
                "state": r.state,
                "code": r.code,
            }
            for r in rows
        ]


# The User a schedule belongs to, by EUI: (User ID, User Roles), or None when it is not known.
UserLookup = Callable[[str], "tuple[str, frozenset[UserRole]] | None"]
# Publish an ``sr.accepted`` body under its RequestID (with the broker's confirm).
AcceptedPublisher = Callable[[str, dict[str, Any]], Awaitable[None]]


class PipelineFirer:
    """Fires a run as the User Gateway forwards a User's device Service Request: the same
    ``sr.accepted`` body (CV 1, the device record, the SR's body element), after the checks the
    gateway would make now — the User is still known and still eligible for the device (E1, and
    E19/E11/E4/E5 from the eligibility rule). The body adds ``dsp_schedule_id`` and
    ``dsp_run_at``, so the Response can name the schedule (``DSPScheduledMessage``)."""

    def __init__(
        self,
        inventory: SmartMeteringInventory,
        find_user: UserLookup,
        publish: AcceptedPublisher,
        *,
        wall_clock: Callable[[], float] = lambda: datetime.now(UTC).timestamp(),
    ) -> None:
        self.inventory = inventory
        self.find_user = find_user
        self.publish = publish
        self.wall_clock = wall_clock

    async def __call__(self, run: ScheduledRun) -> str | None:
        schedule = run.schedule
        srv = lookup(schedule.variant)
        user = self.find_user(schedule.user_eui)
        if srv is None or user is None:
            return "E1"
        user_id, roles = user
        device = await self.inventory.device(schedule.device_id)
        code = check_eligibility(srv, user_eui=schedule.user_eui, user_roles=roles, device=device)
        if code is not None:
            return code
        assert device is not None
        await self.publish(
            run.request_id,
            {
                "srv": srv.variant,
                "cv": 1,
                "user_id": user_id,
                "user_eui": schedule.user_eui,
                "originator": parse_eui(schedule.user_eui),
                "target": parse_eui(schedule.device_id),
                "counter": run.counter,
                "device": device.to_wire(),
                "received_at": self.wall_clock(),
                "body_xml": run.body_xml(),
                "dsp_schedule_id": schedule.schedule_id,
                "dsp_run_at": run.run_at.isoformat(),
            },
        )
        return None


def accelerated_clock(
    speed: float,
    start: datetime | None = None,
    *,
    origin_file: Path | None = None,
    wall_clock: Callable[[], datetime] = utcnow,
) -> Callable[[], datetime]:
    """A clock that runs ``speed`` times real time, reading ``start`` (default: the real time)
    when it begins; speed 1 is the real clock. For tests of schedules that would otherwise take
    days. With ``origin_file`` the real time it began is kept there, so the clock goes on across
    restarts as if the service had never stopped (the downtime counts, accelerated too)."""
    if speed == 1:
        return wall_clock
    began = wall_clock()  # the real time the acceleration began
    if origin_file is not None:
        try:
            began = datetime.fromisoformat(origin_file.read_text().strip())
        except FileNotFoundError:
            origin_file.parent.mkdir(parents=True, exist_ok=True)
            origin_file.write_text(began.isoformat())
    sim_start = start or began
    return lambda: sim_start + (wall_clock() - began) * speed


async def run_scheduler(
    runner: ScheduleRunner,
    *,
    stopping: asyncio.Event,
    interval: float = 60.0,
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Every ``interval`` seconds until ``stopping``, ``runner.tick()``; a failing tick is
    reported to ``on_error`` and retried at the next one (nothing is lost: the runs are in the
    database)."""
    while not stopping.is_set():
        try:
            await runner.tick()
        except Exception as exc:  # a database or broker hiccup: the next tick tries again
            if on_error is None:
                raise
            on_error(exc)
        try:
            await asyncio.wait_for(stopping.wait(), interval)
        except TimeoutError:
            pass


# --- the RPC methods ---------------------------------------------------------------------------


def _answered(method: Callable[..., Awaitable[Reply]]) -> Callable[..., Awaitable[Reply]]:
    """A ``DuisError`` becomes ``{code, reason}``; a malformed body becomes E13."""

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Reply:
        try:
            return await method(*args, **kwargs)
        except DuisError as exc:
            return {"code": exc.code, "reason": exc.reason}
        except (KeyError, ValueError, TypeError) as exc:
            return {"code": "E13", "reason": f"malformed schedule request: {exc!s}"}

    return wrapper


def _user(body: Body) -> str:
    return str(body.get("user_eui") or "").upper()


def _roles(body: Body) -> frozenset[UserRole]:
    return frozenset(UserRole(r) for r in body.get("user_roles") or ())


def _xs_time(text: str) -> time:
    # xs:time may carry a fraction of any length ("00:00:00.00Z"); Python wants 0, 3 or 6 digits.
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{(digits + '000000')[:6]}{zone}"
    return time.fromisoformat(text)


class ScheduleRequests:
    """The ``schedule.*`` RPC methods, by name (``methods()``)."""

    def __init__(self, schedules: DspSchedules, *, clock: Callable[[], datetime] = utcnow) -> None:
        """``clock``: the scheduler's clock, so a schedule's runs count from its creation in the
        scheduler's time (see ``accelerated_clock``)."""
        self.schedules = schedules
        self.clock = clock

    def methods(self) -> dict[str, Method]:
        return {
            "schedule.create": self.create,
            "schedule.read": self.read,
            "schedule.delete": self.delete,
        }

    async def _selected(self, body: Body) -> list[DspSchedule]:
        """The schedules a 5.2 / 5.3 names: by DSPScheduleID (E4 unless the User's) or by
        DeviceID (the User's own on that device)."""
        user = _user(body)
        if body.get("schedule_id") is not None and not body.get("device_id"):
            schedule = await self.schedules.get(int(body["schedule_id"]))
            if schedule is None or schedule.user_eui != user:
                raise DuisError("E4", f"schedule {body['schedule_id']} is not one of this User's")
            return [schedule]
        if body.get("device_id") and body.get("schedule_id") is None:
            return await self.schedules.owned(user, device_id=str(body["device_id"]))
        raise DuisError("E13", "needs exactly one of DSPScheduleID, DeviceID")

    @_answered
    async def create(self, body: Body) -> Reply:
        variant = str(body["variant"])
        srv = lookup(variant)
        if srv is None or not srv.dcc_scheduled:
            raise DuisError("E13", f"{variant} is not an SRV the DCC can schedule")
        try:
            frequency = ScheduleFrequency(str(body["frequency"]))
        except ValueError:
            raise DuisError("E13", f"unknown ScheduleFrequency {body['frequency']!r}") from None
        start = date.fromisoformat(str(body["start_date"]))
        end = date.fromisoformat(str(body["end_date"])) if body.get("end_date") else None
        if end is not None and end < start:
            raise DuisError("E13", "ScheduleEndDate is before ScheduleStartDate")
        execution = _xs_time(str(body["execution_time"])) if body.get("execution_time") else None
        if body.get("service_reference") and str(body["service_reference"]) != srv.reference:
            raise DuisError("E13", f"DSPScheduledServiceReference is not {srv.reference}")
        request = dict(body.get("request") or {})
        if request and list(request) != [f"DSP{srv.body_element}"]:
            raise DuisError("E13", f"{variant} is scheduled with DSP{srv.body_element}")
        device_id = str(body["device_id"]).upper()
        record = await self.schedules.inventory.device(device_id)
        code = check_eligibility(srv, user_eui=_user(body), user_roles=_roles(body), device=record)
        if code is not None:
            raise DuisError(code, f"the User may not schedule {variant} for device {device_id}")
        schedule = await self.schedules.create(
            user_eui=_user(body),
            device_id=device_id,
            variant=variant,
            frequency=frequency,
            start_date=start,
            end_date=end,
            execution_time=execution,
            request=request,
            created_at=self.clock(),
        )
        return {"code": "I0", "schedule_id": schedule.schedule_id, "schedule": schedule.to_wire()}

    @_answered
    async def read(self, body: Body) -> Reply:
        found = await self._selected(body)
        return {
            "code": "I0",
            "schedules": [s.to_wire() for s in found[:READ_SCHEDULE_LIMIT]],
            "truncated": len(found) > READ_SCHEDULE_LIMIT,
        }

    @_answered
    async def delete(self, body: Body) -> Reply:
        found = await self._selected(body)
        ids = [s.schedule_id for s in found]
        await self.schedules.delete(ids)
        return {"code": "I0", "deleted": ids}
