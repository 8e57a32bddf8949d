"""Device credentials for a whole estate: the template-built certificate, the worker pool, packs
in the key store, and what an interrupted run leaves behind."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.pki import keystore as keystore_module
from dccsim.pki.devpki import (
    SMKI_NOT_BEFORE,
    DeviceCertificateTemplate,
    DeviceEstateIssue,
    PkiLayout,
    init_pki,
    issue_device_estate,
    issue_devices,
)
from dccsim.pki.keystore import KeyStore, _Pack
from dccsim.pki.smki import (
    CertificateAuthority,
    KeyUsage,
    eui_of,
    issue_device_certificate,
    profile_problems,
    random_serial,
    usage_of,
    verify_issued_by,
)

USAGES = (KeyUsage.DS, KeyUsage.KA)


def _euis(count: int, base: int = 0x00DCC500_00000000) -> list[bytes]:
    return [(base + n).to_bytes(8, "big") for n in range(count)]


@pytest.fixture(scope="module")
def device_ca() -> CertificateAuthority:
    root = CertificateAuthority.create_root(not_before=SMKI_NOT_BEFORE)
    return CertificateAuthority.create_issuing(
        root, common_name="test DCA", role=None, not_before=SMKI_NOT_BEFORE
    )


def _point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def _device_ca_of(home: Path) -> CertificateAuthority:
    layout = PkiLayout.of(home)
    return CertificateAuthority.load(layout.smki_device_ca_cert, layout.smki_device_ca_key)


def _rebuilt_tbs(template: DeviceCertificateTemplate, certificate: x509.Certificate) -> bytes:
    """The TBS the template makes from the certificate's own serial, key and EUI."""
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    usage, eui = usage_of(certificate), eui_of(certificate)
    assert usage is not None and eui is not None
    return template.tbs(
        usage,
        serial=certificate.serial_number,
        point=public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        ),
        eui=eui,
    )


@pytest.mark.parametrize("usage", USAGES)
def test_template_certificate_is_the_builders_in_every_field_but_the_signature(
    device_ca: CertificateAuthority, usage: KeyUsage
) -> None:
    template = DeviceCertificateTemplate(device_ca, SMKI_NOT_BEFORE)
    key = ec.generate_private_key(ec.SECP256R1())
    eui, serial = bytes.fromhex("00DCC50000012302"), random_serial()
    built = issue_device_certificate(
        device_ca,
        eui=eui,
        usage=usage,
        public_key=key.public_key(),
        not_before=SMKI_NOT_BEFORE,
        serial=serial,
    )
    der = template.certificate_der(usage, serial=serial, point=_point(key), eui=eui)
    made = x509.load_der_x509_certificate(der)

    assert made.public_bytes(serialization.Encoding.DER) == der  # strict DER, re-encodes alike
    assert made.tbs_certificate_bytes == built.tbs_certificate_bytes
    assert made.version == built.version
    assert made.serial_number == serial
    assert made.issuer == built.issuer == device_ca.certificate.subject
    assert made.subject == built.subject
    assert made.not_valid_before_utc == built.not_valid_before_utc == SMKI_NOT_BEFORE
    assert made.not_valid_after_utc == built.not_valid_after_utc
    assert made.public_key() == key.public_key()
    assert made.signature_algorithm_oid == built.signature_algorithm_oid
    assert [(e.oid, e.critical, e.value) for e in made.extensions] == [
        (e.oid, e.critical, e.value) for e in built.extensions
    ]
    assert eui_of(made) == eui and usage_of(made) is usage
    assert profile_problems(made) == []
    assert verify_issued_by(made, device_ca.certificate)
    assert made.signature != built.signature  # signed afresh, not copied


def test_template_takes_only_serials_of_the_fixed_length(device_ca: CertificateAuthority) -> None:
    template = DeviceCertificateTemplate(device_ca, SMKI_NOT_BEFORE)
    point = _point(ec.generate_private_key(ec.SECP256R1()))
    for serial in (1, 1 << 127):
        with pytest.raises(ValueError, match="16-byte serials"):
            template.tbs(KeyUsage.DS, serial=serial, point=point, eui=bytes(8))


def test_a_notbefore_after_2049_is_a_generalized_time(device_ca: CertificateAuthority) -> None:
    later = dt.datetime(2051, 6, 1, tzinfo=dt.UTC)
    template = DeviceCertificateTemplate(device_ca, later)
    credential = template.credential(bytes.fromhex("00DCC50000000001"), KeyUsage.KA)
    made = x509.load_der_x509_certificate(credential.certificate_der)
    assert made.not_valid_before_utc == later
    assert profile_problems(made) == [] and verify_issued_by(made, device_ca.certificate)


