"""The estate-at-scale benchmark: ``python -m bench.estate`` (``make bench``).

1. Writes an estate of ``--premises`` premises (CHF, GPF, ESME, GSME, IHD each) to a scratch
   ``DCCSIM_HOME`` and issues device credentials for ``--keyed`` ESMEs only (issuing all of a
   full estate's would take the PKI ~10 minutes; the gateway reads a device's keys only on its
   first command, so the figures below do not depend on how many are issued).
2. In a fresh child process (so its RSS is the gateway's alone): builds the gateway's estate and
   network model (``startup_s``), then drives ``--commands`` real ECS17b commands through
   ``GatewayServer.execute`` (MAC check, anti-replay, encrypted registers) from ``--concurrency``
   tasks over the keyed ESMEs, with the ``fast`` profile's latency switched off so the figure is
   CPU: ``commands_per_s_per_core`` = commands / process CPU seconds. ``rss_bytes`` is the
   child's peak RSS (VmHWM) over start-up and the load.
3. Median of ``--runs`` child runs; writes bench/results/estate.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_PREMISES = 100_000
TARGET_RSS_BYTES = int(1.5 * 2**30)
TARGET_STARTUP_S = 60.0


def _peak_rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def prepare(home: Path, premises: int, keyed: int) -> list[str]:
    """The scratch installation: PKI, demo Supplier, estate file, keys for ``keyed`` ESMEs."""
    from dccsim import estate
    from dccsim.duis.requestid import parse_eui
    from dccsim.pki.devpki import issue_devices
    from dccsim.seed import seed_demo
    from services.inventory.seed import estate_premises

    seed_demo(home, premises=1)
    estate.save(home, [estate_premises(n) for n in range(1, premises + 1)])
    step = max(1, premises // keyed)
    esmes = [estate.device_eui(n, 2) for n in range(1, premises + 1, step)][:keyed]
    issue_devices(home, [parse_eui(e) for e in esmes])
    return esmes


async def _drive(home: Path, esmes: list[str], commands: int, concurrency: int) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec

    from dccsim.config import GatewaySettings
    from dccsim.duis.requestid import DCC_EUI, parse_eui
    from dccsim.gbcs.usecases import build_ecs17b_command
    from dccsim.pki.keystore import KeyStore
    from dccsim.pki.smki import KeyUsage
    from dccsim.seed import DEMO_SUPPLIER_EUI
    from gateway.network import LatencyProfile
    from gateway.server import build_server

    wall = time.perf_counter()
    server = build_server(GatewaySettings(home=home))
    startup_s = time.perf_counter() - wall
    rss_started = _peak_rss()

    store = KeyStore(home / "pki" / "keystore")
    acb = store.private_key(DCC_EUI, KeyUsage.KA)
    assert isinstance(acb, ec.EllipticCurvePrivateKey)
    supplier = parse_eui(DEMO_SUPPLIER_EUI)
    frames: list[tuple[str, bytes]] = []
    # Counters above any an earlier run used: the gateway keeps the devices' anti-replay
    # counters in its state file, so a run that reused them would time refusals, not reads.
    base = time.time_ns() // 1000
    for i in range(commands):  # built before the clock starts: this is the DCC side's work
        eui = esmes[i % len(esmes)]
        ka = store.certificate(parse_eui(eui), KeyUsage.KA).public_key()
        assert isinstance(ka, ec.EllipticCurvePublicKey)
        frame = build_ecs17b_command(
            originator_title=supplier,
            device_title=parse_eui(eui),
            counter=base + i,
            acb_ka_private=acb,
            device_ka_public=ka,
        )
        frames.append((eui, frame))
    for conditions in server.network.regions.values():
        conditions.profile = LatencyProfile.FAST
    import gateway.network as network

    network.FAST_RANGE_S = (0.0, 0.0)  # CPU only: no emulated latency

    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in frames:
        queue.put_nowait(item)
    outcomes: dict[str, int] = {}

    async def worker() -> None:
        while not queue.empty():
            eui, frame = queue.get_nowait()
            reply = await server.execute({"device": eui, "frame": frame, "deadline_s": 25.0})
            kind = "lost" if reply is None else str(reply.get("t"))
            outcomes[kind] = outcomes.get(kind, 0) + 1

    cpu = time.process_time()
    wall = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu_s = time.process_time() - cpu
    wall_s = time.perf_counter() - wall
    return {
        "premises": server.index.premises_count,
        "devices": len(server.index),
        "startup_s": startup_s,
        "rss_after_startup_bytes": rss_started,
        "rss_bytes": _peak_rss(),
        "commands": commands,
        "outcomes": outcomes,
        "models_built": server.models.built,
        "commands_per_s_per_core": commands / cpu_s if cpu_s else 0.0,
        "commands_per_s_wall": commands / wall_s if wall_s else 0.0,
    }


def child(args: argparse.Namespace) -> None:
    esmes = json.loads(Path(args.esmes).read_text())
    result = asyncio.run(_drive(Path(args.home), esmes, args.commands, args.concurrency))
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--premises", type=int, default=TARGET_PREMISES)
    parser.add_argument("--keyed", type=int, default=500, help="ESMEs given credentials")
    parser.add_argument("--commands", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "estate.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--esmes", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="dccsim-bench-estate-") as scratch:
        home = Path(scratch)
        start = time.perf_counter()
        esmes = prepare(home, args.premises, args.keyed)
        prepare_s = time.perf_counter() - start
        esmes_file = home / "bench-esmes.json"
        esmes_file.write_text(json.dumps(esmes))
        runs = []
        for _ in range(args.runs):
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.estate",
                    "--child",
                    "--home",
                    str(home),
                    "--esmes",
                    str(esmes_file),
                    "--commands",
                    str(args.commands),
                    "--concurrency",
                    str(args.concurrency),
                ],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "DCCSIM_HOME": str(home)},
            )
            run = json.loads(out.stdout.strip().splitlines()[-1])
            if set(run.get("outcomes", {})) != {"rsp"}:
                raise SystemExit(f"the devices did not answer every command: {run['outcomes']}")
            runs.append(run)

    def median(key: str) -> float:
        return float(statistics.median(float(r[key]) for r in runs))

    result: dict[str, Any] = {
        "premises": runs[0]["premises"],
        "devices": runs[0]["devices"],
        "rss_bytes": int(median("rss_bytes")),
        "rss_after_startup_bytes": int(median("rss_after_startup_bytes")),
        "startup_s": round(median("startup_s"), 2),
        "commands_per_s_per_core": round(median("commands_per_s_per_core"), 1),
        "commands_per_s_wall": round(median("commands_per_s_wall"), 1),
        "commands_per_run": args.commands,
        "keyed_esmes": len(esmes),
        "prepare_s": round(prepare_s, 1),
        "target": {
            "premises_min": TARGET_PREMISES,
            "rss_bytes_max": TARGET_RSS_BYTES,
            "startup_s_max": TARGET_STARTUP_S,
        },
        "meets_target": runs[0]["premises"] >= TARGET_PREMISES
        and median("rss_bytes") <= TARGET_RSS_BYTES
        and median("startup_s") <= TARGET_STARTUP_S,
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for key in ("premises", "devices", "rss_bytes", "startup_s", "commands_per_s_per_core"):
        print(f"{key:>26}  {result[key]}")
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
