"""The test-PKI benchmark: ``python -m bench.pki`` (``make bench``).

Runs dccsim.pki.bench.run (one core: P-256 key generation, device certificate issuance with and
without key generation, whole devices into an on-disk key store; each the median of ``--runs``
runs) and checks the issue's target, at least 2,000 device certificates per second per core.
Writes bench/results/pki.json and prints the same as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from dccsim.pki.bench import run

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_DEVICE_CERTS_PER_S = 2000.0

_ROWS = (
    ("device_certs_per_s", "device certificates/s (key ready)"),
    ("device_cert_us", "µs per device certificate"),
    ("device_certs_with_keygen_per_s", "device certificates/s (with keygen)"),
    ("keygen_per_s", "P-256 key pairs/s"),
    ("devices_to_keystore_per_s", "devices (DS+KA) into key store/s"),
)


def measure(n: int, runs: int) -> dict[str, Any]:
    """The figures of dccsim.pki.bench.run(n, repeats=runs), rounded, with target and run data."""
    figures = run(n, repeats=runs)
    rate = figures["device_certs_per_s"]
    return {
        **{key: round(value, 1) for key, value in figures.items() if key != "n"},
        "target": {
            "device_certs_per_s_min": TARGET_DEVICE_CERTS_PER_S,
            "met": rate >= TARGET_DEVICE_CERTS_PER_S,
        },
        "run": {
            "n": n,
            "runs": runs,
            "statistic": "median of runs",
            "cores": 1,
            "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}"
            f", {os.cpu_count()} CPUs",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="operations per run")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median reported)")
    args = parser.parse_args(argv)
    result = measure(args.n, args.runs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "pki.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'metric':<40}{'value':>12}")
    for key, label in _ROWS:
        print(f"{label:<40}{result[key]:>12}")
    verdict = "met" if result["target"]["met"] else "NOT MET"
    print(
        f"(target ≥{TARGET_DEVICE_CERTS_PER_S:.0f} device certificates/s per core: {verdict}; "
        f"median of {args.runs} runs of {args.n}; written to {out})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
