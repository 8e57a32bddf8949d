"""Revocation records and the CRLs published from them.

The register is a JSON-lines file, one line per revocation (serial, reason, when, and which
authority issued the certificate), appended under the PKI lock and read by anyone (the SMKI
Repository reports status from it). Each CA dccsim holds the key of publishes one CRL file (PEM)
listing every revocation of its certificates; a new CRL always has a later thisUpdate and a higher
cRLNumber than the one it replaces, which is what lets a TLS server add it to a live trust store
(OpenSSL prefers the CRL with the later thisUpdate, see dccki.CrlWatcher).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from dccsim.pki.files import PUBLIC_FILE_MODE, write_atomic
from dccsim.pki.smki import CertificateAuthority

CRL_LIFETIME = dt.timedelta(days=365)
"""nextUpdate - thisUpdate. OpenSSL refuses every peer once the CRL it holds has expired, so
``dccsim pki init`` republishes a CRL that has less than CRL_RENEW_BEFORE left."""
CRL_RENEW_BEFORE = dt.timedelta(days=180)

REASONS: tuple[str, ...] = tuple(
    reason.value for reason in x509.ReasonFlags if reason is not x509.ReasonFlags.remove_from_crl
)
"""RFC 5280 reason names (``keyCompromise``, ``superseded``...) ``--reason`` accepts."""


class RevocationError(ValueError):
    """A revocation that cannot be done or a register line that cannot be read."""


@dataclass(frozen=True)
class Revocation:
    """One revoked certificate."""

    serial: int
    reason: x509.ReasonFlags
    revoked_at: dt.datetime
    authority: str
    """The CA that issued it: dccsim's name for one of its own (``smki-oca``, ``dccki``...) or,
    for an imported certificate whose CA key dccsim does not hold, its issuer as RFC 4514."""
    kind: str
    """``smki`` or ``dccki``."""


def reason_from(text: str) -> x509.ReasonFlags:
    """An RFC 5280 reason from its name, case- and dash-insensitively (``key-compromise``)."""
    wanted = text.replace("-", "").replace("_", "").lower()
    for reason in x509.ReasonFlags:
        if reason.value.lower() == wanted and reason is not x509.ReasonFlags.remove_from_crl:
            return reason
    raise RevocationError(f"unknown revocation reason {text!r}: one of {', '.join(REASONS)}")


class RevocationRegister:
    """The revocations recorded at path (a JSON-lines file); re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._mutex = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._revoked: dict[int, Revocation] = {}

    def _load(self) -> dict[int, Revocation]:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return {}
        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._mutex:
            if stamp == self._stamp:
                return self._revoked
            revoked: dict[int, Revocation] = {}
            for raw in self.path.read_bytes().splitlines():
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                    revocation = Revocation(
                        serial=int(record["serial"], 16),
                        reason=x509.ReasonFlags(record["reason"]),
                        revoked_at=dt.datetime.fromisoformat(record["revoked_at"]),
                        authority=str(record["authority"]),
                        kind=str(record["kind"]),
                    )
                except (KeyError, TypeError, ValueError) as error:
                    raise RevocationError(f"{self.path}: bad line {raw!r}") from error
                revoked.setdefault(revocation.serial, revocation)  # the first revocation holds
            self._stamp, self._revoked = stamp, revoked
            return revoked

    def get(self, serial: int) -> Revocation | None:
        """The revocation of serial, or None when it is not revoked."""
        return self._load().get(serial)

    def __contains__(self, serial: int) -> bool:
        return serial in self._load()

    def all(self) -> list[Revocation]:
        return sorted(self._load().values(), key=lambda r: (r.revoked_at, r.serial))

    def of(self, authority: str) -> list[Revocation]:
        return [r for r in self.all() if r.authority == authority]

    def add(self, revocation: Revocation) -> None:
        """Append one line (callers hold the PKI lock, so lines never interleave)."""
        record = {
            "serial": format(revocation.serial, "x"),
            "reason": revocation.reason.value,
            "revoked_at": revocation.revoked_at.isoformat(),
            "authority": revocation.authority,
            "kind": revocation.kind,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
        finally:
            os.close(fd)


def load_crl(path: Path) -> x509.CertificateRevocationList | None:
    """The CRL at path (PEM or DER), or None when there is none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def build_crl(
    ca: CertificateAuthority,
    revocations: list[Revocation],
    *,
    previous: x509.CertificateRevocationList | None = None,
    now: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """A v2 CRL signed by ca listing revocations: authorityKeyIdentifier and cRLNumber (one more
    than previous's), thisUpdate now (or a second after previous's, whichever is later), nextUpdate
    CRL_LIFETIME later, each entry with its reasonCode (none for unspecified, per RFC 5280)."""
    this_update = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    number = 1
    if previous is not None:
        this_update = max(this_update, previous.last_update_utc + dt.timedelta(seconds=1))
        number = _crl_number(previous) + 1
    try:
        ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key.public_key())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(this_update)
        .next_update(this_update + CRL_LIFETIME)
        .add_extension(aki, critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for revocation in revocations:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(revocation.serial)
            .revocation_date(min(revocation.revoked_at, this_update))
        )
        if revocation.reason is not x509.ReasonFlags.unspecified:
            entry = entry.add_extension(x509.CRLReason(revocation.reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca.private_key, hashes.SHA256())


def publish_crl(
    path: Path, ca: CertificateAuthority, revocations: list[Revocation]
) -> x509.CertificateRevocationList:
    """Write a new CRL for ca listing revocations to path (PEM, atomically) and return it.

    Waits (under a second) when the CRL it replaces was published this same second: the new
    one's thisUpdate must be later, yet not in the future, for OpenSSL to prefer it (a CRL not
    yet valid loses to the old one, so the revocation would not take effect)."""
    previous = _previous(path, ca)
    if previous is not None:
        wait = previous.last_update_utc + dt.timedelta(seconds=1) - dt.datetime.now(dt.UTC)
        if wait > dt.timedelta(0):
            time.sleep(wait.total_seconds())
    crl = build_crl(ca, revocations, previous=previous)
    write_atomic(path, crl.public_bytes(serialization.Encoding.PEM), mode=PUBLIC_FILE_MODE)
    return crl


def _previous(path: Path, ca: CertificateAuthority) -> x509.CertificateRevocationList | None:
    try:
        crl = load_crl(path)
    except ValueError:
        return None
    if crl is None or not crl.is_signature_valid(ca.private_key.public_key()):
        return None  # a CRL of a CA since replaced: start again
    return crl


def ensure_crl(path: Path, ca: CertificateAuthority, revocations: list[Revocation]) -> bool:
    """Publish a CRL at path unless one is there that ca signed, lists exactly revocations' serials
    and has more than CRL_RENEW_BEFORE to run. True when it wrote one."""
    current = _previous(path, ca)
    if current is not None:
        listed = {entry.serial_number for entry in current}
        left = current.next_update_utc
        fresh = left is not None and left - dt.datetime.now(dt.UTC) > CRL_RENEW_BEFORE
        if fresh and listed == {r.serial for r in revocations}:
            return False
    publish_crl(path, ca, revocations)
    return True
