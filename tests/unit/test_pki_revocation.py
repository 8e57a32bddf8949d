"""Revocation: the register, a CRL per CA, and TLS servers that honour the DCCKI CRL live."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from dccsim.pki.crl import RevocationError, RevocationRegister, load_crl, reason_from
from dccsim.pki.dccki import CrlWatcher, client_ssl_context, server_ssl_context
from dccsim.pki.devpki import DCC_EUI, PartyBundle, PkiLayout, init_pki, issue_device, issue_party
from dccsim.pki.external import import_zaz1
from dccsim.pki.files import load_certificate
from dccsim.pki.revocation import revocation_status, revoke
from dccsim.pki.smki import KeyUsage, Role

SUPPLIER = bytes.fromhex("90B3D51F30010000")
SUPPLIER_B = bytes.fromhex("90B3D51F30010001")
DEVICE = bytes.fromhex("00DCC50000000102")


@pytest.fixture
def layout(tmp_path: Path) -> PkiLayout:
    return init_pki(tmp_path)


def _party(layout: PkiLayout, eui: bytes, user_id: str) -> PartyBundle:
    return issue_party(
        layout.home,
        eui=eui,
        role=Role.SUPPLIER,
        user_id=user_id,
        out_dir=layout.home / "bundles" / user_id,
    )


# ------------------------------------------------------------------------------ CRLs on disk


def test_init_publishes_an_empty_crl_for_every_ca(layout: PkiLayout) -> None:
    for name, (cert_path, _key, _kind) in layout.authorities().items():
        crl = load_crl(layout.crl_path(name))
        assert crl is not None, name
        assert len(crl) == 0
        assert crl.is_signature_valid(load_certificate(cert_path).public_key())


def test_a_second_init_leaves_the_crls_alone(layout: PkiLayout) -> None:
    before = {p: p.stat().st_mtime_ns for p in layout.crl_dir.iterdir()}
    init_pki(layout.home)
    assert {p: p.stat().st_mtime_ns for p in layout.crl_dir.iterdir()} == before


def test_revoking_a_smki_certificate_lists_it_in_the_organisation_cas_crl(
    layout: PkiLayout,
) -> None:
    bundle = _party(layout, SUPPLIER, "SUPPLIER1")
    serial = load_certificate(bundle.ds_cert).serial_number
    result = revoke(layout.home, serial, x509.ReasonFlags.key_compromise)
    assert result.crl_path == layout.crl_path("smki-oca")
    crl = load_crl(result.crl_path)
    assert crl is not None
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    status = revocation_status(layout.home, serial)
    assert status is not None and status.kind == "smki"
    assert status.reason is x509.ReasonFlags.key_compromise


def test_revoking_a_device_certificate_publishes_the_device_cas_crl(layout: PkiLayout) -> None:
    ds, _ka = issue_device(layout.home, eui=DEVICE)
    result = revoke(layout.home, ds.serial)
    assert result.crl_path == layout.crl_path("smki-dca")
    crl = load_crl(result.crl_path)
    assert crl is not None and crl.get_revoked_certificate_by_serial_number(ds.serial)


def test_each_new_crl_is_later_and_numbered_higher(layout: PkiLayout) -> None:
    first = load_crl(layout.dccki_crl)
    bundle = _party(layout, SUPPLIER, "SUPPLIER1")
    revoke(layout.home, load_certificate(bundle.tls_client_cert).serial_number)
    second = load_crl(layout.dccki_crl)
    assert first is not None and second is not None
    assert second.last_update_utc > first.last_update_utc

    def number(crl: x509.CertificateRevocationList) -> int:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    assert number(second) == number(first) + 1


def test_revoking_twice_keeps_the_first_revocation(layout: PkiLayout) -> None:
    bundle = _party(layout, SUPPLIER, "SUPPLIER1")
    serial = load_certificate(bundle.ka_cert).serial_number
    first = revoke(layout.home, serial, x509.ReasonFlags.superseded)
    again = revoke(layout.home, serial, x509.ReasonFlags.key_compromise)
    assert again.already and again.revocation == first.revocation
    assert len(RevocationRegister(layout.revocations).all()) == 1


def test_an_unknown_serial_is_refused_naming_it(layout: PkiLayout) -> None:
    with pytest.raises(RevocationError, match="serial 12345"):
        revoke(layout.home, 12345)


def test_an_imported_certificate_is_recorded_revoked_without_a_crl(
    layout: PkiLayout, reference_dir: Path
) -> None:
    smki = reference_dir / "smki"
    import_zaz1(layout.keystore(), smki / "zaz1", smki / "zaz1-keystore.json")
    serial = layout.keystore().get(SUPPLIER, KeyUsage.DS).serial
    result = revoke(layout.home, serial)
    assert result.crl_path is None
    assert result.revocation.authority == "CN=Z1,OU=07"
    assert revocation_status(layout.home, serial) is not None


def test_reasons_read_in_rfc_and_cli_spelling() -> None:
    assert reason_from("keyCompromise") is x509.ReasonFlags.key_compromise
    assert reason_from("key-compromise") is x509.ReasonFlags.key_compromise
    with pytest.raises(RevocationError, match="unknown revocation reason 'stolen'"):
        reason_from("stolen")


# ---------------------------------------------------------------- TLS servers honour the CRL


@dataclass
class Server:
    port: int
    context: ssl.SSLContext
    watcher: CrlWatcher


@pytest.fixture
async def server(layout: PkiLayout) -> AsyncIterator[Server]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    context = server_ssl_context(
        layout.tls_server_cert, layout.tls_server_key, layout.tls_ca, crl_path=layout.dccki_crl
    )
    watcher = CrlWatcher(context, layout.dccki_crl, interval=0.05)
    watcher.start()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield Server(port, context, watcher)
    finally:
        await watcher.stop()
        await runner.cleanup()


async def _get(server: Server, bundle: PartyBundle) -> str:
    """One request on a fresh connection (a new TLS handshake)."""
    context = client_ssl_context(bundle.tls_client_cert, bundle.tls_client_key, bundle.dccki_ca)
    connector = aiohttp.TCPConnector(ssl=context, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(f"https://localhost:{server.port}/") as response:
            return await response.text()


async def test_a_revoked_client_certificate_is_refused_without_restarting_the_server(
    layout: PkiLayout, server: Server
) -> None:
    revoked = _party(layout, SUPPLIER, "SUPPLIER1")
    other = _party(layout, SUPPLIER_B, "SUPPLIER2")
    assert await _get(server, revoked) == "hello"

    revoke(layout.home, load_certificate(revoked.tls_client_cert).serial_number)
    for _ in range(100):  # the watcher polls every 50 ms
        if server.watcher.reloads >= 2:
            break
        await asyncio.sleep(0.02)
    assert server.watcher.reloads >= 2

    with pytest.raises(aiohttp.ClientError):
        await _get(server, revoked)
    assert await _get(server, other) == "hello"  # everyone else still gets in


async def test_a_client_revoked_before_the_server_started_is_refused(layout: PkiLayout) -> None:
    bundle = _party(layout, SUPPLIER, "SUPPLIER1")
    revoke(layout.home, load_certificate(bundle.tls_client_cert).serial_number)
    context = server_ssl_context(
        layout.tls_server_cert, layout.tls_server_key, layout.tls_ca, crl_path=layout.dccki_crl
    )
    app = web.Application()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with pytest.raises(aiohttp.ClientError):
            await _get(Server(port, context, CrlWatcher(context, layout.dccki_crl)), bundle)
    finally:
        await runner.cleanup()


def test_without_a_crl_file_the_watcher_checks_nothing_until_one_appears(
    layout: PkiLayout, tmp_path: Path
) -> None:
    context = server_ssl_context(layout.tls_server_cert, layout.tls_server_key, layout.tls_ca)
    missing = tmp_path / "later.crl.pem"
    watcher = CrlWatcher(context, missing)
    assert not context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    missing.write_bytes(layout.dccki_crl.read_bytes())
    assert watcher.check()
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    assert not watcher.check()  # unchanged: not loaded again


def test_the_dcc_identities_are_not_revoked_by_default(layout: PkiLayout) -> None:
    entry = layout.keystore().get(DCC_EUI, KeyUsage.XML_SIGN)
    assert revocation_status(layout.home, entry.serial) is None
