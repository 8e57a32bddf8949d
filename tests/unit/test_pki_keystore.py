"""The key store: credentials by (EUI, usage) on disk, readable while another process writes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import dccsim
from dccsim.pki.keystore import KeyStore, KeyStoreError, PackedCredential
from dccsim.pki.smki import (
    CertificateAuthority,
    KeyUsage,
    Role,
    issue_device_certificate,
    issue_organisation_certificate,
)

NOT_BEFORE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
SUPPLIER = bytes.fromhex("90B3D51F30010000")
DEVICE = bytes.fromhex("00DB123456789001")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    root = CertificateAuthority.create_root(not_before=NOT_BEFORE)
    return CertificateAuthority.create_issuing(root, common_name="Z9", not_before=NOT_BEFORE)


def _device(
    ca: CertificateAuthority, eui: bytes = DEVICE, usage: KeyUsage = KeyUsage.DS
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = issue_device_certificate(
        ca, eui=eui, usage=usage, public_key=key.public_key(), not_before=NOT_BEFORE
    )
    return certificate, key


def _supplier(ca: CertificateAuthority) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = issue_organisation_certificate(
        ca,
        eui=SUPPLIER,
        role=Role.SUPPLIER,
        usage=KeyUsage.DS,
        public_key=key.public_key(),
        not_before=NOT_BEFORE,
        not_after=NOT_BEFORE + dt.timedelta(days=3650),
    )
    return certificate, key


def test_put_then_get_returns_certificate_key_role_and_serial(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    store = KeyStore(tmp_path / "ks")
    certificate, key = _supplier(ca)
    store.put(SUPPLIER, KeyUsage.DS, certificate, key, role=Role.SUPPLIER)

    entry = store.get(SUPPLIER, KeyUsage.DS)
    assert entry.certificate == certificate
    assert entry.private_key is not None
    assert entry.private_key.public_key() == key.public_key()
    assert entry.role == Role.SUPPLIER
    assert entry.serial == certificate.serial_number
    assert (entry.eui, entry.usage) == (SUPPLIER, KeyUsage.DS)
    assert store.certificate(SUPPLIER, KeyUsage.DS) == certificate
    assert store.private_key(SUPPLIER, KeyUsage.DS).public_key() == key.public_key()


def test_files_are_pem_with_private_keys_0600_and_directories_0700(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    store = KeyStore(tmp_path / "ks")
    certificate, key = _device(ca)
    entry = store.put(DEVICE, KeyUsage.DS, certificate, key, role=None)

    assert entry.private_key_path is not None
    assert entry.private_key_path.stat().st_mode & 0o777 == 0o600
    assert entry.private_key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert entry.certificate_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert entry.certificate_path.name == "00db123456789001-ds.pem"
    for directory in (store.root, store.root / "certs", store.root / "keys"):
        assert directory.stat().st_mode & 0o777 == 0o700
    assert (store.root / "index.jsonl").stat().st_mode & 0o777 == 0o600


def test_by_serial_finds_the_entry(tmp_path: Path, ca: CertificateAuthority) -> None:
    store = KeyStore(tmp_path / "ks")
    certificate, key = _device(ca, usage=KeyUsage.KA)
    store.put(DEVICE, KeyUsage.KA, certificate, key, role=None)
    found = store.by_serial(certificate.serial_number)
    assert found is not None and (found.eui, found.usage) == (DEVICE, KeyUsage.KA)
    assert store.by_serial(12345) is None


def test_a_replaced_certificate_is_no_longer_found_by_its_serial(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    store = KeyStore(tmp_path / "ks")
    old, old_key = _device(ca)
    new, new_key = _device(ca)
    store.put(DEVICE, KeyUsage.DS, old, old_key, role=None)
    store.put(DEVICE, KeyUsage.DS, new, new_key, role=None)
    assert store.by_serial(old.serial_number) is None
    found = store.by_serial(new.serial_number)
    assert found is not None and found.certificate == new
    assert len(store) == 1


def test_missing_items_raise_key_store_error_naming_them(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "ks")
    with pytest.raises(KeyStoreError, match="00DB123456789001"):
        store.get(DEVICE, KeyUsage.DS)
    with pytest.raises(KeyStoreError, match="ka certificate"):
        store.certificate(DEVICE, KeyUsage.KA)
    with pytest.raises(KeyStoreError, match="private key"):
        store.private_key(DEVICE, KeyUsage.DS)


def test_certificate_without_key_has_none_and_clears_a_stale_key(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    store = KeyStore(tmp_path / "ks")
    certificate, key = _device(ca)
    store.put(DEVICE, KeyUsage.DS, certificate, key, role=None)
    public_only, _ = _device(ca)
    store.put(DEVICE, KeyUsage.DS, public_only, None, role=None)

    entry = store.get(DEVICE, KeyUsage.DS)
    assert entry.certificate == public_only
    assert entry.private_key is None and entry.private_key_path is None
    with pytest.raises(KeyStoreError):
        store.private_key(DEVICE, KeyUsage.DS)


def test_a_key_that_does_not_match_the_certificate_is_refused(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    store = KeyStore(tmp_path / "ks")
    certificate, _ = _device(ca)
    with pytest.raises(KeyStoreError, match="does not match"):
        store.put(
            DEVICE, KeyUsage.DS, certificate, ec.generate_private_key(ec.SECP256R1()), role=None
        )


def test_role_falls_back_to_the_certificate_without_an_index_line(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    store = KeyStore(tmp_path / "ks")
    certificate, key = _supplier(ca)
    store.put(SUPPLIER, KeyUsage.DS, certificate, key, role=Role.SUPPLIER)
    (store.root / "index.jsonl").unlink()
    assert KeyStore(store.root).get(SUPPLIER, KeyUsage.DS).role == Role.SUPPLIER


def test_entries_lists_everything_in_order(tmp_path: Path, ca: CertificateAuthority) -> None:
    store = KeyStore(tmp_path / "ks")
    for eui in (bytes.fromhex("00DB123456789002"), DEVICE):
        for usage in (KeyUsage.KA, KeyUsage.DS):
            certificate, key = _device(ca, eui, usage)
            store.put(eui, usage, certificate, key, role=None)
    assert [(e.eui.hex(), e.usage.value) for e in store.entries()] == [
        ("00db123456789001", "ds"),
        ("00db123456789001", "ka"),
        ("00db123456789002", "ds"),
        ("00db123456789002", "ka"),
    ]


def test_another_instance_sees_what_was_written_after_it_opened(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    writer = KeyStore(tmp_path / "ks")
    reader = KeyStore(tmp_path / "ks")
    assert reader.by_serial(1) is None  # reads the (absent) index before anything is written
    certificate, key = _device(ca)
    writer.put(DEVICE, KeyUsage.DS, certificate, key, role=None)
    found = reader.by_serial(certificate.serial_number)
    assert found is not None and found.certificate == certificate


def test_compaction_keeps_the_latest_entries_and_readers_follow(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    store = KeyStore(tmp_path / "ks")
    reader = KeyStore(tmp_path / "ks")
    for _ in range(3):
        certificate, key = _device(ca)
        store.put(DEVICE, KeyUsage.DS, certificate, key, role=None)
    assert len(reader) == 1
    store.compact()
    assert len((store.root / "index.jsonl").read_bytes().splitlines()) == 1
    latest = reader.by_serial(certificate.serial_number)
    assert latest is not None and latest.certificate == certificate


def test_reader_process_never_sees_a_torn_entry_while_another_process_writes(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    """A child process keeps replacing one credential while this process reads it."""
    root = tmp_path / "ks"
    store = KeyStore(root)
    certificate, key = _device(ca)
    store.put(DEVICE, KeyUsage.DS, certificate, key, role=None)
    ca_dir = tmp_path / "ca"
    ca.save(ca_dir / "ca.pem", ca_dir / "ca.key")
    writer = textwrap.dedent(
        f"""
        import datetime as dt
        from pathlib import Path
        from cryptography.hazmat.primitives.asymmetric import ec
        from dccsim.pki.keystore import KeyStore
        from dccsim.pki.smki import CertificateAuthority, KeyUsage, issue_device_certificate
        ca = CertificateAuthority.load(Path({str(ca_dir / "ca.pem")!r}),
                                       Path({str(ca_dir / "ca.key")!r}))
        store = KeyStore(Path({str(root)!r}))
        eui = bytes.fromhex({DEVICE.hex()!r})
        for _ in range(300):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = issue_device_certificate(ca, eui=eui, usage=KeyUsage.DS,
                public_key=key.public_key(), not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            store.put(eui, KeyUsage.DS, cert, key, role=None)
        print(cert.serial_number)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(Path(dccsim.__file__).resolve().parents[1]))
    child = subprocess.Popen(
        [sys.executable, "-c", writer], env=env, stdout=subprocess.PIPE, text=True
    )
    reads = 0
    while child.poll() is None:
        entry = store.get(DEVICE, KeyUsage.DS)  # raises if it ever found a mismatched pair
        assert entry.private_key is not None
        assert entry.private_key.public_key() == entry.certificate.public_key()
        reads += 1
    stdout, _ = child.communicate()
    assert child.returncode == 0
    assert reads > 0, "the writer finished before a single read"
    last = store.by_serial(int(stdout.strip()))
    assert last is not None and last.serial == int(stdout.strip())


