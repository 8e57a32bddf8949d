"""Roll-out reporting: Relevant Electricity and Gas Meters per Supplier and year, counting the
meters installed under the exceptions, against milestones with a tolerance — on SQLite and
PostgreSQL, and the CSV export from the CLI."""

from __future__ import annotations

import argparse
import csv
import io
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from dccsim.seed import supplier_eui
from dccsim.smi import DeviceType, StatusEvent
from services.inventory import cli
from services.inventory.rollout import CSV_COLUMNS, RolloutReporting, RolloutRequests, to_csv
from services.inventory.store import SmartMeteringInventory
from tests.unit.test_inventory_store import inventory, pg_database  # noqa: F401

S1, S2 = supplier_eui(0), supplier_eui(1)
_serial = iter(range(1, 10_000))


async def install(
    store: SmartMeteringInventory,
    supplier: str,
    device_type: DeviceType,
    at: str,
    exception: str | None = None,
) -> str:
    """A meter registered to ``supplier`` and first commissioned at ``at`` (ISO 8601, UTC)."""
    n = next(_serial)
    eui = f"00-DC-C7-00-00-00-{n // 256:02X}-{n % 256:02X}"
    mpxn = f"{n:013d}" if device_type is DeviceType.ESME else f"{n:010d}"
    when = datetime.fromisoformat(f"{at}+00:00")
    role = "IS" if device_type is DeviceType.ESME else "GS"
    await store.register(mpxn, role, supplier, effective=when - timedelta(days=30))
    await store.add_device(
        eui,
        device_type,
        StatusEvent.PRE_NOTIFICATION,
        reason="test",
        at=when - timedelta(days=1),
        mpxn=mpxn,
        exception=exception,
    )
    await store.transition(eui, StatusEvent.JOIN, reason="test", at=when)
    await store.transition(eui, StatusEvent.COMMISSION, reason="test", at=when)
    return mpxn


@pytest.fixture
async def estate(inventory: SmartMeteringInventory) -> RolloutReporting:  # noqa: F811
    """S1 in 2027: electricity 2 smart + 1 advanced + 1 CT, gas 1 smart + 2 large gas meters;
    S2: one smart ESME. Either side of 2027 one meter each that must not count."""
    for device_type, exception in [
        (DeviceType.ESME, None),
        (DeviceType.ESME, None),
        (DeviceType.ESME, "advanced"),
        (DeviceType.ESME, "ct"),
        (DeviceType.GSME, None),
        (DeviceType.GSME, "large-gas"),
        (DeviceType.GSME, "large-gas"),
    ]:
        await install(inventory, S1, device_type, "2027-06-15T10:00:00", exception)
    await install(inventory, S2, DeviceType.ESME, "2027-01-01T00:00:00")  # first instant
    await install(inventory, S1, DeviceType.ESME, "2026-12-31T23:59:59")  # the year before
    await install(inventory, S1, DeviceType.GSME, "2028-01-01T00:00:00", "large-gas")  # after
    return RolloutReporting(inventory, default_tolerance=0.1)


async def test_report_counts_smart_meters_and_exceptions_by_fuel(
    estate: RolloutReporting,
) -> None:
    s1, s2 = await estate.report(2027)
    assert s1.supplier == S1 and s2.supplier == S2
    assert s1.electricity.to_wire() == {
        "smart": 2,
        "advanced": 1,
        "ct": 1,
        "large_gas": 0,
        "total": 4,
        "milestone": None,
        "tolerance": 0.1,
        "threshold": None,
        "status": "no-milestone",
    }
    assert (s1.gas.counts["smart"], s1.gas.counts["large-gas"], s1.gas.total) == (1, 2, 3)
    assert (s2.electricity.total, s2.gas.total) == (1, 0)


async def test_year_bounds_exclude_the_neighbouring_years(estate: RolloutReporting) -> None:
    [s1_2026] = await estate.report(2026)
    assert (s1_2026.supplier, s1_2026.electricity.total, s1_2026.gas.total) == (S1, 1, 0)
    [s1_2028] = await estate.report(2028)
    assert s1_2028.gas.counts["large-gas"] == 1


