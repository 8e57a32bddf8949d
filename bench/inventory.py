"""The inventory benchmark: ``python -m bench.inventory`` (``make bench``).

1. Eligibility on the hot path: the User Gateway's ``DeviceCache`` (warm, filled from a seeded
   inventory) plus ``check_eligibility``, per request, for random devices and Users:
   ``eligibility_p50_us`` / ``eligibility_p99_us`` (target: p99 under 1 ms). The cold path
   (``SmartMeteringInventory.device``, what a cache miss costs before the RPC hop) for scale.
2. Estate seeding on SQLite: ``dccsim estate seed``'s ``seed_estate`` for ``--premises``
   (default 100,000; target under 60 s) and the estate file for the gateway.
3. The whole command with device credentials, as users run it: ``dccsim estate seed --premises
   N`` in a fresh ``DCCSIM_HOME`` under the temp dir (``--cert-premises``, default the same
   100,000 premises: 400,000 credential-bearing devices, 800,000 certificates), timed from the
   outside: ``seed_with_certificates_total_s`` (target under 60 s) and its CPU seconds (the
   command and its worker processes), with the command's own breakdown
   (``cert_s``, ``cert_cpu_s``: the credentials, which run beside the database seeding).

Timed phases run ``--runs`` times and report the median (the full seed ``--seed-runs`` times).
Timings on a machine shared with other work swing widely: the CPU seconds say what the work
costs. Writes bench/results/inventory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dccsim import estate
from dccsim.duis.catalogue import UserRole, lookup
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_CREDENTIALS_LINE = re.compile(
    r"device credentials \(DS \+ KA\): (\d+) devices, (\d+) issued, (\d+) already held, "
    r"in ([\d.]+) s \(([\d.]+) CPU s"
)


def seed_with_certificates(workdir: Path, premises: int, run: int) -> dict[str, float]:
    """``dccsim estate seed --premises N`` (certificates are its default) in a fresh home."""
    home = workdir / f"cert-home{run}"
    env = {**os.environ, "DCCSIM_HOME": str(home)}
    env.pop("DCCSIM_INVENTORY_DB_URL", None)
    env.pop("DCCSIM_CONFIG", None)
    command = [sys.executable, "-m", "dccsim", "estate", "seed", "--premises", str(premises)]
    cpu = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr or done.stdout}")
    match = _CREDENTIALS_LINE.search(done.stdout)
    if match is None:
        raise RuntimeError(f"no device credentials line in: {done.stdout}")
    devices, issued, held, cert_s, cert_cpu_s = match.groups()
    if int(issued) != 2 * int(devices) or int(held) != 0:
        raise RuntimeError(f"a fresh home should issue everything: {match.group(0)}")
    packs = home / "pki" / "keystore" / "packs"
    disk = sum(path.stat().st_size for path in packs.iterdir())
    shutil.rmtree(home)
    return {
        "seed_with_certificates_total_s": wall,
        "seed_with_certificates_cpu_s": cpu,
        "cert_devices": float(devices),
        "cert_certificates": float(issued),
        "cert_s": float(cert_s),
        "cert_cpu_s": float(cert_cpu_s),
        "cert_devices_per_s": int(devices) / float(cert_s),
        "cert_cpu_us_per_certificate": float(cert_cpu_s) / int(issued) * 1e6,
        "cert_pack_mib": disk / 2**20,
    }


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--premises", type=int, default=100_000, help="estate to seed")
    parser.add_argument("--cache-premises", type=int, default=10_000, help="devices in cache")
    parser.add_argument("--requests", type=int, default=200_000, help="eligibility checks")
    parser.add_argument(
        "--cert-premises",
        type=int,
        help="premises for the seed with certificates (default: --premises; 0 skips it)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed-runs", type=int, default=1)
    args = parser.parse_args()
    if args.cert_premises is None:
        args.cert_premises = args.premises
    with tempfile.TemporaryDirectory(prefix="dccsim-bench-inv-") as tmp:
        work = Path(tmp)
        elig = []
        for i in range(args.runs):
            run_dir = work / f"elig{i}"
            run_dir.mkdir()
            elig.append(await eligibility(run_dir, args.cache_premises, args.requests))
        seeds = [await seeding(work, args.premises, i) for i in range(args.seed_runs)]
        with_certs = [
            seed_with_certificates(work, args.cert_premises, i)
            for i in range(args.seed_runs if args.cert_premises else 0)
        ]
    load = os.getloadavg()
    result: dict[str, Any] = {
        "machine": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_after": [round(x, 2) for x in load],
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "params": vars(args),
        **median_of(elig),
        **median_of(seeds),
        **(median_of(with_certs) if with_certs else {}),
        "targets": {
            "eligibility_p99_us": 1000.0,
            "seed_total_s": 60.0,
            "seed_with_certificates_total_s": 60.0,
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "inventory.json").write_text(json.dumps(result, indent=2) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        if isinstance(value, float):
            print(f"{key:<{width}}  {value:,.3f}")


if __name__ == "__main__":
    asyncio.run(main())
