"""Roll-out reporting (the SEC consultation of January 2015, chapter 7): per Supplier and year,
the Relevant Electricity Meters and Relevant Gas Meters it installed, against its annual
milestone with a tolerance.

A Relevant Meter is a smart meter (an ESME or GSME first commissioned in the year) or a meter
installed under an exception to the roll-out obligation: an advanced meter, a current
transformer (CT) meter or a large gas meter — in the inventory, a meter whose ``exception`` is
``"advanced"``, ``"ct"`` or ``"large-gas"``. The fuel comes from the device type (ESME
electricity, GSME gas). A meter counts for the Supplier registered for its MPxN (Import
Supplier, Gas Supplier) when it was commissioned, in the calendar year (UK time) it was.

Status against the milestone: ``met`` (installed >= milestone), ``within-tolerance`` (installed
>= milestone x (1 - tolerance)), ``below``, or ``no-milestone``. The tolerance is the
milestone's own or the default (setting ``inventory_rollout_tolerance``).

RPC methods (routing key ``rpc.inventory``); replies carry ``code`` ``"I0"``, or
``"invalid"`` with ``reason``:

``rollout.milestone.set``  {supplier, year, electricity, gas, [tolerance]}
    -> {code: "I0", milestone: {supplier, year, electricity, gas, tolerance}}
``rollout.report``  {year, [supplier]}
    -> {code: "I0", year, suppliers: [{supplier, year,
        electricity: fuel, gas: fuel}]} where fuel = {smart, advanced, ct, large_gas, total,
        milestone, tolerance, threshold, status}; ``milestone`` / ``threshold`` null without a
        milestone. Suppliers with an installation or a milestone in the year, by EUI.

CSV (``to_csv``): one row per Supplier and fuel, columns ``CSV_COLUMNS``.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from dccsim.smi import DeviceType
from services.inventory.store import RolloutMilestone, SmartMeteringInventory

UK = ZoneInfo("Europe/London")
DEFAULT_TOLERANCE = 0.05
# Exception values that make a meter Relevant; None or "" is a smart meter.
EXCEPTIONS = ("advanced", "ct", "large-gas")
CATEGORIES = ("smart", *EXCEPTIONS)
FUELS = {DeviceType.ESME.value: "electricity", DeviceType.GSME.value: "gas"}
CSV_COLUMNS = (
    "supplier",
    "year",
    "fuel",
    "smart",
    "advanced",
    "ct",
    "large_gas",
    "total",
    "milestone",
    "tolerance",
    "threshold",
    "status",
)

Body = dict[str, Any]
Reply = dict[str, Any]
Method = Callable[[Body], Awaitable[Reply]]


@dataclass
class FuelCount:
    """One Supplier's Relevant Meters of one fuel in one year, against its milestone."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    milestone: int | None = None
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def threshold(self) -> int | None:
        """The fewest installations within tolerance of the milestone."""
        if self.milestone is None:
            return None
        return math.ceil(self.milestone * (1 - self.tolerance) - 1e-9)

    @property
    def status(self) -> str:
        if self.milestone is None:
            return "no-milestone"
        if self.total >= self.milestone:
            return "met"
        assert self.threshold is not None
        return "within-tolerance" if self.total >= self.threshold else "below"

    def to_wire(self) -> dict[str, Any]:
        return {
            "smart": self.counts["smart"],
            "advanced": self.counts["advanced"],
            "ct": self.counts["ct"],
            "large_gas": self.counts["large-gas"],
            "total": self.total,
            "milestone": self.milestone,
            "tolerance": self.tolerance,
            "threshold": self.threshold,
            "status": self.status,
        }


@dataclass
class SupplierRollout:
    supplier: str
    year: int
    electricity: FuelCount
    gas: FuelCount

    def to_wire(self) -> dict[str, Any]:
        return {
            "supplier": self.supplier,
            "year": self.year,
            "electricity": self.electricity.to_wire(),
            "gas": self.gas.to_wire(),
        }


def year_bounds(year: int) -> tuple[datetime, datetime]:
    """The calendar year in UK time, as [start, end) instants in UTC (the database's zone)."""
    return (
        datetime(year, 1, 1, tzinfo=UK).astimezone(UTC),
        datetime(year + 1, 1, 1, tzinfo=UK).astimezone(UTC),
    )


def _category(exception: str | None) -> str:
    if not exception:
        return "smart"
    if exception not in EXCEPTIONS:
        raise ValueError(f"unknown roll-out exception {exception!r}")
    return exception