async def test_meter_counts_for_the_supplier_registered_when_it_was_installed(
    inventory: SmartMeteringInventory,  # noqa: F811
) -> None:
    mpxn = await install(inventory, S1, DeviceType.ESME, "2027-03-01T09:00:00")
    await inventory.register(mpxn, "IS", S2, effective=datetime.fromisoformat("2027-05-01+00:00"))
    [entry] = await RolloutReporting(inventory).report(2027)
    assert (entry.supplier, entry.electricity.total) == (S1, 1)


@pytest.mark.parametrize(
    ("electricity", "tolerance", "status", "threshold"),
    [
        (4, None, "met", 4),  # 4 installed, milestone 4
        (3, None, "met", 3),
        (5, None, "below", 5),  # 4 of 5 at 10%: the threshold is ceil(4.5) = 5
        (4, 0.0, "met", 4),
        (5, 0.2, "within-tolerance", 4),
        (6, 0.2, "below", 5),
        (10, None, "below", 9),
    ],
)
async def test_status_against_milestone_and_tolerance(
    estate: RolloutReporting,
    electricity: int,
    tolerance: float | None,
    status: str,
    threshold: int,
) -> None:
    await estate.set_milestone(S1, 2027, electricity=electricity, gas=3, tolerance=tolerance)
    [s1] = await estate.report(2027, supplier=S1)
    assert (s1.electricity.status, s1.electricity.threshold) == (status, threshold)
    assert s1.gas.status == "met"


async def test_supplier_with_a_milestone_and_no_installations_is_reported(
    estate: RolloutReporting,
) -> None:
    s3 = supplier_eui(2)
    await estate.set_milestone(s3, 2027, electricity=100, gas=50)
    [entry] = await estate.report(2027, supplier=s3)
    assert (entry.electricity.total, entry.electricity.status, entry.gas.status) == (
        0,
        "below",
        "below",
    )


async def test_csv_has_one_row_per_supplier_and_fuel(estate: RolloutReporting) -> None:
    await estate.set_milestone(S1, 2027, electricity=4, gas=4, tolerance=0.25)
    rows = list(csv.DictReader(io.StringIO(to_csv(await estate.report(2027)))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["supplier"], r["fuel"], r["total"], r["status"]) for r in rows] == [
        (S1, "electricity", "4", "met"),
        (S1, "gas", "3", "within-tolerance"),
        (S2, "electricity", "1", "no-milestone"),
        (S2, "gas", "0", "no-milestone"),
    ]
    assert (rows[0]["advanced"], rows[0]["ct"], rows[1]["large_gas"]) == ("1", "1", "2")
    assert rows[2]["milestone"] == "" and rows[1]["threshold"] == "3"


async def test_rpc_report_and_milestone(estate: RolloutReporting) -> None:
    rpc = RolloutRequests(estate).methods()
    set_reply = await rpc["rollout.milestone.set"](
        {"supplier": S2.lower(), "year": 2027, "electricity": 1, "gas": 0, "tolerance": 0.05}
    )
    assert set_reply["milestone"]["supplier"] == S2
    reply = await rpc["rollout.report"]({"year": 2027, "supplier": S2})
    assert reply["code"] == "I0"
    [entry] = reply["suppliers"]
    assert entry["electricity"]["status"] == "met" and entry["gas"]["status"] == "met"
    assert (await rpc["rollout.report"]({}))["code"] == "invalid"


def test_cli_writes_the_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCCSIM_HOME", str(tmp_path))
    milestone = argparse.Namespace(supplier=S1, year=2027, electricity=10, gas=5, tolerance=None)
    assert cli.cmd_rollout_milestone(milestone) == 0
    out = tmp_path / "rollout-2027.csv"
    report = argparse.Namespace(year=2027, supplier=None, csv=str(out))
    assert cli.cmd_rollout_report(report) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["fuel"], r["milestone"], r["status"]) for r in rows] == [
        ("electricity", "10", "below"),
        ("gas", "5", "below"),
    ]