def test_estate_credentials_are_read_like_filed_ones(tmp_path: Path) -> None:
    home = tmp_path / "home"
    layout = init_pki(home)
    euis = _euis(40)
    report = issue_device_estate(home, euis, workers=1, devices_per_pack=16)
    assert (report.devices, report.issued, report.held, report.packs) == (40, 80, 0, 3)
    assert not list((layout.keystore_dir / "certs").glob("00dcc5*"))  # in packs, not files

    ca = _device_ca_of(home)
    template = DeviceCertificateTemplate(ca, SMKI_NOT_BEFORE)
    store = KeyStore(layout.keystore_dir)  # a fresh reader, as another service would open it
    assert len(store) == 80 + 3  # and the DCC's own three
    for eui in euis:
        for usage in USAGES:
            assert (eui, usage) in store
            entry = store.get(eui, usage)
            assert isinstance(entry.private_key, ec.EllipticCurvePrivateKey)
            assert entry.private_key.public_key() == entry.certificate.public_key()
            assert store.private_key(eui, usage).public_key() == entry.certificate.public_key()
            assert store.certificate(eui, usage) == entry.certificate
            assert entry.role is None and eui_of(entry.certificate) == eui
            assert usage_of(entry.certificate) is usage
            assert profile_problems(entry.certificate) == []
            assert verify_issued_by(entry.certificate, ca.certificate)
            assert (
                _rebuilt_tbs(template, entry.certificate) == entry.certificate.tbs_certificate_bytes
            )
            found = store.by_serial(entry.serial)
            assert found is not None and (found.eui, found.usage) == (eui, usage)
    assert [e.usage for e in store.find(euis[7])] == [KeyUsage.DS, KeyUsage.KA]
    assert (bytes.fromhex("00DCC50000009999"), KeyUsage.DS) not in store
    points = {
        store.certificate(eui, usage)
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        for eui in euis
        for usage in USAGES
    }
    assert len(points) == 80  # every key its own


def test_the_pool_gives_the_same_store_content_as_one_by_one(tmp_path: Path) -> None:
    euis = _euis(48)
    contents = []
    for name, issue in (
        ("pool", lambda home: issue_device_estate(home, euis, workers=2, devices_per_pack=8)),
        ("inline", lambda home: issue_device_estate(home, euis, workers=1, devices_per_pack=8)),
        ("one-by-one", lambda home: issue_devices(home, euis)),
    ):
        home = tmp_path / name
        layout = init_pki(home)
        issue(home)
        template = DeviceCertificateTemplate(_device_ca_of(home), SMKI_NOT_BEFORE)
        store = KeyStore(layout.keystore_dir)
        content = set()
        for entry in store.entries():
            if entry.eui not in euis:
                continue
            assert entry.private_key is not None
            assert entry.private_key.public_key() == entry.certificate.public_key()
            # Each certificate is exactly the template's for its own serial, key and EUI.
            assert (
                _rebuilt_tbs(template, entry.certificate) == entry.certificate.tbs_certificate_bytes
            )
            assert store.by_serial(entry.serial) is not None
            content.add((entry.eui, entry.usage, entry.role))
        contents.append(content)
    assert (
        contents[0]
        == contents[1]
        == contents[2]
        == {(eui, usage, None) for eui in euis for usage in USAGES}
    )


def test_a_second_run_keeps_every_credential(tmp_path: Path) -> None:
    home = tmp_path / "home"
    layout = init_pki(home)
    euis = _euis(20)
    issue_device_estate(home, euis, workers=1, devices_per_pack=8)
    store = KeyStore(layout.keystore_dir)
    before = {(eui, u): store.get(eui, u).serial for eui in euis for u in USAGES}
    packs = sorted(os.listdir(layout.keystore_dir / "packs"))
    again = issue_device_estate(home, euis + _euis(4, base=0x00DCC500_00001000), workers=2)
    assert (again.issued, again.held) == (8, 40)
    assert {(eui, u): store.get(eui, u).serial for eui in euis for u in USAGES} == before
    assert set(packs) < set(os.listdir(layout.keystore_dir / "packs"))


def test_credentials_from_another_device_ca_are_reissued(tmp_path: Path) -> None:
    euis = _euis(12)
    old = tmp_path / "old"
    init_pki(old)
    issue_device_estate(old, euis[:6], workers=1)  # packed, from the old CA
    issue_devices(old, euis[6:])  # as files, from the old CA
    new = tmp_path / "new"
    layout = init_pki(new)
    shutil.rmtree(layout.keystore_dir)
    shutil.copytree(PkiLayout.of(old).keystore_dir, layout.keystore_dir)

    report = issue_device_estate(new, euis, workers=1)
    assert (report.issued, report.held) == (24, 0)
    ca = _device_ca_of(new)
    store = KeyStore(layout.keystore_dir)
    for eui in euis:
        for usage in USAGES:
            entry = store.get(eui, usage)
            assert verify_issued_by(entry.certificate, ca.certificate)
            assert entry.private_key is not None
            assert entry.private_key.public_key() == entry.certificate.public_key()
            assert not store.certificate_path(eui, usage).exists()  # the stale files are gone