class RolloutReporting:
    """Milestones and the annual report, from the inventory's commissioned meters."""

    def __init__(
        self, inventory: SmartMeteringInventory, *, default_tolerance: float = DEFAULT_TOLERANCE
    ) -> None:
        self.inventory = inventory
        self.default_tolerance = default_tolerance

    async def set_milestone(
        self,
        supplier: str,
        year: int,
        *,
        electricity: int,
        gas: int,
        tolerance: float | None = None,
    ) -> RolloutMilestone:
        if electricity < 0 or gas < 0:
            raise ValueError("a milestone is not negative")
        if tolerance is not None and not 0 <= tolerance < 1:
            raise ValueError(f"a tolerance is a fraction in [0, 1), not {tolerance}")
        async with self.inventory.sessions.begin() as session:
            row = await session.get(RolloutMilestone, (supplier.upper(), year))
            if row is None:
                row = RolloutMilestone(supplier=supplier.upper(), year=year)
                session.add(row)
            row.electricity, row.gas, row.tolerance = electricity, gas, tolerance
        return row

    async def report(self, year: int, *, supplier: str | None = None) -> list[SupplierRollout]:
        """Every Supplier with an installation or a milestone in ``year`` (or just one)."""
        start, end = year_bounds(year)
        installed = await self.inventory.installed_meters(start=start, end=end)
        async with self.inventory.sessions() as session:
            query = select(RolloutMilestone).where(RolloutMilestone.year == year)
            milestones = {m.supplier: m for m in (await session.scalars(query)).all()}
        rows: dict[str, SupplierRollout] = {}

        def row_for(eui: str) -> SupplierRollout:
            if eui not in rows:
                m = milestones.get(eui)
                tolerance = self.default_tolerance
                if m is not None and m.tolerance is not None:
                    tolerance = m.tolerance
                rows[eui] = SupplierRollout(
                    eui,
                    year,
                    FuelCount(milestone=m.electricity if m else None, tolerance=tolerance),
                    FuelCount(milestone=m.gas if m else None, tolerance=tolerance),
                )
            return rows[eui]

        for device_type, eui, exception, _at in installed:
            entry = row_for(eui.upper())
            fuel = entry.electricity if FUELS[device_type] == "electricity" else entry.gas
            fuel.counts[_category(exception)] += 1
        for eui in milestones:
            row_for(eui)
        wanted = supplier.upper() if supplier else None
        return [rows[k] for k in sorted(rows) if wanted is None or k == wanted]


def to_csv(report: Iterable[SupplierRollout]) -> str:
    """The report as CSV text, one row per Supplier and fuel."""
    return csv_from_wire(entry.to_wire() for entry in report)


def csv_from_wire(suppliers: Iterable[Mapping[str, Any]]) -> str:
    """CSV text from the ``suppliers`` of a ``rollout.report`` reply."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in suppliers:
        for fuel_name in ("electricity", "gas"):
            fuel = entry[fuel_name]
            cells = [fuel[c] for c in CSV_COLUMNS[3:]]
            writer.writerow(
                [
                    entry["supplier"],
                    entry["year"],
                    fuel_name,
                    *("" if c is None else c for c in cells),
                ]
            )
    return out.getvalue()


def _answered(method: Callable[..., Awaitable[Reply]]) -> Callable[..., Awaitable[Reply]]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Reply:
        try:
            return await method(*args, **kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            return {"code": "invalid", "reason": what}

    return wrapper


class RolloutRequests:
    """The ``rollout.*`` RPC methods, by name (``methods()``)."""

    def __init__(self, reporting: RolloutReporting) -> None:
        self.reporting = reporting

    def methods(self) -> dict[str, Method]:
        return {"rollout.milestone.set": self.set_milestone, "rollout.report": self.report}

    @_answered
    async def set_milestone(self, body: Body) -> Reply:
        tolerance = body.get("tolerance")
        row = await self.reporting.set_milestone(
            str(body["supplier"]),
            int(body["year"]),
            electricity=int(body["electricity"]),
            gas=int(body["gas"]),
            tolerance=float(tolerance) if tolerance is not None else None,
        )
        return {
            "code": "I0",
            "milestone": {
                "supplier": row.supplier,
                "year": row.year,
                "electricity": row.electricity,
                "gas": row.gas,
                "tolerance": row.tolerance,
            },
        }

    @_answered
    async def report(self, body: Body) -> Reply:
        year = int(body["year"])
        supplier = body.get("supplier")
        entries = await self.reporting.report(year, supplier=str(supplier) if supplier else None)
        return {"code": "I0", "year": year, "suppliers": [e.to_wire() for e in entries]}
