"""The GBCS codec benchmark: ``python -m bench.gbcs`` (one core, no broker).

1. Non-critical read (4.1.1, ECS17b): build the command and the ACB's General Ciphering MAC,
   over an estate of ``--devices`` meters, with the shared-secret (Z) cache warm (the steady
   state: static-static ECDH gives one Z per device) and cold (the cache cleared before every
   build, so each one pays its ECDH).
2. Critical command (7.1, ECS42): build the Pre-Command (CV 4), then for the User's Signed
   Pre-Command (CV 5) check it against the Pre-Command, verify the User's ECDSA signature and
   wrap it with the ACB MAC (Z cache warm). The User's signing is the User's work and is done
   before timing.
3. Decoding the reference corpus (reference/gbcs/rtds): every frame, plus its DLMS payload where
   it is one; skipped when the reference data is absent.

Each figure is the median of ``--runs`` runs (timings swing between runs on these machines).
Writes bench/results/gbcs.json and prints the same as a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import crypto
from dccsim.gbcs.commands import CommandContext, command_payload
from dccsim.gbcs.critical import build_pre_command, command_from_signed_pre_command
from dccsim.gbcs.dlms import decode_apdu
from dccsim.gbcs.frames import GeneralCiphering, decode_message, parse_hex_or_base64
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_ecs17b_command

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_NON_CRITICAL_PER_S = 5_000
USER = bytes.fromhex("90B3D51F30010000")
DLMS_TAGS = (0xD9, 0xDA, 0x0F)
_DEFAULT_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _device_eui(i: int) -> bytes:
    return bytes.fromhex("00DB123456780000")[:6] + i.to_bytes(2, "big")


def _rate(n: int, run: Callable[[int], None]) -> float:
    start = time.perf_counter()
    run(n)
    return n / (time.perf_counter() - start)


def _median_rate(runs: int, n: int, run: Callable[[int], None]) -> float:
    run(max(n // 10, 1))  # warm up (imports, caches of the interpreter)
    return statistics.median(_rate(n, run) for _ in range(runs))


class Estate:
    """The ACB's KA key and ``devices`` ESMEs' KA public keys."""

    def __init__(self, devices: int) -> None:
        self.acb = _key()
        self.devices = [(_device_eui(i), _key().public_key()) for i in range(devices)]

    def warm(self) -> None:
        """One Z per device in the cache, as a long-running transform service holds them."""
        crypto.SHARED_SECRETS.clear()
        for _eui, public in self.devices:
            crypto.shared_secret(self.acb, public)

    def non_critical(self, *, cold: bool) -> Callable[[int], None]:
        acb, devices = self.acb, self.devices

        def run(n: int) -> None:
            for i in range(n):
                eui, public = devices[i % len(devices)]
                if cold:
                    crypto.SHARED_SECRETS.clear()
                build_ecs17b_command(
                    originator_title=USER,
                    device_title=eui,
                    counter=1_000 + i,
                    acb_ka_private=acb,
                    device_ka_public=public,
                )

        return run

    def critical(self, n: int) -> Callable[[int], None]:
        """Pre-Command build, then Signed Pre-Command check, signature verification, wrap."""
        user = _key()
        user_public = user.public_key()
        use_case = USE_CASES_BY_NAME["ECS42"]
        signed: list[bytes] = []
        for i in range(n):
            eui, _ = self.devices[i % len(self.devices)]
            payload = command_payload("ECS42", CommandContext(i, USER, eui))
            pre = build_pre_command(
                use_case, originator_title=USER, device_title=eui, counter=i, payload=payload
            )
            signed.append(pre + b"\x40" + crypto.ecdsa_sign_raw(user, pre[1:]))
        acb, devices = self.acb, self.devices

        def run(count: int) -> None:
            for i in range(count):
                eui, public = devices[i % len(devices)]
                counter = i % n
                pre = build_pre_command(
                    use_case,
                    originator_title=USER,
                    device_title=eui,
                    counter=counter,
                    payload=command_payload("ECS42", CommandContext(counter, USER, eui)),
                )
                command_from_signed_pre_command(
                    signed[counter],
                    pre_command=pre,
                    user_ds_public=user_public,
                    acb_ka_private=acb,
                    device_ka_public=public,
                )

        return run


def _reference_root() -> Path:
    return Path(os.environ.get("DCCSIM_REFERENCE", _DEFAULT_REFERENCE))


def decode_corpus(runs: int) -> dict[str, Any] | None:
    """Time decoding every RTDS vector (frame and DLMS payload); None without the data."""
    rtds = _reference_root() / "gbcs" / "rtds"
    if not rtds.is_dir():
        return None
    corpus = [parse_hex_or_base64(p.read_text()) for p in sorted(rtds.rglob("*.HEX"))]
    payloads = 0

    def once() -> float:
        nonlocal payloads
        payloads = 0
        start = time.perf_counter()
        for data in corpus:
            message = decode_message(data)
            frame = message.general_signing if isinstance(message, GeneralCiphering) else message
            if frame.payload[:1] and frame.payload[0] in DLMS_TAGS:
                decode_apdu(frame.payload)
                payloads += 1
        return time.perf_counter() - start

    once()
    seconds = statistics.median(once() for _ in range(runs))
    return {
        "frames": len(corpus),
        "dlms_payloads": payloads,
        "bytes": sum(len(d) for d in corpus),
        "seconds": seconds,
        "frames_per_s": len(corpus) / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gbcs", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("-n", type=int, default=5_000, help="transformations per run")
    parser.add_argument("--devices", type=int, default=1_000, help="ESMEs in the estate")
    parser.add_argument("--out", type=Path, default=RESULTS / "gbcs.json")
    args = parser.parse_args(argv)

    estate = Estate(args.devices)
    estate.warm()
    warm = _median_rate(args.runs, args.n, estate.non_critical(cold=False))
    cold = _median_rate(args.runs, max(args.n // 5, 1), estate.non_critical(cold=True))
    estate.warm()
    critical_n = max(args.n // 5, 1)
    critical = _median_rate(args.runs, critical_n, estate.critical(critical_n))
    corpus = decode_corpus(args.runs)

    results: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "runs": args.runs,
        "devices": args.devices,
        "non_critical_read_per_s": {"ECS17b_warm_z_cache": warm, "ECS17b_cold_z_cache": cold},
        "critical_command_per_s": {"ECS42_pre_command_verify_wrap": critical},
        "target_non_critical_per_s": TARGET_NON_CRITICAL_PER_S,
        "target_met": warm >= TARGET_NON_CRITICAL_PER_S,
        "reference_corpus_decode": corpus,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")

    rows = [
        ("non-critical read ECS17b, Z cache warm", f"{warm:,.0f} /s"),
        ("non-critical read ECS17b, Z cache cold", f"{cold:,.0f} /s"),
        ("critical ECS42: pre-command + verify + wrap", f"{critical:,.0f} /s"),
        (
            f"target {TARGET_NON_CRITICAL_PER_S:,}/s/core (warm)",
            "met" if results["target_met"] else "NOT met",
        ),
    ]
    if corpus is not None:
        rows.append(
            (
                f"decode reference corpus ({corpus['frames']} frames, "
                f"{corpus['dlms_payloads']} DLMS payloads)",
                f"{corpus['seconds'] * 1e3:,.1f} ms ({corpus['frames_per_s']:,.0f} frames/s)",
            )
        )
    else:
        rows.append(("decode reference corpus", "skipped: no reference data"))
    width = max(len(label) for label, _ in rows)
    print(f"GBCS, one core, median of {args.runs} runs")
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>14}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
