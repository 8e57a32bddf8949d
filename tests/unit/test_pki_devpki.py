"""The development PKI: init_pki, issue_party and issue_device, and their idempotence."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from dccsim.pki.dccki import participant_identity, subject_alt_names
from dccsim.pki.devpki import (
    DCC_EUI,
    PkiError,
    PkiLayout,
    init_pki,
    issue_device,
    issue_devices,
    issue_party,
)
from dccsim.pki.files import load_certificate, load_certificates, load_private_key
from dccsim.pki.smki import (
    KeyUsage,
    Role,
    eui_of,
    profile_problems,
    role_of,
    usage_of,
    verify_issued_by,
)

SUPPLIER = bytes.fromhex("90B3D51F30010000")


def snapshot(directory: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under directory: content, mtime and mode."""
    return {
        str(path.relative_to(directory)): (
            path.read_bytes(),
            path.stat().st_mtime_ns,
            path.stat().st_mode & 0o777,
        )
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def layout(home: Path) -> PkiLayout:
    return init_pki(home)


def _file_paths(layout: PkiLayout) -> list[Path]:
    return [
        value
        for value in dataclasses.asdict(layout).values()
        if isinstance(value, Path) and value.suffix in (".pem", ".key")
    ]


def test_init_creates_every_file_in_the_layout(layout: PkiLayout, home: Path) -> None:
    assert layout.pki_dir == home.absolute() / "pki"
    assert layout.tls_server_cert == home.absolute() / "pki" / "tls" / "server.pem"
    assert layout.wan_client_key == home.absolute() / "pki" / "tls" / "wan-client.key"
    for path in _file_paths(layout):
        assert path.is_file(), path


def test_init_twice_changes_nothing(layout: PkiLayout, home: Path) -> None:
    before = snapshot(home)
    time.sleep(0.01)  # so a rewrite would show in the mtimes
    assert init_pki(home) == layout
    assert init_pki(home, hostnames=["localhost"], ips=["127.0.0.1"]) == layout
    assert snapshot(home) == before


def test_private_keys_are_0600_and_directories_0700(layout: PkiLayout) -> None:
    keys = list(layout.pki_dir.rglob("*.key"))
    assert len(keys) >= 10
    for key in keys:
        assert key.stat().st_mode & 0o777 == 0o600, key
    for directory in [layout.pki_dir, *(p for p in layout.pki_dir.rglob("*") if p.is_dir())]:
        assert directory.stat().st_mode & 0o777 == 0o700, directory


def test_smki_cas_chain_to_the_root(layout: PkiLayout) -> None:
    root = load_certificate(layout.smki_root_cert)
    issuing = load_certificate(layout.smki_issuing_cert)
    device_ca = load_certificate(layout.smki_device_ca_cert)
    for certificate in (root, issuing, device_ca):
        assert profile_problems(certificate) == []
        assert verify_issued_by(certificate, root)
    assert role_of(issuing) == Role.ISSUING_AUTHORITY
    assert load_certificates(layout.smki_ca_bundle) == [root, issuing, device_ca]


def test_the_dcc_identities_are_in_the_key_store(layout: PkiLayout) -> None:
    store = layout.keystore()
    issuing = load_certificate(layout.smki_issuing_cert)
    expected = {
        KeyUsage.DS: Role.ACB,
        KeyUsage.KA: Role.ACB,
        KeyUsage.XML_SIGN: Role.DSP_XML_SIGN,
    }
    for usage, role in expected.items():
        entry = store.get(DCC_EUI, usage)
        assert entry.role == role
        assert entry.private_key is not None
        assert profile_problems(entry.certificate) == []
        assert (eui_of(entry.certificate), role_of(entry.certificate)) == (DCC_EUI, role)
        assert usage_of(entry.certificate) is usage
        assert verify_issued_by(entry.certificate, issuing)


def test_tls_certificates_come_from_the_dccki_ca(layout: PkiLayout) -> None:
    ca = load_certificate(layout.dccki_ca_cert)
    assert load_certificate(layout.tls_ca) == ca
    for cert_path, key_path in (
        (layout.tls_server_cert, layout.tls_server_key),
        (layout.gateway_server_cert, layout.gateway_server_key),
        (layout.wan_client_cert, layout.wan_client_key),
    ):
        certificate = load_certificate(cert_path)
        assert verify_issued_by(certificate, ca)
        assert load_private_key(key_path).public_key() == certificate.public_key()
    assert subject_alt_names(load_certificate(layout.tls_server_cert)) == (
        ["localhost"],
        ["127.0.0.1"],
    )
    assert participant_identity(load_certificate(layout.wan_client_cert)) == ("DCC", DCC_EUI)


def test_new_hostnames_reissue_only_the_server_certificates(layout: PkiLayout, home: Path) -> None:
    before = snapshot(home)
    init_pki(home, hostnames=["localhost", "dccsim.test"], ips=["127.0.0.1", "10.0.0.5"])
    after = snapshot(home)
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {
        "pki/tls/server.pem",
        "pki/tls/server.key",
        "pki/tls/gateway-server.pem",
        "pki/tls/gateway-server.key",
    }
    assert subject_alt_names(load_certificate(layout.tls_server_cert)) == (
        ["localhost", "dccsim.test"],
        ["127.0.0.1", "10.0.0.5"],
    )


def test_init_without_names_keeps_the_names_given_before(layout: PkiLayout, home: Path) -> None:
    init_pki(home, hostnames=["dccsim.test"], ips=["10.0.0.5"])
    before = snapshot(home)
    init_pki(home)
    assert snapshot(home) == before
    assert subject_alt_names(load_certificate(layout.gateway_server_cert)) == (
        ["dccsim.test"],
        ["10.0.0.5"],
    )


def test_a_lost_issuing_key_is_replaced_and_the_dcc_identities_reissued(
    layout: PkiLayout, home: Path
) -> None:
    old_root = layout.smki_root_cert.read_bytes()
    old_acb = layout.keystore().get(DCC_EUI, KeyUsage.DS).serial
    layout.smki_issuing_key.unlink()
    init_pki(home)
    assert layout.smki_root_cert.read_bytes() == old_root
    issuing = load_certificate(layout.smki_issuing_cert)
    acb = layout.keystore().get(DCC_EUI, KeyUsage.DS)
    assert acb.serial != old_acb
    assert verify_issued_by(acb.certificate, issuing)


# --------------------------------------------------------------------------------------------
# issue_party
# --------------------------------------------------------------------------------------------

BUNDLE_FILES = {
    "ds.pem",
    "ds.key",
    "ka.pem",
    "ka.key",
    "xml-sign.pem",
    "xml-sign.key",
    "tls-client.pem",
    "tls-client.key",
    "dccki-ca.pem",
    "smki-ca.pem",
    "README.md",
}


def test_party_bundle_holds_every_file(layout: PkiLayout, tmp_path: Path) -> None:
    out = tmp_path / "supplier1"
    bundle = issue_party(
        layout.home, eui=SUPPLIER, role=Role.SUPPLIER, user_id="SUPPLIER1", out_dir=out
    )
    names = {p.name for p in out.iterdir()}
    assert names >= BUNDLE_FILES
    for name in names:
        mode = (out / name).stat().st_mode & 0o777
        assert mode == (0o600 if name.endswith(".key") else 0o644), name
    assert bundle.ds_cert == out / "ds.pem" and bundle.readme == out / "README.md"
    readme = bundle.readme.read_text()
    for name in BUNDLE_FILES - {"README.md"}:
        assert f"`{name}`" in readme, name


def test_party_certificates_name_the_party(layout: PkiLayout, tmp_path: Path) -> None:
    bundle = issue_party(
        layout.home, eui=SUPPLIER, role=Role.SUPPLIER, user_id="SUPPLIER1", out_dir=tmp_path / "b"
    )
    issuing = load_certificate(layout.smki_issuing_cert)
    for cert_path, key_path, role, usage in (
        (bundle.ds_cert, bundle.ds_key, Role.SUPPLIER, KeyUsage.DS),
        (bundle.ka_cert, bundle.ka_key, Role.SUPPLIER, KeyUsage.KA),
        (bundle.xml_sign_cert, bundle.xml_sign_key, Role.XML_SIGN, KeyUsage.XML_SIGN),
    ):
        certificate = load_certificate(cert_path)
        assert profile_problems(certificate) == []
        assert (eui_of(certificate), role_of(certificate), usage_of(certificate)) == (
            SUPPLIER,
            role,
            usage,
        )
        assert verify_issued_by(certificate, issuing)
        assert load_private_key(key_path).public_key() == certificate.public_key()
        # dccsim holds the same certificate, so it can check the party's signatures.
        assert layout.keystore().get(SUPPLIER, usage).certificate == certificate
    tls = load_certificate(bundle.tls_client_cert)
    assert participant_identity(tls) == ("SUPPLIER1", SUPPLIER)
    assert verify_issued_by(tls, load_certificate(bundle.dccki_ca))
    assert load_certificates(bundle.smki_ca)[1] == issuing
    assert role_of(load_certificate(bundle.dcc_xml_sign_cert)) == Role.DSP_XML_SIGN


def test_issue_party_twice_changes_nothing(layout: PkiLayout, tmp_path: Path) -> None:
    out = tmp_path / "b"
    first = issue_party(
        layout.home, eui=SUPPLIER, role=Role.SUPPLIER, user_id="SUPPLIER1", out_dir=out
    )
    before, store_before = snapshot(out), snapshot(layout.pki_dir)
    time.sleep(0.01)
    second = issue_party(
        layout.home, eui=SUPPLIER, role=Role.SUPPLIER, user_id="SUPPLIER1", out_dir=out
    )
    assert second == first
    assert snapshot(out) == before
    assert snapshot(layout.pki_dir) == store_before


def test_a_second_bundle_directory_gets_the_same_credentials(
    layout: PkiLayout, tmp_path: Path
) -> None:
    one = issue_party(
        layout.home, eui=SUPPLIER, role=Role.SUPPLIER, user_id="S1", out_dir=tmp_path / "one"
    )
    two = issue_party(
        layout.home, eui=SUPPLIER, role=Role.SUPPLIER, user_id="S1", out_dir=tmp_path / "two"
    )
    assert snapshot(one.out_dir).keys() == snapshot(two.out_dir).keys()
    for name in BUNDLE_FILES:
        assert (one.out_dir / name).read_bytes() == (two.out_dir / name).read_bytes()


def test_an_eui_cannot_change_role(layout: PkiLayout, tmp_path: Path) -> None:
    issue_party(layout.home, eui=SUPPLIER, role=Role.SUPPLIER, user_id="S1", out_dir=tmp_path)
    with pytest.raises(PkiError, match="role"):
        issue_party(
            layout.home, eui=SUPPLIER, role=Role.NETWORK_OPERATOR, user_id="S1", out_dir=tmp_path
        )


def test_parties_cannot_take_the_dcc_eui_or_a_ca_role(layout: PkiLayout, tmp_path: Path) -> None:
    with pytest.raises(PkiError):
        issue_party(layout.home, eui=DCC_EUI, role=Role.SUPPLIER, user_id="S", out_dir=tmp_path)
    with pytest.raises(PkiError):
        issue_party(
            layout.home, eui=SUPPLIER, role=Role.DSP_XML_SIGN, user_id="S", out_dir=tmp_path
        )


def test_issuing_before_init_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="dccsim pki init"):
        issue_party(
            tmp_path / "nowhere", eui=SUPPLIER, role=Role.SUPPLIER, user_id="S", out_dir=tmp_path
        )
    with pytest.raises(PkiError, match="dccsim pki init"):
        issue_device(tmp_path / "nowhere", eui=bytes.fromhex("00DB123456789001"))