def _issue_forever(home: str, euis: list[bytes]) -> None:
    issue_device_estate(Path(home), euis, workers=1, devices_per_pack=64)


def _check_whole(store: KeyStore) -> set[tuple[bytes, KeyUsage]]:
    """Every pack and index line readable to the end; the slots the packs hold."""
    held: set[tuple[bytes, KeyUsage]] = set()
    packs = store.root / "packs"
    for path in packs.iterdir() if packs.is_dir() else ():
        if path.name.startswith("."):
            continue  # a temp file: never read, never named like a pack
        pack = _Pack(path)
        count = pack.count
        assert path.stat().st_size > 16 + 22 * count
        for eui, usage in store_slots(store, path):
            found = pack.find(eui, usage)
            assert found is not None
            x509.load_der_x509_certificate(found[0])
            serialization.load_der_private_key(found[1], password=None)
            held.add((eui, usage))
        assert len([s for s in store_slots(store, path)]) == count
    assert (store.root / "index.jsonl").read_bytes().endswith(b"\n")
    return held


def store_slots(store: KeyStore, path: Path) -> list[tuple[bytes, KeyUsage]]:
    data = path.read_bytes()
    count = int.from_bytes(data[12:16], "big")
    slots = []
    for n in range(count):
        record = data[16 + 22 * n : 16 + 22 * (n + 1)]
        slots.append((record[:8], USAGES[record[8]]))
    return slots


def test_an_interrupted_bulk_issue_leaves_no_torn_file_and_a_rerun_completes_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    layout = init_pki(home)
    euis = _euis(640)
    packs = layout.keystore_dir / "packs"
    worker = multiprocessing.get_context("fork").Process(
        target=_issue_forever, args=(str(home), euis)
    )
    worker.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if packs.is_dir() and len([p for p in os.listdir(packs) if p.endswith(".pack")]) >= 2:
            break
        time.sleep(0.005)
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)  # mid-run: some packs in, one being written
    worker.join()
    store = KeyStore(layout.keystore_dir)
    held = _check_whole(store)
    assert 0 < len(held) < 2 * len(euis), "the kill should land part way"
    for eui, usage in held:
        entry = store.get(eui, usage)
        assert entry.private_key is not None

    report = issue_device_estate(home, euis, workers=2, devices_per_pack=64)
    assert report.held == len(held)
    assert report.issued == 2 * len(euis) - len(held)
    assert not [p for p in os.listdir(packs) if p.startswith(".")]  # temp files cleared
    store = KeyStore(layout.keystore_dir)
    assert _check_whole(store) == {(eui, usage) for eui in euis for usage in USAGES}
    assert len(store) == 2 * len(euis) + 3


def test_a_pack_whose_index_lines_were_lost_is_indexed_by_the_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    layout = init_pki(home)
    euis = _euis(10)

    def die(self: KeyStore, lines: list[bytes]) -> None:
        raise KeyboardInterrupt("killed between the pack's rename and its index lines")

    monkeypatch.setattr(keystore_module.KeyStore, "_append_index", die)
    with pytest.raises(KeyboardInterrupt):
        issue_device_estate(home, euis, workers=1)
    monkeypatch.undo()
    store = KeyStore(layout.keystore_dir)
    serials = {(eui, u): store.certificate(eui, u).serial_number for eui in euis for u in USAGES}
    assert all(store.by_serial(s) is None for s in serials.values())  # readable, not indexed

    report = issue_device_estate(home, euis, workers=1)
    assert (report.issued, report.held) == (0, 20)  # kept, not issued again
    store = KeyStore(layout.keystore_dir)
    for (eui, usage), serial in serials.items():
        found = store.by_serial(serial)
        assert found is not None and (found.eui, found.usage) == (eui, usage)


def test_a_cancelled_issue_leaves_a_whole_store_that_a_rerun_completes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    layout = init_pki(home)
    euis = _euis(400)
    issuing = DeviceEstateIssue(home, euis, workers=2, devices_per_pack=16)
    issuing.cancel()  # e.g. the database seeding beside it failed
    _check_whole(KeyStore(layout.keystore_dir))
    issue_device_estate(home, euis, workers=2, devices_per_pack=16)
    store = KeyStore(layout.keystore_dir)
    assert _check_whole(store) >= {(eui, usage) for eui in euis for usage in USAGES}
    for eui in euis[::37]:
        for usage in USAGES:
            entry = store.get(eui, usage)
            assert entry.private_key is not None
            assert entry.private_key.public_key() == entry.certificate.public_key()
    assert len(store) == 2 * len(euis) + 3
