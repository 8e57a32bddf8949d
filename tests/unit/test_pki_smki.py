"""SMKI certificates in the GBCS profile, checked field by field.

The field checks below are written independently of dccsim.pki.smki.profile_problems, from the
profile in PROTOCOL.md, and pass on DCC's own ZAZ1 organisation certificates and RTDS device
certificates as well as on the ones dccsim issues: the checker matches reality, and dccsim
matches the checker.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID

from dccsim.pki.files import load_certificate
from dccsim.pki.smki import (
    CertificateAuthority,
    KeyUsage,
    ProfileError,
    Role,
    eui_of,
    issue_device_certificate,
    issue_organisation_certificate,
    key_identifier,
    names_equal,
    profile_problems,
    role_of,
    usage_of,
    verify_issued_by,
)

ORG_POLICY = "1.2.826.0.1.8641679.1.2.1.4"
DEVICE_POLICY = "1.2.826.0.1.1800000.1.2.1.4"
SUPPLIER_EUI = bytes.fromhex("90B3D51F30010000")
DEVICE_EUI = bytes.fromhex("00DB123456789001")
NOT_BEFORE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)

# (file in reference/smki/zaz1, EUI, role, usage)
ZAZ1_ORGANISATION = [
    ("Z1-supplier-ds.pem", "90B3D51F30010000", 0x02, KeyUsage.DS),
    ("Z1-supplier2-ds.pem", "90B3D51F30030000", 0x02, KeyUsage.DS),
    ("Z1-networkOperator-ds.pem", "90B3D51F30020000", 0x03, KeyUsage.DS),
    ("Z1-accessControlBroker-ds.pem", "90B3D51F30000002", 0x04, KeyUsage.DS),
    ("Z1-recovery-ds.pem", "90B3D51F30000001", 0x01, KeyUsage.DS),
    ("Z1-transitionalCoS-ds.pem", "90B3D51F30000004", 0x05, KeyUsage.DS),
    ("Z1-wanProvider-ds.pem", "90B3D51F30000007", 0x06, KeyUsage.DS),
    ("Z1b-supplier-ds.pem", "90B3D51F30010000", 0x02, KeyUsage.DS),
    ("Z1-accessControlBroker-dSPXmlSign.pem", "90B3D51F30000002", 0x89, KeyUsage.XML_SIGN),
    ("dsp-xml-sign-90B3D51F30000002-ds.pem", "90B3D51F30000002", 0x89, KeyUsage.XML_SIGN),
    ("xml-sign-90B3D51F30010000-ds.pem", "90B3D51F30010000", 0x87, KeyUsage.XML_SIGN),
    ("xml-sign-90B3D51F30020000-ds.pem", "90B3D51F30020000", 0x87, KeyUsage.XML_SIGN),
    ("xml-sign-00DB123456780004-ds.pem", "00DB123456780004", 0x87, KeyUsage.XML_SIGN),
]
# Organisation KA certificates ZAZ1 ships in the GBCS key store folder.
GBCS_ORGANISATION = [
    ("90b3d51f30000002-ka.pem", "90B3D51F30000002", 0x04, KeyUsage.KA),
    ("90b3d51f30010000-ka.pem", "90B3D51F30010000", 0x02, KeyUsage.KA),
    ("90b3d51f30010000-pp-ka.pem", "90B3D51F30010000", 0x02, KeyUsage.KA),
    ("90b3d51f30020000-ka.pem", "90B3D51F30020000", 0x03, KeyUsage.KA),
    ("90b3d51f30010008-ds.pem", "90B3D51F30010008", 0x08, KeyUsage.DS),
]
RTDS_DEVICES = [
    "00db123456789001-ds.pem",
    "00db123456789001-ka.pem",
    "00db123456789019-ka.pem",
    "00db12345678904b-ds.pem",
    "00db12345678907d-ka.pem",
    "00db1234567890c8-ds.pem",
    "00db1234567890c8-ka.pem",
]


# --------------------------------------------------------------------------------------------
# An independent profile checker (asserts; written from PROTOCOL.md, not from smki.py)
# --------------------------------------------------------------------------------------------


def _tbs_fields(certificate: x509.Certificate) -> dict[str, bytes]:
    """The raw DER of the TBSCertificate fields we care about, by a tiny DER walk."""

    def tlv(data: bytes, at: int) -> tuple[int, int, int]:  # (tag, content start, end)
        tag, length, at = data[at], data[at + 1], at + 2
        if length & 0x80:
            count = length & 0x7F
            length, at = int.from_bytes(data[at : at + count], "big"), at + count
        return tag, at, at + length

    tbs = certificate.tbs_certificate_bytes
    _, start, _ = tlv(tbs, 0)
    fields = []
    at = start
    while at < len(tbs):
        tag, content, end = tlv(tbs, at)
        fields.append((tag, tbs[at:end], tbs[content:end]))
        at = end
    # version [0], serial, signature, issuer, validity, subject, spki, [3] extensions
    assert fields[0][0] == 0xA0 and fields[0][2] == b"\x02\x01\x02", "X.509 v3"
    return {
        "issuer": fields[3][1],
        "validity": fields[4][2],
        "subject": fields[5][1],
        "extensions": fields[7][2],
    }


def _check_common(certificate: x509.Certificate, *, policy: str) -> None:
    assert certificate.version is x509.Version.v3
    assert certificate.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert isinstance(public_key.curve, ec.SECP256R1)

    ku = certificate.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE)
    assert ku.critical
    assert isinstance(ku.value, x509.KeyUsage)
    set_bits = [
        name
        for name in (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        )
        if getattr(ku.value, name)
    ]
    assert set_bits in (["digital_signature"], ["key_agreement"])

    ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert len(ski.value.digest) == 8
    assert not ski.critical

    policies = certificate.extensions.get_extension_for_oid(ExtensionOID.CERTIFICATE_POLICIES)
    assert policies.critical
    assert isinstance(policies.value, x509.CertificatePolicies)
    assert [p.policy_identifier.dotted_string for p in policies.value] == [policy]


def _aki(certificate: x509.Certificate) -> bytes | None:
    try:
        ext = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    assert ext.value.authority_cert_issuer is None
    return ext.value.key_identifier


def check_organisation(
    certificate: x509.Certificate, *, eui: bytes, role: int, usage: KeyUsage
) -> None:
    _check_common(certificate, policy=ORG_POLICY)
    ku = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_agreement if usage is KeyUsage.KA else ku.digital_signature
    aki = _aki(certificate)
    assert aki is None or len(aki) == 8

    units = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert [u.value for u in units] == [f"{role:02X}"]
    uids = certificate.subject.get_attributes_for_oid(NameOID.X500_UNIQUE_IDENTIFIER)
    assert len(uids) == 1 and uids[0]._type is _ASN1Type.BitString
    # The subject's DER carries x500UniqueIdentifier as BIT STRING 03 09 00 <EUI>.
    assert (
        bytes.fromhex("0603 55042D 030900".replace(" ", "")) + eui
        in (_tbs_fields(certificate)["subject"])
    )
    issuer_units = certificate.issuer.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert [u.value for u in issuer_units] == ["07"]
    with pytest.raises(x509.ExtensionNotFound):
        certificate.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)


def check_device(certificate: x509.Certificate, *, eui: bytes, usage: KeyUsage) -> None:
    _check_common(certificate, policy=DEVICE_POLICY)
    ku = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_agreement if usage is KeyUsage.KA else ku.digital_signature
    aki = _aki(certificate)
    assert aki is not None and len(aki) == 8

    fields = _tbs_fields(certificate)
    assert fields["subject"] == b"\x30\x00", "empty subject"
    # notAfter is GeneralizedTime 99991231235959Z.
    assert fields["validity"].endswith(b"\x18\x0f99991231235959Z")
    san = certificate.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert san.critical
    # The whole extension, byte for byte: otherName hardwareModuleName { hwType, hwSerialNum }.
    expected = (
        "3029 a027 0608 2b06010505070804 a01b 3019 060d 2a863a0001848fb90f01020201 0408"
    ).replace(" ", "")
    assert san.value.public_bytes() == bytes.fromhex(expected) + eui


def _reference_cert(reference_dir: Path, *parts: str) -> x509.Certificate:
    return load_certificate(reference_dir.joinpath(*parts))


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def root() -> CertificateAuthority:
    return CertificateAuthority.create_root(not_before=NOT_BEFORE)


@pytest.fixture(scope="module")
def oca(root: CertificateAuthority) -> CertificateAuthority:
    return CertificateAuthority.create_issuing(root, common_name="Z9", not_before=NOT_BEFORE)


@pytest.fixture(scope="module")
def dca(root: CertificateAuthority) -> CertificateAuthority:
    return CertificateAuthority.create_issuing(
        root, common_name="E999", role=None, not_before=NOT_BEFORE
    )


def _org(oca: CertificateAuthority, role: Role, usage: KeyUsage) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return issue_organisation_certificate(
        oca,
        eui=SUPPLIER_EUI,
        role=role,
        usage=usage,
        public_key=key.public_key(),
        not_before=NOT_BEFORE,
        not_after=NOT_AFTER,
    )


def _device(dca: CertificateAuthority, usage: KeyUsage) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return issue_device_certificate(
        dca, eui=DEVICE_EUI, usage=usage, public_key=key.public_key(), not_before=NOT_BEFORE
    )


# --------------------------------------------------------------------------------------------
# The enums the pipeline codes against
# --------------------------------------------------------------------------------------------


def test_roles_have_their_gbcs_numbers() -> None:
    assert {r.name: int(r) for r in Role} == {
        "ROOT": 0,
        "RECOVERY": 1,
        "SUPPLIER": 2,
        "NETWORK_OPERATOR": 3,
        "ACB": 4,
        "TRANSITIONAL_COS": 5,
        "WAN_PROVIDER": 6,
        "ISSUING_AUTHORITY": 7,
        "LOAD_CONTROLLER": 8,
        "OTHER": 127,
        "XML_SIGN": 0x87,
        "DSP_XML_SIGN": 0x89,
    }


def test_key_usages_are_the_key_store_suffixes() -> None:
    assert [u.value for u in KeyUsage] == ["ds", "ka", "xml-sign"]


# --------------------------------------------------------------------------------------------
# The checker against DCC's certificates
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "eui", "role", "usage"), ZAZ1_ORGANISATION)
def test_zaz1_organisation_certificate_matches_profile(
    reference_dir: Path, name: str, eui: str, role: int, usage: KeyUsage
) -> None:
    certificate = _reference_cert(reference_dir, "smki", "zaz1", name)
    check_organisation(certificate, eui=bytes.fromhex(eui), role=role, usage=usage)
    assert profile_problems(certificate) == []


@pytest.mark.parametrize(("name", "eui", "role", "usage"), GBCS_ORGANISATION)
def test_gbcs_keystore_organisation_certificate_matches_profile(
    reference_dir: Path, name: str, eui: str, role: int, usage: KeyUsage
) -> None:
    certificate = _reference_cert(reference_dir, "gbcs", "keystore", name)
    check_organisation(certificate, eui=bytes.fromhex(eui), role=role, usage=usage)
    assert profile_problems(certificate) == []


@pytest.mark.parametrize("name", RTDS_DEVICES)
def test_rtds_device_certificate_matches_profile(reference_dir: Path, name: str) -> None:
    certificate = _reference_cert(reference_dir, "gbcs", "keystore", name)
    eui_hex, usage = name.removesuffix(".pem").split("-")
    check_device(certificate, eui=bytes.fromhex(eui_hex), usage=KeyUsage(usage))
    assert profile_problems(certificate) == []


def test_every_rtds_device_certificate_conforms(reference_dir: Path) -> None:
    paths = sorted((reference_dir / "gbcs" / "keystore").glob("00db*.pem"))
    assert len(paths) >= 400
    for path in paths:
        certificate = load_certificate(path)
        eui_hex, usage = path.stem.split("-")
        check_device(certificate, eui=bytes.fromhex(eui_hex), usage=KeyUsage(usage))
        assert profile_problems(certificate) == [], path.name


def test_legacy_decimal_ou_is_the_only_flaw_of_the_pre_141_dsp_certificate(
    reference_dir: Path,
) -> None:
    certificate = _reference_cert(
        reference_dir, "smki", "zaz1", "dsp-xml-sign-90B3D51F30000002-ds-pre-1.4.1.pem"
    )
    problems = profile_problems(certificate)
    assert len(problems) == 1 and "'137'" in problems[0]
    assert role_of(certificate) == Role.DSP_XML_SIGN  # "137" read as decimal


def test_key_identifier_is_method_2_as_in_reference_certificates(reference_dir: Path) -> None:
    for parts in (
        ("smki", "zaz1", "Z1-supplier-ds.pem"),
        ("gbcs", "keystore", "00db123456789001-ds.pem"),
        ("gbcs", "keystore", "90b3d51f30000002-ka.pem"),
    ):
        certificate = _reference_cert(reference_dir, *parts)
        public_key = certificate.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        assert key_identifier(public_key) == ski.value.digest


# --------------------------------------------------------------------------------------------
# Reading identities back from DCC's certificates
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "eui", "role", "usage"), ZAZ1_ORGANISATION)
def test_identity_read_back_from_zaz1(
    reference_dir: Path, name: str, eui: str, role: int, usage: KeyUsage
) -> None:
    certificate = _reference_cert(reference_dir, "smki", "zaz1", name)
    assert eui_of(certificate) == bytes.fromhex(eui)
    assert role_of(certificate) == role
    assert usage_of(certificate) is usage


def test_identity_read_back_from_rtds_device(reference_dir: Path) -> None:
    ds = _reference_cert(reference_dir, "gbcs", "keystore", "00db12345678904b-ds.pem")
    ka = _reference_cert(reference_dir, "gbcs", "keystore", "00db12345678904b-ka.pem")
    assert eui_of(ds) == eui_of(ka) == bytes.fromhex("00DB12345678904B")
    assert role_of(ds) is None
    assert (usage_of(ds), usage_of(ka)) == (KeyUsage.DS, KeyUsage.KA)


def test_issuer_names_compare_semantically_across_string_types(reference_dir: Path) -> None:
    # ZAZ1 writes the subject's OU as UTF8String and the issuer's as PrintableString.
    certificate = _reference_cert(reference_dir, "smki", "zaz1", "Z1-supplier-ds.pem")
    utf8_issuer = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "07", _type=_ASN1Type.UTF8String),
            x509.NameAttribute(NameOID.COMMON_NAME, "z1", _type=_ASN1Type.UTF8String),
        ]
    )
    assert utf8_issuer.public_bytes() != certificate.issuer.public_bytes()
    assert names_equal(certificate.issuer, utf8_issuer)
    assert not names_equal(certificate.issuer, certificate.subject)


# --------------------------------------------------------------------------------------------
# What dccsim issues
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "usage"),
    [
        (Role.SUPPLIER, KeyUsage.DS),
        (Role.SUPPLIER, KeyUsage.KA),
        (Role.NETWORK_OPERATOR, KeyUsage.DS),
        (Role.ACB, KeyUsage.KA),
        (Role.XML_SIGN, KeyUsage.XML_SIGN),
        (Role.DSP_XML_SIGN, KeyUsage.XML_SIGN),
    ],
)
def test_organisation_certificate_follows_profile(
    oca: CertificateAuthority, role: Role, usage: KeyUsage
) -> None:
    certificate = _org(oca, role, usage)
    check_organisation(certificate, eui=SUPPLIER_EUI, role=role, usage=usage)
    assert profile_problems(certificate) == []
    assert (eui_of(certificate), role_of(certificate), usage_of(certificate)) == (
        SUPPLIER_EUI,
        role,
        usage,
    )
    assert verify_issued_by(certificate, oca.certificate)
    assert certificate.not_valid_before_utc == NOT_BEFORE
    assert certificate.not_valid_after_utc == NOT_AFTER


def test_ds_and_ka_certificates_name_their_ca_key(oca: CertificateAuthority) -> None:
    for usage in (KeyUsage.DS, KeyUsage.KA):
        assert _aki(_org(oca, Role.SUPPLIER, usage)) == oca.key_identifier


def test_xml_signing_certificate_has_no_authority_key_identifier(
    oca: CertificateAuthority,
) -> None:
    certificate = _org(oca, Role.XML_SIGN, KeyUsage.XML_SIGN)
    assert _aki(certificate) is None
    assert certificate.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature


def test_organisation_subject_can_carry_a_common_name(oca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = issue_organisation_certificate(
        oca,
        eui=SUPPLIER_EUI,
        role=Role.SUPPLIER,
        usage=KeyUsage.DS,
        public_key=key.public_key(),
        not_before=NOT_BEFORE,
        not_after=NOT_AFTER,
        common_name="GITTESTSUPPLIER",
    )
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "GITTESTSUPPLIER"
    )
    assert profile_problems(certificate) == []


@pytest.mark.parametrize("usage", [KeyUsage.DS, KeyUsage.KA])
def test_device_certificate_follows_profile(dca: CertificateAuthority, usage: KeyUsage) -> None:
    certificate = _device(dca, usage)
    check_device(certificate, eui=DEVICE_EUI, usage=usage)
    assert profile_problems(certificate) == []
    assert (eui_of(certificate), role_of(certificate), usage_of(certificate)) == (
        DEVICE_EUI,
        None,
        usage,
    )
    assert _aki(certificate) == dca.key_identifier
    assert verify_issued_by(certificate, dca.certificate)


def test_device_certificate_has_the_shape_of_an_rtds_one(
    reference_dir: Path, dca: CertificateAuthority
) -> None:
    # Same extensions, same order, same criticality as 00db123456789001-ka.pem.
    reference = _reference_cert(reference_dir, "gbcs", "keystore", "00db123456789001-ka.pem")
    ours = _device(dca, KeyUsage.KA)
    assert [(e.oid, e.critical) for e in ours.extensions] == [
        (e.oid, e.critical) for e in reference.extensions
    ]
    assert ours.extensions.get_extension_for_class(x509.KeyUsage).value.public_bytes() == (
        reference.extensions.get_extension_for_class(x509.KeyUsage).value.public_bytes()
    )


def test_ca_certificates_follow_profile(
    root: CertificateAuthority, oca: CertificateAuthority, dca: CertificateAuthority
) -> None:
    for ca in (root, oca, dca):
        assert profile_problems(ca.certificate) == []
        constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.critical and constraints.value.ca
        ku = ca.certificate.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
        assert verify_issued_by(ca.certificate, root.certificate)
    assert role_of(oca.certificate) == Role.ISSUING_AUTHORITY
    assert role_of(root.certificate) == Role.ROOT
    assert usage_of(oca.certificate) is None


def test_ca_survives_save_and_load(tmp_path: Path, oca: CertificateAuthority) -> None:
    oca.save(tmp_path / "ca.pem", tmp_path / "ca.key")
    assert (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
    loaded = CertificateAuthority.load(tmp_path / "ca.pem", tmp_path / "ca.key")
    assert loaded.certificate == oca.certificate
    assert loaded.key_identifier == oca.key_identifier


def test_certificate_from_another_ca_does_not_verify(
    oca: CertificateAuthority, dca: CertificateAuthority
) -> None:
    assert not verify_issued_by(_device(dca, KeyUsage.DS), oca.certificate)


# --------------------------------------------------------------------------------------------
# What the profile refuses, and what the checker catches
# --------------------------------------------------------------------------------------------


def test_xml_signing_needs_an_xml_signing_role(oca: CertificateAuthority) -> None:
    with pytest.raises(ProfileError):
        _org(oca, Role.SUPPLIER, KeyUsage.XML_SIGN)
    with pytest.raises(ProfileError):
        _org(oca, Role.XML_SIGN, KeyUsage.DS)


def test_device_certificate_is_ds_or_ka(dca: CertificateAuthority) -> None:
    with pytest.raises(ProfileError):
        _device(dca, KeyUsage.XML_SIGN)


def test_eui_must_be_eight_bytes(oca: CertificateAuthority, dca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(ProfileError):
        issue_device_certificate(
            dca, eui=b"\x01" * 7, usage=KeyUsage.DS, public_key=key, not_before=NOT_BEFORE
        )


def test_only_p256_keys_are_certified(dca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(ProfileError):
        issue_device_certificate(
            dca, eui=DEVICE_EUI, usage=KeyUsage.DS, public_key=key, not_before=NOT_BEFORE
        )


def test_checker_reports_a_non_critical_key_usage_and_a_missing_policy(
    oca: CertificateAuthority,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "2"),
                    x509.NameAttribute(
                        NameOID.X500_UNIQUE_IDENTIFIER,
                        b"\x00" + SUPPLIER_EUI,
                        _type=_ASN1Type.BitString,
                    ),
                ]
            )
        )
        .issuer_name(oca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(
            x509.KeyUsage(True, False, False, False, True, False, False, False, False),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier(b"\x01" * 20), critical=False)
        .sign(oca.private_key, hashes.SHA256())
    )
    problems = "\n".join(profile_problems(certificate))
    assert "keyUsage is not critical" in problems
    assert "exactly digitalSignature or keyAgreement" in problems
    assert "not 8" in problems
    assert "no certificatePolicies" in problems
    assert "'2'" in problems  # OU must be two hex digits


def test_device_certificates_issue_fast(dca: CertificateAuthority) -> None:
    # A guard against gross regressions only; dccsim.pki.bench measures the real rate
    # (about 7,000/s here against a target of 2,000/s).
    keys = [ec.generate_private_key(ec.SECP256R1()).public_key() for _ in range(200)]
    start = time.perf_counter()
    for public_key in keys:
        issue_device_certificate(
            dca, eui=DEVICE_EUI, usage=KeyUsage.DS, public_key=public_key, not_before=NOT_BEFORE
        )
    assert time.perf_counter() - start < 1.0


def test_serials_are_positive_and_sixteen_bytes(dca: CertificateAuthority) -> None:
    for _ in range(20):
        serial = _device(dca, KeyUsage.DS).serial_number
        assert 0 < serial < 1 << 127
        assert serial.bit_length() > 120


def test_issued_der_parses_back(dca: CertificateAuthority) -> None:
    certificate = _device(dca, KeyUsage.KA)
    again = x509.load_der_x509_certificate(certificate.public_bytes(serialization.Encoding.DER))
    assert eui_of(again) == DEVICE_EUI
