"""DCCKI: TLS certificates and contexts, proven by real handshakes on 127.0.0.1."""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dccsim.pki.dccki import (
    TlsIdentity,
    client_ssl_context,
    create_dccki_ca,
    issue_client_certificate,
    issue_server_certificate,
    participant_identity,
    server_ssl_context,
)
from dccsim.pki.smki import CertificateAuthority, verify_issued_by

SUPPLIER = bytes.fromhex("90B3D51F30010000")


@dataclass
class Credentials:
    cert: Path
    key: Path


def _write(directory: Path, name: str, identity: TlsIdentity) -> Credentials:
    credentials = Credentials(directory / f"{name}.pem", directory / f"{name}.key")
    identity.write(credentials.cert, credentials.key)
    return credentials


@dataclass
class Pki:
    ca: CertificateAuthority
    ca_path: Path
    server: Credentials
    client: Credentials


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("dccki")
    ca = create_dccki_ca()
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.certificate.public_bytes(Encoding.PEM))
    server = issue_server_certificate(ca, hostnames=["localhost"], ip_addresses=["127.0.0.1"])
    client = issue_client_certificate(ca, common_name="SUPPLIER1", eui=SUPPLIER)
    return Pki(
        ca, ca_path, _write(directory, "server", server), _write(directory, "client", client)
    )


# --------------------------------------------------------------------------------------------
# A TLS server on an ephemeral port that records what each connection came to
# --------------------------------------------------------------------------------------------


@dataclass
class TlsServer:
    context: ssl.SSLContext
    listener: socket.socket = field(init=False)
    outcomes: queue.Queue[object] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            raw.settimeout(5)
            try:
                with self.context.wrap_socket(raw, server_side=True) as tls:
                    der = tls.getpeercert(binary_form=True)
                    identity = participant_identity(der) if der else None
                    tls.recv(16)
                    tls.sendall(b"hello")
                    self.outcomes.put((identity, tls.version()))
            except (ssl.SSLError, OSError) as error:
                self.outcomes.put(error)
            finally:
                raw.close()

    def outcome(self) -> object:
        return self.outcomes.get(timeout=5)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[type[TlsServer]]:
    servers: list[TlsServer] = []

    class Tracked(TlsServer):
        def __post_init__(self) -> None:
            super().__post_init__()
            servers.append(self)

    yield Tracked
    for server in servers:
        server.close()


def talk(port: int, context: ssl.SSLContext, hostname: str = "localhost") -> tuple[bytes, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            tls.sendall(b"ping")
            reply = tls.recv(16)
            if not reply:
                raise ConnectionResetError("server closed the connection")
            version = tls.version()
            assert version is not None
            return reply, version


REFUSED = (ssl.SSLError, ConnectionResetError, BrokenPipeError)


def _server_context(pki: Pki, *, require_client_cert: bool = True) -> ssl.SSLContext:
    return server_ssl_context(
        pki.server.cert, pki.server.key, pki.ca_path, require_client_cert=require_client_cert
    )


# --------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------


def test_server_certificate_names_hosts_and_addresses_for_server_auth() -> None:
    ca = create_dccki_ca()
    identity = issue_server_certificate(
        ca, hostnames=["localhost", "dccsim.test"], ip_addresses=["127.0.0.1", "::1"]
    )
    san = identity.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["localhost", "dccsim.test"]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "::1",
    ]
    eku = identity.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert verify_issued_by(identity.certificate, ca.certificate)


def test_client_certificate_identifies_the_participant() -> None:
    ca = create_dccki_ca()
    identity = issue_client_certificate(ca, common_name="SUPPLIER1", eui=SUPPLIER)
    eku = identity.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    subject = identity.certificate.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "SUPPLIER1"
    assert subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "90B3D51F30010000"
    assert participant_identity(identity.certificate) == ("SUPPLIER1", SUPPLIER)
    der = identity.certificate.public_bytes(Encoding.DER)
    assert participant_identity(der) == ("SUPPLIER1", SUPPLIER)


def test_client_certificate_without_eui() -> None:
    identity = issue_client_certificate(create_dccki_ca(), common_name="OTHERUSER", eui=None)
    assert participant_identity(identity.certificate) == ("OTHERUSER", None)


def test_identity_write_makes_the_key_private(tmp_path: Path) -> None:
    identity = issue_client_certificate(create_dccki_ca(), common_name="U", eui=None)
    identity.write(tmp_path / "c.pem", tmp_path / "c.key")
    assert (tmp_path / "c.key").stat().st_mode & 0o777 == 0o600


