"""Importing DCC's test key sets (ZAZ1, RTDS): dccsim then verifies and signs as DCC Boxed does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.duis.codes import DuisError
from dccsim.duis.xml import parse_safely
from dccsim.duis.xmldsig import sign, verify
from dccsim.gbcs.crypto import verify_frame_signature
from dccsim.gbcs.frames import (
    GeneralCiphering,
    GeneralSigning,
    decode_message,
    parse_hex_or_base64,
)
from dccsim.pki.devpki import DCC_EUI, init_pki
from dccsim.pki.external import import_rtds_keystore, import_zaz1
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import KeyUsage, Role

SUPPLIER = bytes.fromhex("90B3D51F30010000")
SUPPLIER2 = bytes.fromhex("90B3D51F30030000")
DSP_SERIALS = {
    "read-inventory-response-5.4.xml": 20315062944123339095836004026371736578,
    "readfw-response.xml": 50669612984035780968362471400449834504,
}
SIGNED_REQUEST = "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS-signed.XML"


def _zaz1(reference_dir: Path) -> tuple[Path, Path]:
    return reference_dir / "smki" / "zaz1", reference_dir / "smki" / "zaz1-keystore.json"


@pytest.fixture(scope="module")
def zaz1_store(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    store = KeyStore(tmp_path_factory.mktemp("zaz1") / "keystore")
    import_zaz1(store, *_zaz1(reference_dir))
    return store


@pytest.fixture(scope="module")
def rtds_store(reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    store = KeyStore(tmp_path_factory.mktemp("rtds") / "keystore")
    import_rtds_keystore(store, reference_dir / "gbcs" / "keystore")
    return store


def _find(store: KeyStore) -> Callable[[int], x509.Certificate | None]:
    def find(serial: int) -> x509.Certificate | None:
        entry = store.by_serial(serial)
        return entry.certificate if entry is not None else None

    return find


# ------------------------------------------------------------------------------------- ZAZ1


def test_zaz1_import_reports_every_certificate_and_skips_the_explicit_null_pair(
    reference_dir: Path, tmp_path: Path
) -> None:
    report = import_zaz1(KeyStore(tmp_path / "ks"), *_zaz1(reference_dir))
    names = {c.name for c in report.imported}
    assert len(report.imported) == 33
    assert all(c.has_private_key for c in report.imported)
    assert {"Z1-supplier-ds", "Z1b-supplier-ds", "Z1-supplierPP-ka"} <= names
    assert {"Z1-accessControlBroker-dSPXmlSign", "dsp-xml-sign-90B3D51F30000002-ds-pre-1.4.1"} <= (
        names
    )
    assert sorted(item for item, _ in report.skipped) == ["mdr-ds", "mdr-ka"]
    assert len(report.warnings) == 2
    assert all("explicit NULL" in w for w in report.warnings)


def test_zaz1_entries_are_legacy_and_their_expiry_is_not_enforced(zaz1_store: KeyStore) -> None:
    entry = zaz1_store.get(SUPPLIER, KeyUsage.DS)
    assert entry.legacy and entry.source == "zaz1" and entry.name == "Z1-supplier-ds"
    assert entry.role == Role.SUPPLIER
    later = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert later > entry.certificate.not_valid_after_utc
    assert not entry.expired(later)


def test_every_zaz1_certificate_is_found_by_serial_with_its_key(
    reference_dir: Path, tmp_path: Path
) -> None:
    store = KeyStore(tmp_path / "ks")
    report = import_zaz1(store, *_zaz1(reference_dir))
    for credential in report.imported:
        entry = store.by_serial(credential.serial)
        assert entry is not None, credential.name
        assert entry.private_key is not None
        assert entry.usage is credential.usage


@pytest.mark.parametrize("sample", sorted(DSP_SERIALS))
def test_dcc_boxed_responses_verify_with_the_imported_dsp_certificates(
    reference_dir: Path, zaz1_store: KeyStore, sample: str
) -> None:
    root = parse_safely((reference_dir / "duis" / "samples" / sample).read_bytes())
    signer = verify(root, find_certificate=_find(zaz1_store))
    assert signer.serial_number == DSP_SERIALS[sample]
    entry = zaz1_store.by_serial(signer.serial_number)
    assert entry is not None and entry.eui == DCC_EUI and entry.usage is KeyUsage.XML_SIGN


def test_the_bad_signature_sample_fails_with_the_imported_set(
    reference_dir: Path, zaz1_store: KeyStore
) -> None:
    path = reference_dir / "duis" / "samples" / "readfw-response-badsignature.xml"
    with pytest.raises(DuisError, match="signature"):
        verify(parse_safely(path.read_bytes()), find_certificate=_find(zaz1_store))


def test_a_request_signed_with_the_zaz1_supplier_xml_sign_key_verifies(
    reference_dir: Path, zaz1_store: KeyStore
) -> None:
    entry = zaz1_store.get(SUPPLIER, KeyUsage.XML_SIGN)
    assert isinstance(entry.private_key, ec.EllipticCurvePrivateKey)
    assert entry.role == Role.XML_SIGN
    root = parse_safely((reference_dir / "duis" / "samples" / SIGNED_REQUEST).read_bytes())
    sign(root, private_key=entry.private_key, certificate=entry.certificate)
    assert verify(root, find_certificate=_find(zaz1_store)) == entry.certificate


def test_zaz1_does_not_displace_dccsims_own_dcc_identities_unless_asked(
    reference_dir: Path, tmp_path: Path
) -> None:
    layout = init_pki(tmp_path)
    store = layout.keystore()
    own = store.get(DCC_EUI, KeyUsage.XML_SIGN)
    report = import_zaz1(store, *_zaz1(reference_dir))
    assert store.get(DCC_EUI, KeyUsage.XML_SIGN).serial == own.serial
    assert any("kept the store's own credential" in w for w in report.warnings)
    # ...but DCC Boxed's DSP certificates still verify its responses, found by serial.
    assert store.by_serial(DSP_SERIALS["readfw-response.xml"]) is not None
    import_zaz1(store, *_zaz1(reference_dir), make_primary=True)
    assert store.get(DCC_EUI, KeyUsage.XML_SIGN).name == "Z1-accessControlBroker-dSPXmlSign"


def test_zaz1_reimport_changes_nothing_it_reports(reference_dir: Path, tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "ks")
    first = import_zaz1(store, *_zaz1(reference_dir))
    second = import_zaz1(store, *_zaz1(reference_dir))
    assert first.serials() == second.serials()
    assert [(c.name, c.primary) for c in first.imported] == [
        (c.name, c.primary) for c in second.imported
    ]


def test_zaz1_from_the_json_alone_holds_the_keyagreement_pairs(
    reference_dir: Path, tmp_path: Path
) -> None:
    store = KeyStore(tmp_path / "ks")
    import_zaz1(store, None, _zaz1(reference_dir)[1])
    entry = store.get(SUPPLIER, KeyUsage.KA)
    assert entry.name == "Z1-supplier-ka" and entry.private_key is not None


# ------------------------------------------------------------------------------------- RTDS


def test_rtds_import_holds_the_400_device_certificates_and_the_remote_party_pairs(
    reference_dir: Path, tmp_path: Path
) -> None:
    store = KeyStore(tmp_path / "ks")
    report = import_rtds_keystore(store, reference_dir / "gbcs" / "keystore")
    devices = [c for c in report.imported if c.eui.hex().startswith("00db1234567890")]
    assert len(devices) == 400 and not any(c.has_private_key for c in devices)
    assert store.get(SUPPLIER, KeyUsage.KA).private_key is not None
    assert store.get(SUPPLIER, KeyUsage.KA).legacy
    skipped = dict(report.skipped)
    assert "private key without a certificate" in skipped["abababababababab-ka.key"]
    assert "public key" in skipped["fffffffffffffffe-ka"]
    # 90b3d51f30000007-ka is a copy of supplier2's KA pair: filed under the EUI it names.
    assert "same certificate as 90b3d51f30030000-ka" in skipped["90b3d51f30000007-ka"]
    assert store.get(SUPPLIER2, KeyUsage.KA).name == "90b3d51f30030000-ka"
    prepayment = [c for c in report.imported if c.name.endswith("pp-ka")]
    assert len(prepayment) == 2 and not any(c.primary for c in prepayment)


def _general_signing(message: GeneralCiphering | GeneralSigning) -> GeneralSigning:
    return message.general_signing if isinstance(message, GeneralCiphering) else message


def test_rtds_device_certificates_verify_the_rtds_response_and_alert_signatures(
    reference_dir: Path, rtds_store: KeyStore
) -> None:
    verified = 0
    for path in sorted((reference_dir / "gbcs" / "rtds").rglob("*.HEX")):
        if "_RESPONSE_" not in path.name and "_ALERT_" not in path.name:
            continue
        frame = _general_signing(decode_message(parse_hex_or_base64(path.read_text())))
        if frame.signature is None or not frame.originator_title.startswith(b"\x00\xdb"):
            continue
        public_key = rtds_store.certificate(frame.originator_title, KeyUsage.DS).public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        assert verify_frame_signature(frame, public_key), path.name
        verified += 1
    print(f"\nRTDS device signatures verified through the imported key store: {verified}")
    assert verified >= 100


def test_an_rtds_signature_does_not_verify_with_another_devices_certificate(
    reference_dir: Path, rtds_store: KeyStore
) -> None:
    for path in sorted((reference_dir / "gbcs" / "rtds").rglob("*_RESPONSE_*.HEX")):
        frame = _general_signing(decode_message(parse_hex_or_base64(path.read_text())))
        if frame.signature is not None and frame.originator_title.startswith(b"\x00\xdb"):
            break
    else:
        pytest.fail("no signed device response among the vectors")
    other = bytearray(frame.originator_title)
    other[-1] ^= 0x01
    public_key = rtds_store.certificate(bytes(other), KeyUsage.DS).public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert not verify_frame_signature(frame, public_key)
