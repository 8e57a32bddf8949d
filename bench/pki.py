"""The test-PKI benchmark: ``python -m bench.pki`` (``make bench``).

Runs dccsim.pki.bench.run (one core: P-256 key generation, device certificate issuance with and
without key generation, whole devices into an on-disk key store; each the median of ``--runs``
runs) and checks the issue's target, at least 2,000 device certificates per second per core.
Then the estate path (dccsim.pki.devpki): device certificates from the DER template with their
fresh keys on one core (``template_credentials_per_s``, the median of ``--runs``), and
``issue_device_estate`` of ``--estate-devices`` devices into packs with one worker per CPU
(``estate_devices_per_s``, wall, and its CPU seconds per certificate).
Writes bench/results/pki.json and prints the same as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from dccsim.pki.bench import run
from dccsim.pki.devpki import (
    SMKI_NOT_BEFORE,
    DeviceCertificateTemplate,
    PkiLayout,
    init_pki,
    issue_device_estate,
)
from dccsim.pki.smki import CertificateAuthority, KeyUsage

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_DEVICE_CERTS_PER_S = 2000.0

_ROWS = (
    ("device_certs_per_s", "device certificates/s (key ready)"),
    ("device_cert_us", "µs per device certificate"),
    ("device_certs_with_keygen_per_s", "device certificates/s (with keygen)"),
    ("keygen_per_s", "P-256 key pairs/s"),
    ("devices_to_keystore_per_s", "devices (DS+KA) into key store/s"),
    ("template_credentials_per_s", "template certificates+keys/s (1 core)"),
    ("estate_devices_per_s", "estate devices (DS+KA) into packs/s"),
    ("estate_cpu_us_per_certificate", "estate CPU µs per certificate"),
)


def estate(n: int, devices: int, runs: int) -> dict[str, float]:
    """The estate path: template credentials on one core (median of runs of n), and
    issue_device_estate of devices devices (one run, a worker per CPU) in a temp home."""
    with tempfile.TemporaryDirectory(prefix="dccsim-pki-estate-") as scratch:
        home = Path(scratch)
        layout = init_pki(home)
        ca = CertificateAuthority.load(layout.smki_device_ca_cert, layout.smki_device_ca_key)
        template = DeviceCertificateTemplate(ca, SMKI_NOT_BEFORE)
        euis = [(0x00DB_1300_0000_0000 + i).to_bytes(8, "big") for i in range(max(n, devices))]
        rates = []
        for _ in range(runs):
            start = time.perf_counter()
            for eui in euis[:n]:
                template.credential(eui, KeyUsage.DS)
            rates.append(n / (time.perf_counter() - start))
        report = issue_device_estate(home, euis[:devices])
        assert PkiLayout.of(home).keystore().certificate(euis[0], KeyUsage.KA)
    return {
        "template_credentials_per_s": statistics.median(rates),
        "estate_devices": float(devices),
        "estate_s": report.seconds,
        "estate_cpu_s": report.cpu_seconds,
        "estate_devices_per_s": report.devices_per_second,
        "estate_cpu_us_per_certificate": report.cpu_seconds / report.issued * 1e6,
    }


def measure(n: int, runs: int, estate_devices: int = 20_000) -> dict[str, Any]:
    """The figures of dccsim.pki.bench.run(n, repeats=runs) and estate(), rounded, with target
    and run data."""
    figures = {**run(n, repeats=runs), **estate(n, estate_devices, runs)}
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
            "estate_workers": os.cpu_count(),
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "machine": f"{platform.node()} {platform.machine()} python {platform.python_version()}"
            f", {os.cpu_count()} CPUs",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="operations per run")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median reported)")
    parser.add_argument(
        "--estate-devices", type=int, default=20_000, help="devices for issue_device_estate"
    )
    args = parser.parse_args(argv)
    result = measure(args.n, args.runs, args.estate_devices)
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
