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
fall-back hour) runs once, at its first occurrence. ``due_runs`` is the pure rule; the service
asks it each minute.

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
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select

from dccsim.duis.catalogue import UserRole, lookup
from dccsim.duis.codes import DuisError
from dccsim.smi import check_eligibility
from services.inventory.store import DspScheduleRow, SmartMeteringInventory, _aware, utcnow

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


async def run_scheduler(
    schedules: DspSchedules,
    on_due: DueCallback,
    *,
    stopping: asyncio.Event,
    interval: float = 60.0,
    clock: Callable[[], datetime] = utcnow,
) -> None:
    """Every ``interval`` seconds until ``stopping``, hand each run due since the previous tick
    to ``on_due(schedule, run_at)``. Runs that fell due while the service was down are not
    caught up (the first window opens when this starts)."""
    since = clock()
    while not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), interval)
        except TimeoutError:
            pass
        until = clock()
        active = {
            s.schedule_id: s for s in await schedules.active(since.date() - timedelta(days=1))
        }
        for schedule_id, at in due_runs(active.values(), since, until):
            await on_due(active[schedule_id], at)
        since = until


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

    def __init__(self, schedules: DspSchedules) -> None:
        self.schedules = schedules

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
            request=dict(body.get("request") or {}),
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