# --------------------------------------------------------------------------------------------
# issue_device
# --------------------------------------------------------------------------------------------


def test_device_credentials_go_into_the_key_store_with_their_keys(layout: PkiLayout) -> None:
    eui = bytes.fromhex("00DB123456789001")
    ds, ka = issue_device(layout.home, eui=eui)
    device_ca = load_certificate(layout.smki_device_ca_cert)
    for entry, usage in ((ds, KeyUsage.DS), (ka, KeyUsage.KA)):
        assert (entry.eui, entry.usage, entry.role) == (eui, usage, None)
        assert profile_problems(entry.certificate) == []
        assert eui_of(entry.certificate) == eui and usage_of(entry.certificate) is usage
        assert verify_issued_by(entry.certificate, device_ca)
        stored = layout.keystore().get(eui, usage)
        assert stored.certificate == entry.certificate and stored.private_key is not None


def test_issue_device_twice_returns_the_same_credentials(layout: PkiLayout) -> None:
    eui = bytes.fromhex("00DB123456789002")
    first = issue_device(layout.home, eui=eui)
    second = issue_device(layout.home, eui=eui)
    assert [e.serial for e in first] == [e.serial for e in second]


def test_hundreds_of_devices_are_issued_quickly(layout: PkiLayout) -> None:
    euis = [(0x00DB_1234_0000_0000 + i).to_bytes(8, "big") for i in range(500)]
    start = time.perf_counter()
    pairs = issue_devices(layout.home, euis)
    elapsed = time.perf_counter() - start
    assert [ds.eui for ds, _ in pairs] == euis
    assert len(layout.keystore()) == 3 + 2 * len(euis)
    last = layout.keystore().by_serial(pairs[-1][1].serial)
    assert last is not None and last.usage is KeyUsage.KA
    # 0.4 s on a quiet disk, 2.5 s under heavy I/O load; the bound only catches a gross
    # regression (dccsim.pki.bench measures the rate).
    assert elapsed < 10, f"{elapsed:.1f} s for {len(euis)} devices"


def test_a_device_has_different_ds_and_ka_keys(layout: PkiLayout) -> None:
    ds, ka = issue_device(layout.home, eui=bytes.fromhex("00DB1234567890A0"))
    assert ds.certificate.public_key() != ka.certificate.public_key()
    assert ds.serial != ka.serial


def test_a_device_listed_twice_is_issued_once(layout: PkiLayout) -> None:
    eui = bytes.fromhex("00DB1234567890A1")
    first, second = issue_devices(layout.home, [eui, eui])
    assert first == second
    assert layout.keystore().get(eui, KeyUsage.DS).serial == first[0].serial
