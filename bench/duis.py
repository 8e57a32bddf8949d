"""DUIS benchmark: ``python -m bench.duis`` (part of ``make bench``).

On one core, medians of several runs: signed 4.1.1 requests parsed safely and their XML
signatures verified per second (the User Gateway's per-request XML work; target at least 2,000
per second per core), DSP-signed responses built per second, and the two separately. Writes
bench/results/duis.json and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.duis import xmldsig
from dccsim.duis.requestid import DCC_EUI, RequestId
from dccsim.duis.xml import build_response, parse_service_request, to_bytes
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage
from dccsim.seed import seed_demo
from dccsim.testuser import TestUser

RESULTS = Path(__file__).resolve().parent / "results"


def _rate(n: int, work: Any, runs: int) -> float:
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        for i in range(n):
            work(i)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="dccsim-bench-duis-"))
    result = seed_demo(home, premises=1)
    user = TestUser.load(result.supplier_bundle)
    device = "00-DC-C5-00-00-00-01-02"
    documents = [user.service_request("4.1.1", device)[1] for _ in range(args.n)]
    cert = user.xml_cert

    def find(serial: int) -> Any:
        return cert if serial == cert.serial_number else None

    def parse_and_verify(i: int) -> None:
        request = parse_service_request(documents[i])
        xmldsig.verify(request.root, find_certificate=find)

    def parse_only(i: int) -> None:
        parse_service_request(documents[i])

    store = KeyStore(home / "pki" / "keystore")
    dsp = store.get(DCC_EUI, KeyUsage.XML_SIGN)
    assert isinstance(dsp.private_key, ec.EllipticCurvePrivateKey)
    rid = RequestId.parse(f"{user.eui}:{device}:1")
    payload = bytes(200)
    now = dt.datetime.now(dt.UTC)

    def build_and_sign(_: int) -> None:
        root = build_response(
            request_id=rid,
            response_id=rid.response_id(),
            response_code="I0",
            response_datetime=now,
            service_reference="4.1",
            service_reference_variant="4.1.1",
            gbcs_payload=payload,
        )
        to_bytes(xmldsig.sign(root, private_key=dsp.private_key, certificate=dsp.certificate))

    verified = _rate(args.n, parse_and_verify, args.runs)
    out = {
        "verified_requests_per_s_per_core": round(verified, 1),
        "parse_only_per_s": round(_rate(args.n, parse_only, args.runs), 1),
        "signed_responses_per_s_per_core": round(_rate(args.n, build_and_sign, args.runs), 1),
        "target": {"verified_requests_per_s_per_core_min": 2000, "met": verified >= 2000},
        "run": {
            "n": args.n,
            "runs": args.runs,
            "statistic": "median of runs",
            "cores": 1,
            "machine": f"{platform.machine()} python {platform.python_version()}",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "duis.json").write_text(json.dumps(out, indent=2) + "\n")
    for key in (
        "verified_requests_per_s_per_core",
        "parse_only_per_s",
        "signed_responses_per_s_per_core",
    ):
        print(f"{key:<36}{out[key]:>12}")
    print(f"(written to {RESULTS / 'duis.json'})")


if __name__ == "__main__":
    main()
