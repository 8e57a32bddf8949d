"""``dccsim pki revoke``: revoke an SMKI or DCCKI certificate and publish its CA's new CRL.

The certificate is found by serial in the key store (SMKI) or among the DCCKI certificates
under ``<home>/pki`` (servers', the WAN client's, participants' ``tls-client.pem``). The revocation
goes into the register (``<home>/pki/revocations.jsonl``), which the SMKI Repository reads for
status; when dccsim holds the issuing CA's key, that CA's CRL (``<home>/pki/crl/<ca>.crl.pem``)
is republished, and TLS servers watching the DCCKI CRL (dccki.CrlWatcher) refuse the certificate
from their next handshake on. Certificates of imported test sets (ZAZ1, RTDS) are recorded as
revoked, but no CRL can be signed for their CAs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography import x509

from dccsim.pki.crl import Revocation, RevocationError, RevocationRegister, publish_crl
from dccsim.pki.devpki import PkiLayout, _load_ca, _locked
from dccsim.pki.files import load_certificate
from dccsim.pki.keystore import Entry
from dccsim.pki.smki import CertificateAuthority, names_equal, verify_issued_by


@dataclass(frozen=True)
class RevocationResult:
    """What revoke() did."""

    revocation: Revocation
    certificate: x509.Certificate
    crl_path: Path | None
    """The CRL published, or None for a certificate whose CA key dccsim does not hold."""
    already: bool
    """The certificate was revoked before (the first revocation stands; the CRL is republished)."""


def _dccki_certificates(layout: PkiLayout) -> Iterator[x509.Certificate]:
    paths = sorted(layout.tls_dir.glob("*.pem")) + sorted(layout.parties_dir.glob("*/*.pem"))
    for path in paths:
        try:
            yield load_certificate(path)
        except ValueError:
            continue


def find_certificate(layout: PkiLayout, serial: int) -> tuple[x509.Certificate, str] | None:
    """(certificate, ``smki``/``dccki``) with this serial under layout, or None."""
    entry = layout.keystore().by_serial(serial)
    if entry is not None:
        return entry.certificate, "smki"
    for certificate in _dccki_certificates(layout):
        if certificate.serial_number == serial:
            return certificate, "dccki"
    for name, (cert_path, _key_path, kind) in layout.authorities().items():
        # A CA certificate: only the root's issuing CAs can be revoked (by the root's CRL).
        if cert_path.exists() and load_certificate(cert_path).serial_number == serial:
            if name.startswith("smki-") and name != "smki-root":
                return load_certificate(cert_path), kind
    return None


def _issuer(
    layout: PkiLayout, certificate: x509.Certificate
) -> tuple[str, CertificateAuthority | None]:
    """(authority name, its CA) of dccsim's own CA that issued certificate, or (issuer, None)."""
    for name, (cert_path, key_path, _kind) in layout.authorities().items():
        ca = _load_ca(cert_path, key_path)
        if ca is None or not names_equal(certificate.issuer, ca.certificate.subject):
            continue
        if verify_issued_by(certificate, ca.certificate) and certificate != ca.certificate:
            return name, ca
    return certificate.issuer.rfc4514_string(), None


def revoke(
    home: Path,
    serial: int,
    reason: x509.ReasonFlags = x509.ReasonFlags.unspecified,
    *,
    at: dt.datetime | None = None,
) -> RevocationResult:
    """Revoke the SMKI or DCCKI certificate with this serial under ``home/pki``, record it in
    the register and republish its CA's CRL. Revoking twice keeps the first revocation.
    RevocationError when no certificate there has this serial."""
    layout = PkiLayout.of(home)
    with _locked(layout):
        found = find_certificate(layout, serial)
        if found is None:
            raise RevocationError(
                f"no certificate with serial {serial} (0x{serial:x}) in the key store "
                f"{layout.keystore_dir} or among the DCCKI certificates under {layout.pki_dir}"
            )
        certificate, kind = found
        register = RevocationRegister(layout.revocations)
        authority, ca = _issuer(layout, certificate)
        existing = register.get(serial)
        if existing is None:
            revocation = Revocation(
                serial=serial,
                reason=reason,
                revoked_at=(at or dt.datetime.now(dt.UTC)).replace(microsecond=0),
                authority=authority,
                kind=kind,
            )
            register.add(revocation)
        else:
            revocation = existing
        crl_path = None
        if ca is not None:
            crl_path = layout.crl_path(authority)
            publish_crl(crl_path, ca, register.of(authority))
    return RevocationResult(revocation, certificate, crl_path, already=existing is not None)


def revocation_status(home: Path, serial: int) -> Revocation | None:
    """The revocation of serial under home, or None when it is not revoked."""
    return RevocationRegister(PkiLayout.of(home).revocations).get(serial)


class CertificateStatus(StrEnum):
    """A certificate's status as DCC's SMKI Repository reports it (its one-letter codes)."""

    PENDING = "P"
    IN_USE = "I"
    NOT_IN_USE = "N"
    EXPIRED = "E"
    REVOKED = "R"


def status_of(
    entry: Entry, register: RevocationRegister, at: dt.datetime | None = None
) -> CertificateStatus:
    """REVOKED when the register lists the serial, EXPIRED when past notAfter (never for a
    legacy entry), else IN_USE."""
    if entry.serial in register:
        return CertificateStatus.REVOKED
    if entry.expired(at):
        return CertificateStatus.EXPIRED
    return CertificateStatus.IN_USE
