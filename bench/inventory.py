"""The inventory benchmark: ``python -m bench.inventory`` (``make bench``).

1. Eligibility on the hot path: the User Gateway's ``DeviceCache`` (warm, filled from a seeded
   inventory) plus ``check_eligibility``, per request, for random devices and Users:
   ``eligibility_p50_us`` / ``eligibility_p99_us`` (target: p99 under 1 ms). The cold path
   (``SmartMeteringInventory.device``, what a cache miss costs before the RPC hop) for scale.
2. Estate seeding on SQLite: ``dccsim estate seed``'s ``seed_estate`` for ``--premises``
   (default 100,000; target under 60 s) and the estate file for the gateway.
3. Device certificates for ``--cert-devices`` devices (``issue_devices``), extrapolated to the
   estate: that step is optional in ``dccsim estate seed`` (``--certificates``).

Timed phases run ``--runs`` times and report the median. Writes bench/results/inventory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from dccsim import estate
from dccsim.duis.catalogue import UserRole, lookup
from dccsim.duis.requestid import parse_eui
from dccsim.estate import device_eui
from dccsim.seed import supplier_eui
from dccsim.smi import check_eligibility
from services.inventory.seed import estate_premises, seed_estate
from services.inventory.store import SmartMeteringInventory
from services.user_gateway.checks import DeviceCache

RESULTS = Path(__file__).resolve().parent / "results"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def eligibility(workdir: Path, premises: int, requests: int) -> dict[str, float]:
    inventory = SmartMeteringInventory(f"sqlite+aiosqlite:///{workdir / 'elig.db'}")
    await inventory.create_schema()
    await seed_estate(inventory, premises=premises, suppliers=4)

    async def fetch(eui: str, _rid: str) -> dict[str, Any] | None:
        record = await inventory.device(eui)
        return record.to_wire() if record else None

    cache = DeviceCache(fetch, ttl_s=3600)
    euis = [device_eui(n, 2) for n in range(1, premises + 1)]
    cold: list[float] = []
    for eui in euis:  # warm the cache; each miss is the inventory's own lookup cost
        start = time.perf_counter()
        await cache.get(eui, "bench")
        cold.append(time.perf_counter() - start)
    srv = lookup("4.1.1")
    assert srv is not None
    roles = frozenset({UserRole.IMPORT_SUPPLIER, UserRole.GAS_SUPPLIER})
    users = [supplier_eui(i) for i in range(4)]
    rng = random.Random(7)
    warm: list[float] = []
    outcomes: dict[str | None, int] = {}
    for _ in range(requests):
        eui, user = rng.choice(euis), rng.choice(users)
        start = time.perf_counter()
        device = await cache.get(eui, "bench")
        code = check_eligibility(srv, user_eui=user, user_roles=roles, device=device)
        warm.append(time.perf_counter() - start)
        outcomes[code] = outcomes.get(code, 0) + 1
    await inventory.close()
    return {
        "eligibility_p50_us": pct(warm, 0.5) * 1e6,
        "eligibility_p99_us": pct(warm, 0.99) * 1e6,
        "eligibility_max_us": max(warm) * 1e6,
        "cold_lookup_p50_ms": pct(cold, 0.5) * 1e3,
        "cold_lookup_p99_ms": pct(cold, 0.99) * 1e3,
        "accepted_share": outcomes.get(None, 0) / requests,
    }


async def seeding(workdir: Path, premises: int, run: int) -> dict[str, float]:
    path = workdir / f"seed{run}.db"
    inventory = SmartMeteringInventory(f"sqlite+aiosqlite:///{path}")
    start = time.perf_counter()
    await inventory.create_schema()
    report = await seed_estate(inventory, premises=premises)
    db_s = time.perf_counter() - start
    await inventory.close()
    start = time.perf_counter()
    estate.save(workdir, [estate_premises(n) for n in range(1, premises + 1)])
    file_s = time.perf_counter() - start
    return {
        "seed_db_s": db_s,
        "seed_estate_file_s": file_s,
        "seed_total_s": db_s + file_s,
        "seed_premises_per_s": premises / db_s,
        "seed_devices": float(report.devices),
    }


def certificates(workdir: Path, devices: int, estate_devices: int) -> dict[str, float]:
    from dccsim.pki.devpki import init_pki, issue_devices

    home = workdir / "pki-home"
    init_pki(home)
    euis = [parse_eui(device_eui(n // 5 + 1, n % 5)) for n in range(devices)]
    start = time.perf_counter()
    issue_devices(home, euis)
    elapsed = time.perf_counter() - start
    return {
        "cert_devices": float(devices),
        "cert_s": elapsed,
        "cert_devices_per_s": devices / elapsed,
        "cert_estate_estimate_s": estate_devices * elapsed / devices,
    }


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--premises", type=int, default=100_000, help="estate to seed")
    parser.add_argument("--cache-premises", type=int, default=10_000, help="devices in cache")
    parser.add_argument("--requests", type=int, default=200_000, help="eligibility checks")
    parser.add_argument("--cert-devices", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed-runs", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dccsim-bench-inv-") as tmp:
        work = Path(tmp)
        elig = []
        for i in range(args.runs):
            run_dir = work / f"elig{i}"
            run_dir.mkdir()
            elig.append(await eligibility(run_dir, args.cache_premises, args.requests))
        seeds = [await seeding(work, args.premises, i) for i in range(args.seed_runs)]
        certs = certificates(work, args.cert_devices, args.premises * 5)
    result: dict[str, Any] = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "params": vars(args),
        **median_of(elig),
        **median_of(seeds),
        **certs,
        "targets": {"eligibility_p99_us": 1000.0, "seed_total_s": 60.0},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "inventory.json").write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        if isinstance(value, float):
            print(f"{key:<{width}}  {value:,.3f}")


if __name__ == "__main__":
    asyncio.run(main())