# --------------------------------------------------------------------------------------------
# Handshakes
# --------------------------------------------------------------------------------------------


def test_client_certificate_from_the_dccki_ca_is_accepted(pki: Pki, serve: type[TlsServer]) -> None:
    server = serve(_server_context(pki))
    reply, version = talk(
        server.port, client_ssl_context(pki.client.cert, pki.client.key, pki.ca_path)
    )
    assert reply == b"hello"
    assert version == "TLSv1.3"
    assert server.outcome() == (("SUPPLIER1", SUPPLIER), "TLSv1.3")


def test_tls_1_2_is_still_accepted(pki: Pki, serve: type[TlsServer]) -> None:
    server = serve(_server_context(pki))
    context = client_ssl_context(pki.client.cert, pki.client.key, pki.ca_path)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    assert talk(server.port, context) == (b"hello", "TLSv1.2")
    assert server.outcome() == (("SUPPLIER1", SUPPLIER), "TLSv1.2")


def test_client_certificate_from_another_ca_is_refused(
    pki: Pki, serve: type[TlsServer], tmp_path: Path
) -> None:
    rogue_ca = create_dccki_ca(common_name="Somebody Else's CA")
    rogue = issue_client_certificate(rogue_ca, common_name="SUPPLIER1", eui=SUPPLIER)
    rogue.write(tmp_path / "rogue.pem", tmp_path / "rogue.key")
    server = serve(_server_context(pki))
    with pytest.raises(REFUSED):
        talk(
            server.port,
            client_ssl_context(tmp_path / "rogue.pem", tmp_path / "rogue.key", pki.ca_path),
        )
    outcome = server.outcome()
    assert isinstance(outcome, ssl.SSLError)
    assert "certificate verify failed" in str(outcome)


def test_client_without_a_certificate_is_refused(pki: Pki, serve: type[TlsServer]) -> None:
    server = serve(_server_context(pki))
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    with pytest.raises(REFUSED):
        talk(server.port, context)
    assert isinstance(server.outcome(), ssl.SSLError)


def test_a_server_not_requiring_client_certificates_serves_without_one(
    pki: Pki, serve: type[TlsServer]
) -> None:
    server = serve(_server_context(pki, require_client_cert=False))
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    assert talk(server.port, context)[0] == b"hello"
    assert server.outcome() == (None, "TLSv1.3")


def test_client_refuses_a_server_from_another_ca(
    pki: Pki, serve: type[TlsServer], tmp_path: Path
) -> None:
    rogue_ca = create_dccki_ca(common_name="Somebody Else's CA")
    rogue = issue_server_certificate(rogue_ca, hostnames=["localhost"], ip_addresses=[])
    rogue.write(tmp_path / "rogue.pem", tmp_path / "rogue.key")
    server = serve(server_ssl_context(tmp_path / "rogue.pem", tmp_path / "rogue.key", pki.ca_path))
    with pytest.raises(ssl.SSLCertVerificationError):
        talk(server.port, client_ssl_context(pki.client.cert, pki.client.key, pki.ca_path))


def test_client_checks_the_server_hostname(pki: Pki, serve: type[TlsServer]) -> None:
    server = serve(_server_context(pki))
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        talk(
            server.port,
            client_ssl_context(pki.client.cert, pki.client.key, pki.ca_path),
            hostname="elsewhere.example",
        )


def _tls11_client(pki: Pki) -> ssl.SSLContext:
    """A client that offers TLS 1.1 only, with OpenSSL's own floor lowered so that it can."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_verify_locations(cafile=str(pki.ca_path))
    context.load_cert_chain(pki.client.cert, pki.client.key)
    return context


def test_tls_1_1_is_refused(pki: Pki, serve: type[TlsServer]) -> None:
    server = serve(_server_context(pki))
    with pytest.raises(REFUSED):
        talk(server.port, _tls11_client(pki))
    outcome = server.outcome()
    assert isinstance(outcome, ssl.SSLError)
    assert outcome.reason == "UNSUPPORTED_PROTOCOL"


def test_the_tls_1_1_client_works_against_a_server_that_allows_it(
    pki: Pki, serve: type[TlsServer]
) -> None:
    """The control for test_tls_1_1_is_refused: the refusal is the DCCKI context's doing."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(pki.server.cert, pki.server.key)
    server = serve(context)
    try:
        reply, version = talk(server.port, _tls11_client(pki))
    except ssl.SSLError as error:
        pytest.skip(f"this OpenSSL cannot speak TLS 1.1 at all: {error}")
    assert (reply, version) == (b"hello", "TLSv1.1")
