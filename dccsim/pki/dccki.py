"""DCCKI: the TLS PKI of DCC Gateway Connections, separate from SMKI.

A test DCCKI CA issues server certificates (SAN DNS names and IP addresses, serverAuth) for
dccsim's endpoints and client certificates (clientAuth) for User Systems. A client certificate
says who is connecting: ``CN`` = the DCC User ID and, when the participant has one, the subject
``serialNumber`` = its EUI-64 as 16 upper-case hex digits; participant_identity() reads both back.
The ssl contexts verify peers against the DCCKI CA, TLS 1.2 at least, 1.3 when both sides can.

Revocation: a server context given the DCCKI CRL checks every client certificate against it
(``VERIFY_CRL_CHECK_LEAF``), and a CrlWatcher loads each new CRL into that same live context,
so a revoked client is refused from the next handshake on without restarting the server.
Python's ssl has no call to remove a CRL from a context's store, but OpenSSL keeps every CRL
loaded and, for one issuer, checks against the one with the latest thisUpdate (crl.build_crl
makes each new CRL strictly later), so adding the new CRL is enough; the old ones stay in memory
(a few hundred bytes per revocation). Connections already open are not cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import ssl
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dccsim.pki.files import write_certificate, write_private_key
from dccsim.pki.smki import EUI_LENGTH, CertificateAuthority, random_serial

# TLS 1.2 suites for an ECDSA certificate with forward secrecy and AEAD only; TLS 1.3 has its own.
TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305"
)

DEFAULT_CA_LIFETIME = dt.timedelta(days=20 * 365)
DEFAULT_LEAF_LIFETIME = dt.timedelta(days=10 * 365)

StrPath = str | os.PathLike[str]

log = logging.getLogger(__name__)


class TlsIdentity(NamedTuple):
    """A TLS certificate and its private key."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    def write(self, certificate_path: Path, private_key_path: Path) -> None:
        """Certificate as PEM, key as PKCS#8 PEM with mode 0600, each written atomically."""
        write_private_key(private_key_path, self.private_key)
        write_certificate(certificate_path, self.certificate)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _ski(public_key: ec.EllipticCurvePublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


def _authority_key_id(ca: CertificateAuthority) -> x509.AuthorityKeyIdentifier:
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def create_dccki_ca(
    *,
    common_name: str = "dccsim DCCKI Test CA",
    organisation: str = "dccsim",
    private_key: ec.EllipticCurvePrivateKey | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> CertificateAuthority:
    """A self-signed DCCKI test CA (P-256, path length 0: it signs end-entity certs only)."""
    key = private_key or ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(start)
        .not_valid_after(not_after or start + DEFAULT_CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_ski(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(certificate, key)


_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _leaf(
    ca: CertificateAuthority,
    *,
    subject: x509.Name,
    purpose: x509.ObjectIdentifier,
    alt_names: list[x509.GeneralName],
    private_key: ec.EllipticCurvePrivateKey | None,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
) -> TlsIdentity:
    key = private_key or ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(random_serial())
        .not_valid_before(start)
        .not_valid_after(not_after or start + DEFAULT_LEAF_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_LEAF_KEY_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(_ski(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return TlsIdentity(builder.sign(ca.private_key, hashes.SHA256()), key)


def issue_server_certificate(
    ca: CertificateAuthority,
    *,
    hostnames: list[str],
    ip_addresses: list[str],
    private_key: ec.EllipticCurvePrivateKey | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> TlsIdentity:
    """A serverAuth certificate (and a new key unless one is given) for these DNS names and IP
    addresses, all in the subjectAltName; CN is the first of them."""
    names: list[x509.GeneralName] = [x509.DNSName(host) for host in hostnames]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if not names:
        raise ValueError("a server certificate needs at least one hostname or IP address")
    common_name = hostnames[0] if hostnames else ip_addresses[0]
    return _leaf(
        ca,
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
        purpose=ExtendedKeyUsageOID.SERVER_AUTH,
        alt_names=names,
        private_key=private_key,
        not_before=not_before,
        not_after=not_after,
    )


def issue_client_certificate(
    ca: CertificateAuthority,
    *,
    common_name: str,
    eui: bytes | None,
    organisation: str | None = None,
    private_key: ec.EllipticCurvePrivateKey | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> TlsIdentity:
    """A clientAuth certificate naming a participant: CN=common_name (its User ID) and, with an
    eui, serialNumber=<EUI as 16 upper-case hex digits>."""
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation is not None:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    if eui is not None:
        if len(eui) != EUI_LENGTH:
            raise ValueError(f"an EUI-64 is {EUI_LENGTH} bytes, got {eui!r}")
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, bytes(eui).hex().upper()))
    return _leaf(
        ca,
        subject=x509.Name(attributes),
        purpose=ExtendedKeyUsageOID.CLIENT_AUTH,
        alt_names=[],
        private_key=private_key,
        not_before=not_before,
        not_after=not_after,
    )


def participant_identity(certificate: x509.Certificate | bytes) -> tuple[str, bytes | None]:
    """(User ID, EUI-64 or None) from a DCCKI client certificate, or from its DER bytes as
    ``ssl_object.getpeercert(binary_form=True)`` gives them. ValueError when there is no CN."""
    if isinstance(certificate, bytes | bytearray):
        certificate = x509.load_der_x509_certificate(bytes(certificate))
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or not isinstance(names[0].value, str) or not names[0].value:
        raise ValueError("client certificate has no common name (User ID)")
    eui: bytes | None = None
    for attribute in certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        value = attribute.value
        if isinstance(value, str) and len(value) == 2 * EUI_LENGTH:
            try:
                eui = bytes.fromhex(value)
            except ValueError:
                continue
            break
    return names[0].value, eui


def subject_alt_names(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses as text) from a certificate's subjectAltName."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return (
        list(san.get_values_for_type(x509.DNSName)),
        [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
    )


def _base_context(protocol: int, ca_path: StrPath) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION
    context.load_verify_locations(cafile=os.fspath(ca_path))
    # What Python 3.13 turns on by default; our certificates satisfy it, so hold them to it now.
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


def server_ssl_context(
    cert_path: StrPath,
    key_path: StrPath,
    ca_path: StrPath,
    *,
    require_client_cert: bool = True,
    crl_path: StrPath | None = None,
    optional_client_cert: bool = False,
) -> ssl.SSLContext:
    """A server context presenting cert_path/key_path. With require_client_cert the handshake
    fails unless the client shows a certificate from the CA(s) in ca_path; without, no client
    certificate is asked for, unless optional_client_cert: then one is asked for, checked if
    shown, and not required (a portal that logs in by certificate or by link). With crl_path
    (the DCCKI CRL) a revoked client certificate fails the handshake too; keep it current with
    CrlWatcher(context, crl_path)."""
    context = _base_context(ssl.PROTOCOL_TLS_SERVER, ca_path)
    context.load_cert_chain(os.fspath(cert_path), os.fspath(key_path))
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.verify_mode = ssl.CERT_OPTIONAL if optional_client_cert else ssl.CERT_NONE
    if crl_path is not None:
        load_crl_into(context, crl_path)
    return context


def load_crl_into(context: ssl.SSLContext, crl_path: StrPath) -> None:
    """Add the CRL (PEM) at crl_path to context's trust store and check client (leaf)
    certificates against it from the next handshake on. FileNotFoundError when it is missing;
    ssl.SSLError when it is not a CRL."""
    context.load_verify_locations(cafile=os.fspath(crl_path))
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


class CrlWatcher:
    """Keeps a live server context's CRL current: whenever the file at crl_path changes (it is
    replaced atomically on each publication), the new CRL is loaded into context.

    check() looks once (call it after a revocation for an immediate effect); run() looks every
    interval seconds until cancelled; start() runs it as a task that stop() cancels. Until the
    file exists the context checks no CRL (a missing CRL would refuse every client), with a
    warning; ``dccsim pki init`` publishes one for the DCCKI CA from the start.
    """

    def __init__(
        self, context: ssl.SSLContext, crl_path: StrPath, *, interval: float = 1.0
    ) -> None:
        self.context = context
        self.crl_path = os.fspath(crl_path)
        self.interval = interval
        self.reloads = 0
        self._stamp: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned = False
        self.check()

    def check(self) -> bool:
        """Load the CRL if it changed since last time; True when it did."""
        try:
            stat = os.stat(self.crl_path)
        except FileNotFoundError:
            if not self._warned:
                log.warning(
                    "no CRL at %s: client certificates are not checked for revocation",
                    self.crl_path,
                )
                self._warned = True
            return False
        stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if stamp == self._stamp:
            return False
        try:
            load_crl_into(self.context, self.crl_path)
        except (OSError, ssl.SSLError):
            log.exception("could not load the CRL at %s; keeping the previous one", self.crl_path)
            return False
        self._stamp = stamp
        self.reloads += 1
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.check()

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="crl-watcher")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def client_ssl_context(cert_path: StrPath, key_path: StrPath, ca_path: StrPath) -> ssl.SSLContext:
    """A client context presenting cert_path/key_path and verifying the server's certificate
    and host name against the CA(s) in ca_path."""
    context = _base_context(ssl.PROTOCOL_TLS_CLIENT, ca_path)
    context.load_cert_chain(os.fspath(cert_path), os.fspath(key_path))
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context
