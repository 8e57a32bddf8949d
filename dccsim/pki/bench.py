"""How fast the test PKI issues device credentials: ``python -m dccsim.pki.bench [n]``.

run(n) times, on one core, n of each: P-256 key generation; device certificate issuance alone
(keys made beforehand, which is the figure the ≥2,000/s target is about); both together; and
whole devices through issue_devices (DS + KA keys and certificates into a key store on disk).
Each figure is the median of ``repeats`` runs, since timings here swing between identical runs.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.pki.devpki import SMKI_NOT_BEFORE, init_pki, issue_devices
from dccsim.pki.smki import CertificateAuthority, KeyUsage, issue_device_certificate


def _rate(count: int, work: Callable[[], object], repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def run(n: int = 2000, *, repeats: int = 3, directory: Path | None = None) -> dict[str, float]:
    """Per-second rates (medians of repeats runs of n operations each):

    - ``keygen_per_s``: ec.generate_private_key(P-256)
    - ``device_certs_per_s``: issue_device_certificate with the public key ready
    - ``device_certs_with_keygen_per_s``: a fresh key and its certificate
    - ``devices_to_keystore_per_s``: issue_devices, DS + KA each, stored on disk (n//2 each run)
    - ``device_cert_us``: 1e6 / device_certs_per_s

    The key-store figure is bound by the disk (4 files per device): it runs in a temporary
    directory under directory (default: the system temp dir), and swings with I/O load.
    """
    root = CertificateAuthority.create_root()
    ca = CertificateAuthority.create_issuing(root, common_name="bench DCA", role=None)
    public_keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(n)]
    euis = [(0x00DB_1200_0000_0000 + i).to_bytes(8, "big") for i in range(n)]

    def keygen() -> None:
        for _ in range(n):
            ec.generate_private_key(ec.SECP256R1())

    def certs() -> None:
        for eui, public_key in zip(euis, public_keys, strict=True):
            issue_device_certificate(
                ca, eui=eui, usage=KeyUsage.DS, public_key=public_key, not_before=SMKI_NOT_BEFORE
            )

    def certs_with_keygen() -> None:
        for eui in euis:
            key = ec.generate_private_key(ec.SECP256R1())
            issue_device_certificate(
                ca,
                eui=eui,
                usage=KeyUsage.DS,
                public_key=key.public_key(),
                not_before=SMKI_NOT_BEFORE,
            )

    # Whole devices: the init is outside the timing, each run gets a fresh, empty key store.
    devices = max(1, n // 2)
    elapsed: list[float] = []
    with tempfile.TemporaryDirectory(prefix="dccsim-pki-bench-", dir=directory) as scratch:
        for index in range(repeats):
            home = Path(scratch) / f"run{index}"
            init_pki(home)
            start = time.perf_counter()
            issue_devices(home, euis[:devices])
            elapsed.append(time.perf_counter() - start)
    keystore_rate = devices / statistics.median(elapsed)

    cert_rate = _rate(n, certs, repeats)
    return {
        "n": float(n),
        "keygen_per_s": _rate(n, keygen, repeats),
        "device_certs_per_s": cert_rate,
        "device_cert_us": 1e6 / cert_rate,
        "device_certs_with_keygen_per_s": _rate(n, certs_with_keygen, repeats),
        "devices_to_keystore_per_s": keystore_rate,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(run(int(args[0]) if args else 2000), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