def test_a_bad_eui_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="8 bytes"):
        KeyStore(tmp_path / "ks").get(b"\x00" * 4, KeyUsage.DS)


def _packed(
    ca: CertificateAuthority, eui: bytes = DEVICE, usage: KeyUsage = KeyUsage.DS
) -> tuple[PackedCredential, x509.Certificate]:
    certificate, key = _device(ca, eui, usage)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    credential = PackedCredential(
        eui,
        usage,
        certificate.serial_number,
        certificate.public_bytes(serialization.Encoding.DER),
        der,
    )
    return credential, certificate


def test_a_packed_credential_reads_like_a_filed_one(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    store = KeyStore(tmp_path)
    credential, certificate = _packed(ca)
    path = store.put_pack([credential])
    assert path is not None and path.stat().st_mode & 0o777 == 0o600
    reader = KeyStore(tmp_path)
    entry = reader.get(DEVICE, KeyUsage.DS)
    assert entry.certificate == certificate and entry.certificate_path == path
    assert entry.private_key is not None
    assert entry.private_key.public_key() == certificate.public_key()
    found = reader.by_serial(certificate.serial_number)
    assert found is not None and (found.eui, found.usage, found.certificate) == (
        DEVICE,
        KeyUsage.DS,
        certificate,
    )
    assert (DEVICE, KeyUsage.DS) in reader and (DEVICE, KeyUsage.KA) not in reader
    with pytest.raises(KeyStoreError, match="no ka certificate"):
        reader.certificate(DEVICE, KeyUsage.KA)


def test_files_put_after_a_pack_supersede_it(tmp_path: Path, ca: CertificateAuthority) -> None:
    store = KeyStore(tmp_path)
    store.put_pack([_packed(ca)[0]])
    certificate, _key = _device(ca)
    store.put(DEVICE, KeyUsage.DS, certificate, None, role=None)
    entry = KeyStore(tmp_path).get(DEVICE, KeyUsage.DS)
    assert entry.certificate == certificate
    assert entry.private_key is None  # not the packed key of the older certificate
    with pytest.raises(KeyStoreError, match="no ds private key"):
        store.private_key(DEVICE, KeyUsage.DS)


def test_a_newer_pack_supersedes_an_older_one_and_the_files_it_replaces(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    store = KeyStore(tmp_path)
    filed, key = _device(ca, usage=KeyUsage.KA)
    store.put(DEVICE, KeyUsage.KA, filed, key, role=None)
    store.put_pack([_packed(ca)[0]])
    newer_ds, ds_certificate = _packed(ca)
    newer_ka, ka_certificate = _packed(ca, usage=KeyUsage.KA)
    store.put_pack([newer_ds, newer_ka], replacing_files=[(DEVICE, KeyUsage.KA)])
    reader = KeyStore(tmp_path)
    assert reader.certificate(DEVICE, KeyUsage.DS) == ds_certificate
    assert reader.certificate(DEVICE, KeyUsage.KA) == ka_certificate
    assert not store.certificate_path(DEVICE, KeyUsage.KA).exists()
    assert not store.private_key_path(DEVICE, KeyUsage.KA).exists()
    assert reader.by_serial(filed.serial_number) is None
    assert len(reader) == 2


def test_a_pack_holds_device_ds_and_ka_credentials_only(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    store = KeyStore(tmp_path)
    credential, _certificate = _packed(ca)
    with pytest.raises(KeyStoreError, match="packs hold DS and KA"):
        store.put_pack([dataclasses.replace(credential, usage=KeyUsage.XML_SIGN)])
    with pytest.raises(KeyStoreError, match="twice in one pack"):
        store.put_pack([credential, credential])
    assert store.put_pack([]) is None
    assert not (tmp_path / "packs").exists() or not list((tmp_path / "packs").iterdir())


def test_a_reader_finds_a_pack_added_within_the_folders_mtime_tick(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    writer, reader = KeyStore(tmp_path), KeyStore(tmp_path)
    writer.put_pack([_packed(ca)[0]])
    assert (DEVICE, KeyUsage.DS) in reader  # the reader has listed the packs folder
    other = bytes.fromhex("00DB123456789002")
    credential, certificate = _packed(ca, other)
    stamp = os.stat(tmp_path / "packs").st_mtime_ns
    writer.put_pack([credential])
    os.utime(tmp_path / "packs", ns=(stamp, stamp))  # as if in the same coarse tick
    assert reader.certificate(other, KeyUsage.DS) == certificate
