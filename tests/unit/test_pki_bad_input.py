"""Bad input to the test PKI: each refused with an error that names what is wrong."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from dccsim.pki.external import import_rtds_keystore
from dccsim.pki.keystore import KeyStore
from dccsim.pki.smki import (
    CertificateAuthority,
    KeyUsage,
    ProfileError,
    Role,
    check_smki_certificate,
    issue_device_certificate,
    issue_organisation_certificate,
    parse_smki_certificate,
    parse_smki_private_key,
    role_from,
)

NOT_BEFORE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
EUI = bytes.fromhex("00DB123456789001")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    root = CertificateAuthority.create_root(not_before=NOT_BEFORE)
    return CertificateAuthority.create_issuing(root, common_name="Z9", not_before=NOT_BEFORE)


def _certificate(
    *,
    public_key: object,
    signing_key: CertificateIssuerPrivateKeyTypes,
    digital_signature: bool = True,
    key_agreement: bool = False,
    unit: str = "02",
) -> x509.Certificate:
    usage = x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(4242)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_BEFORE + dt.timedelta(days=1))
        .add_extension(usage, critical=True)
        .sign(signing_key, hashes.SHA256())
    )


P256 = ec.generate_private_key(ec.SECP256R1())


def test_malformed_pem_is_named() -> None:
    text = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    with pytest.raises(ProfileError, match=r"ds\.pem: malformed PEM certificate"):
        parse_smki_certificate(text, source="ds.pem")


def test_a_pem_that_holds_a_key_is_not_a_certificate() -> None:
    pem = P256.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ProfileError, match="PEM holds a private key, not a certificate"):
        parse_smki_certificate(pem)


def test_garbage_is_neither_pem_nor_der() -> None:
    with pytest.raises(ProfileError, match="neither PEM nor DER"):
        parse_smki_certificate(b"\x01\x02\x03")


def test_malformed_pem_private_key_is_named() -> None:
    with pytest.raises(ProfileError, match=r"ka\.key: malformed PEM private key"):
        parse_smki_private_key(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", source="ka.key"
        )


def test_a_p384_certificate_is_refused_naming_the_curve() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    certificate = _certificate(public_key=key.public_key(), signing_key=P256)
    with pytest.raises(ProfileError, match=r"P-384 \(secp384r1\) EC key.*P-256"):
        check_smki_certificate(certificate)


def test_an_rsa_certificate_is_refused_naming_rsa() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = _certificate(public_key=key.public_key(), signing_key=P256)
    with pytest.raises(ProfileError, match="RSA-2048 key"):
        check_smki_certificate(certificate)


def test_p384_and_rsa_private_keys_are_refused_naming_them() -> None:
    for key, name in (
        (ec.generate_private_key(ec.SECP384R1()), "P-384"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSA-2048"),
    ):
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with pytest.raises(ProfileError, match=f"{name}.*private key: GBCS keys are P-256"):
            parse_smki_private_key(pem)


def test_issuing_for_a_p384_key_is_refused_naming_the_curve(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ProfileError, match=r"not a P-384 \(secp384r1\) EC key"):
        issue_device_certificate(
            ca, eui=EUI, usage=KeyUsage.DS, public_key=key.public_key(), not_before=NOT_BEFORE
        )


def test_a_certificate_allowing_both_ds_and_ka_is_refused() -> None:
    certificate = _certificate(
        public_key=P256.public_key(), signing_key=P256, digital_signature=True, key_agreement=True
    )
    with pytest.raises(ProfileError, match="allows both digitalSignature and keyAgreement"):
        check_smki_certificate(certificate)


def test_a_certificate_naming_an_unknown_role_is_refused() -> None:
    certificate = _certificate(public_key=P256.public_key(), signing_key=P256, unit="42")
    with pytest.raises(ProfileError, match="OU '42' names no GBCS remote-party role"):
        check_smki_certificate(certificate)


@pytest.mark.parametrize("value", ["retailer", "0x42", "300", ""])
def test_an_unknown_role_name_is_refused_listing_the_known_ones(value: str) -> None:
    with pytest.raises(ProfileError, match=f"unknown role '{value}'.*02 supplier"):
        role_from(value)


def test_known_roles_read_by_name_hex_and_number() -> None:
    assert role_from("supplier") is Role.SUPPLIER
    assert role_from("network_operator") is Role.NETWORK_OPERATOR
    assert role_from("87") is Role.XML_SIGN
    assert role_from("0x89") is Role.DSP_XML_SIGN
    assert role_from(137) is Role.DSP_XML_SIGN


def test_issuing_an_xml_sign_certificate_for_a_supplier_role_is_refused(
    ca: CertificateAuthority,
) -> None:
    with pytest.raises(ProfileError, match="XML-signing certificate has role 87 or 89, not 02"):
        issue_organisation_certificate(
            ca,
            eui=EUI,
            role=Role.SUPPLIER,
            usage=KeyUsage.XML_SIGN,
            public_key=P256.public_key(),
            not_before=NOT_BEFORE,
            not_after=NOT_BEFORE + dt.timedelta(days=1),
        )


def test_an_import_skips_bad_files_naming_each_problem(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    good = issue_device_certificate(
        ca, eui=EUI, usage=KeyUsage.DS, public_key=P256.public_key(), not_before=NOT_BEFORE
    )
    (folder / "00db123456789001-ds.pem").write_bytes(good.public_bytes(serialization.Encoding.PEM))
    (folder / "broken-ds.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (folder / "rsa-ds.pem").write_bytes(
        _certificate(public_key=rsa_key.public_key(), signing_key=P256).public_bytes(
            serialization.Encoding.PEM
        )
    )
    both = _certificate(public_key=P256.public_key(), signing_key=P256, key_agreement=True)
    (folder / "both-ds.pem").write_bytes(both.public_bytes(serialization.Encoding.PEM))
    report = import_rtds_keystore(KeyStore(tmp_path / "ks"), folder)
    assert [c.name for c in report.imported] == ["00db123456789001-ds"]
    skipped = dict(report.skipped)
    assert "malformed PEM" in skipped["broken-ds"]
    assert "RSA-2048" in skipped["rsa-ds"]
    assert "both digitalSignature and keyAgreement" in skipped["both-ds"]
