"""SMKI certificates in the GBCS profile: issue them, read their identity back, check the profile.

The profile (PROTOCOL.md, "SMKI certificates"): P-256 keys signed with ECDSA-SHA256; an
end-entity keyUsage that is critical with exactly one of digitalSignature or keyAgreement; an
8-byte subjectKeyIdentifier (RFC 5280 method 2) and, where present, an 8-byte
authorityKeyIdentifier (dccsim leaves it off XML-signing certificates); a critical
certificatePolicies naming the organisation or device policy.
Organisation certificates name the party by ``OU`` (its remote-party role, 2 upper-case hex
digits) and ``x500UniqueIdentifier`` (BIT STRING of its EUI-64); device certificates have an empty
subject and a critical subjectAltName whose only entry is a hardwareModuleName carrying the EUI.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID

from dccsim.pki.files import (
    load_certificate,
    load_private_key,
    write_certificate,
    write_private_key,
)

ORGANISATION_POLICY = x509.ObjectIdentifier("1.2.826.0.1.8641679.1.2.1.4")
DEVICE_POLICY = x509.ObjectIdentifier("1.2.826.0.1.1800000.1.2.1.4")
HARDWARE_MODULE_NAME = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4")
GBCS_HW_TYPE = x509.ObjectIdentifier("1.2.826.0.1.8641679.1.2.2.1")
DEVICE_NOT_AFTER = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)

EUI_LENGTH = 8
KEY_ID_LENGTH = 8


class Role(IntEnum):
    """GBCS remote-party role, as written (2 upper-case hex digits) in an organisation cert's OU."""

    ROOT = 0
    RECOVERY = 1
    SUPPLIER = 2
    NETWORK_OPERATOR = 3
    ACB = 4
    TRANSITIONAL_COS = 5
    WAN_PROVIDER = 6
    ISSUING_AUTHORITY = 7
    LOAD_CONTROLLER = 8
    OTHER = 127
    XML_SIGN = 0x87
    DSP_XML_SIGN = 0x89


XML_SIGNING_ROLES = frozenset({Role.XML_SIGN, Role.DSP_XML_SIGN})


class KeyUsage(StrEnum):
    """What a key pair is for: digital signing, key agreement, or signing DUIS XML."""

    DS = "ds"
    KA = "ka"
    XML_SIGN = "xml-sign"


class ProfileError(ValueError):
    """A request to issue a certificate that the GBCS profile does not allow."""


_KU_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def _key_usage(*bits: str) -> x509.KeyUsage:
    return x509.KeyUsage(
        **{name: name in bits for name in (*_KU_BITS, "encipher_only", "decipher_only")}
    )


# Built once: every certificate of a kind shares these objects.
_KU_DIGITAL_SIGNATURE = _key_usage("digital_signature")
_KU_KEY_AGREEMENT = _key_usage("key_agreement")
_KU_CA = _key_usage("key_cert_sign", "crl_sign")
_ORGANISATION_POLICIES = x509.CertificatePolicies(
    [x509.PolicyInformation(ORGANISATION_POLICY, None)]
)
_DEVICE_POLICIES = x509.CertificatePolicies([x509.PolicyInformation(DEVICE_POLICY, None)])


# --------------------------------------------------------------------------------------------
# Small encoders and decoders
# --------------------------------------------------------------------------------------------


def _check_eui(eui: bytes) -> bytes:
    if not isinstance(eui, bytes | bytearray) or len(eui) != EUI_LENGTH:
        raise ProfileError(f"an EUI-64 is {EUI_LENGTH} bytes, got {eui!r}")
    return bytes(eui)


def describe_key(key: object) -> str:
    """What kind of key this is, for error messages: ``P-256 (secp256r1) EC``, ``RSA-2048``..."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        curve = key.curve
        nist = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(curve.name)
        return f"{nist} ({curve.name}) EC" if nist else f"{curve.name} EC"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return f"RSA-{key.key_size}"
    return type(key).__name__.removeprefix("_").replace("PublicKey", "").replace("PrivateKey", "")


def _check_p256(public_key: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise ProfileError(
            "GBCS certificates carry P-256 (secp256r1) keys only, "
            f"not a {describe_key(public_key)} key"
        )
    return public_key


def key_identifier(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The 8-byte key identifier SMKI uses: RFC 5280 4.2.1.2 method 2 (0100 + low 60 bits of SHA-1).

    It is what the ZAZ1 and RTDS certificates carry as subjectKeyIdentifier.
    """
    point = public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    digest = hashlib.sha1(point, usedforsecurity=False).digest()[-KEY_ID_LENGTH:]
    return bytes([0x40 | (digest[0] & 0x0F)]) + digest[1:]


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


def _der_read(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """Read one DER TLV at offset: (tag, content, offset after it). Raises ValueError if short."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[offset]
    length = data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or offset + count > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    end = offset + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, data[offset:end], end


def _der_oid(oid: x509.ObjectIdentifier) -> bytes:
    arcs = [int(arc) for arc in oid.dotted_string.split(".")]
    content = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        content.extend(reversed(chunk))
    return _der(0x06, bytes(content))


_HW_TYPE_DER = _der_oid(GBCS_HW_TYPE)


def hardware_module_name(eui: bytes) -> x509.OtherName:
    """The device SAN entry: hardwareModuleName { hwType GBCS, hwSerialNum OCTET STRING EUI }."""
    return x509.OtherName(
        HARDWARE_MODULE_NAME, _der(0x30, _HW_TYPE_DER + _der(0x04, _check_eui(eui)))
    )


def _parse_hardware_module_name(value: bytes) -> tuple[bytes, bytes] | None:
    """(hwType OID content bytes, hwSerialNum) from an OtherName value, or None if malformed."""
    try:
        tag, body, end = _der_read(value)
        if tag != 0x30 or end != len(value):
            return None
        oid_tag, oid, after = _der_read(body)
        serial_tag, serial, after = _der_read(body, after)
    except ValueError:
        return None
    if oid_tag != 0x06 or serial_tag != 0x04 or after != len(body):
        return None
    return oid, serial


def role_text(role: int) -> str:
    """A role as the OU spells it: 2 upper-case hex digits."""
    if not 0 <= role <= 0xFF:
        raise ProfileError(f"a role is one octet, got {role}")
    return f"{role:02X}"


def parse_role(text: str) -> int | None:
    """The role an OU names. 2 hex digits is the profile; 3 decimal digits (``137``) is how an
    older DSP XML-signing certificate wrote 0x89, so that reads too."""
    text = text.strip()
    try:
        if len(text) == 2:
            return int(text, 16)
        if len(text) == 3 and text.isdigit() and int(text) <= 0xFF:
            return int(text)
    except ValueError:
        return None
    return None


def _normalise(value: str | bytes) -> str | bytes:
    # RFC 5280 7.1 (simplified LDAP StringPrep): case-fold, compatibility-normalise, squeeze spaces.
    if isinstance(value, bytes):
        return value
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def names_equal(a: x509.Name, b: x509.Name) -> bool:
    """Whether two names are the same name, whatever string types they were encoded with."""

    def key(name: x509.Name) -> list[frozenset[tuple[str, str | bytes]]]:
        return [
            frozenset((attr.oid.dotted_string, _normalise(attr.value)) for attr in rdn)
            for rdn in name.rdns
        ]

    return key(a) == key(b)


def _organisation_name(role: int, eui: bytes | None, common_name: str | None) -> x509.Name:
    attributes: list[x509.NameAttribute[Any]] = []
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role_text(role)))
    if eui is not None:
        attributes.append(
            x509.NameAttribute(
                NameOID.X500_UNIQUE_IDENTIFIER, b"\x00" + _check_eui(eui), _type=_ASN1Type.BitString
            )
        )
    return x509.Name(attributes)


def random_serial() -> int:
    """A positive 16-byte serial like the reference certificates carry."""
    return secrets.randbits(127) | (1 << 120)


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ProfileError("certificate times must be timezone-aware")
    return value.astimezone(dt.UTC).replace(microsecond=0)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


# --------------------------------------------------------------------------------------------
# Certificate authorities
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and its private key; what every issue_* function signs with."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey
    # Worked out once per CA, so issuing a certificate only builds what differs per certificate.
    _authority_key_id: x509.AuthorityKeyIdentifier = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            identifier = ski.value.digest
        except x509.ExtensionNotFound:
            identifier = key_identifier(_check_p256(self.certificate.public_key()))
        object.__setattr__(
            self, "_authority_key_id", x509.AuthorityKeyIdentifier(identifier, None, None)
        )

    @property
    def subject(self) -> x509.Name:
        return self.certificate.subject

    @property
    def key_identifier(self) -> bytes:
        identifier = self._authority_key_id.key_identifier
        assert identifier is not None
        return identifier

    @classmethod
    def create_root(
        cls,
        *,
        common_name: str = "dccsim SMKI Root",
        eui: bytes | None = None,
        private_key: ec.EllipticCurvePrivateKey | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime = DEVICE_NOT_AFTER,
    ) -> CertificateAuthority:
        """A self-signed SMKI Root (OU=00): keyCertSign + cRLSign, CA basicConstraints critical."""
        key = private_key or ec.generate_private_key(ec.SECP256R1())
        name = _organisation_name(Role.ROOT, eui, common_name)
        certificate = _ca_certificate(
            subject=name,
            issuer=name,
            public_key=key.public_key(),
            signing_key=key,
            authority_key_id=None,
            not_before=not_before or _now(),
            not_after=not_after,
        )
        return cls(certificate, key)

    @classmethod
    def create_issuing(
        cls,
        root: CertificateAuthority,
        *,
        common_name: str = "dccsim SMKI Issuing CA",
        role: Role | None = Role.ISSUING_AUTHORITY,
        eui: bytes | None = None,
        private_key: ec.EllipticCurvePrivateKey | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime = DEVICE_NOT_AFTER,
    ) -> CertificateAuthority:
        """An issuing CA under root. With the default role its subject reads ``OU=07, CN=...``
        like the organisation CA (ZAZ1's ``Z1``); role=None gives a bare ``CN=...`` like the
        device CA (RTDS's ``E357``)."""
        key = private_key or ec.generate_private_key(ec.SECP256R1())
        if role is None:
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        else:
            # ZAZ1's issuer reads OU before CN.
            attributes: list[x509.NameAttribute[Any]] = [
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role_text(role)),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
            if eui is not None:
                attributes.append(
                    x509.NameAttribute(
                        NameOID.X500_UNIQUE_IDENTIFIER,
                        b"\x00" + _check_eui(eui),
                        _type=_ASN1Type.BitString,
                    )
                )
            name = x509.Name(attributes)
        certificate = _ca_certificate(
            subject=name,
            issuer=root.certificate.subject,
            public_key=key.public_key(),
            signing_key=root.private_key,
            authority_key_id=root._authority_key_id,
            not_before=not_before or _now(),
            not_after=not_after,
        )
        return cls(certificate, key)

    def save(self, certificate_path: Path, private_key_path: Path) -> None:
        """Write the certificate (PEM) and private key (PKCS#8 PEM, mode 0600) atomically."""
        write_private_key(private_key_path, self.private_key)
        write_certificate(certificate_path, self.certificate)

    @classmethod
    def load(cls, certificate_path: Path, private_key_path: Path) -> CertificateAuthority:
        """Read a CA written by save() (or any PEM/DER certificate and PKCS#8 key)."""
        key = load_private_key(private_key_path)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ProfileError(f"{private_key_path}: not an EC private key")
        return cls(load_certificate(certificate_path), key)


def _ca_certificate(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    authority_key_id: x509.AuthorityKeyIdentifier | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(_check_p256(public_key))
        .serial_number(random_serial())
        .not_valid_before(_utc(not_before))
        .not_valid_after(_utc(not_after))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_KU_CA, critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_identifier(public_key)), critical=False)
        .add_extension(_ORGANISATION_POLICIES, critical=True)
    )
    if authority_key_id is not None:
        builder = builder.add_extension(authority_key_id, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


# --------------------------------------------------------------------------------------------
# End-entity certificates
# --------------------------------------------------------------------------------------------


def issue_organisation_certificate(
    ca: CertificateAuthority,
    *,
    eui: bytes,
    role: Role | int,
    usage: KeyUsage,
    public_key: ec.EllipticCurvePublicKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
    common_name: str | None = None,
    serial: int | None = None,
) -> x509.Certificate:
    """An organisation (remote party) certificate for the party eui acting in role.

    usage DS or KA gives the GBCS DS/KA certificate with an authorityKeyIdentifier; usage
    XML_SIGN needs role 0x87 (a User's XML signing) or 0x89 (the DSP's) and, like the ZAZ1 ones,
    carries digitalSignature and no authorityKeyIdentifier. Raises ProfileError otherwise.
    """
    eui = _check_eui(eui)
    public_key = _check_p256(public_key)
    if usage is KeyUsage.XML_SIGN and role not in XML_SIGNING_ROLES:
        raise ProfileError(f"an XML-signing certificate has role 87 or 89, not {role_text(role)}")
    if usage is not KeyUsage.XML_SIGN and role in XML_SIGNING_ROLES:
        raise ProfileError(f"role {role_text(role)} is for XML-signing certificates only")
    key_usage = _KU_KEY_AGREEMENT if usage is KeyUsage.KA else _KU_DIGITAL_SIGNATURE
    builder = (
        x509.CertificateBuilder()
        .subject_name(_organisation_name(role, eui, common_name))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(serial if serial is not None else random_serial())
        .not_valid_before(_utc(not_before))
        .not_valid_after(_utc(not_after))
    )
    # Extension order as in the ZAZ1 certificates.
    if usage is KeyUsage.XML_SIGN:
        builder = (
            builder.add_extension(_ORGANISATION_POLICIES, critical=True)
            .add_extension(x509.SubjectKeyIdentifier(key_identifier(public_key)), critical=False)
            .add_extension(key_usage, critical=True)
        )
    else:
        builder = (
            builder.add_extension(key_usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier(key_identifier(public_key)), critical=False)
            .add_extension(_ORGANISATION_POLICIES, critical=True)
            .add_extension(ca._authority_key_id, critical=False)
        )
    return builder.sign(ca.private_key, hashes.SHA256())


_EMPTY_NAME = x509.Name([])


def issue_device_certificate(
    ca: CertificateAuthority,
    *,
    eui: bytes,
    usage: KeyUsage,
    public_key: ec.EllipticCurvePublicKey,
    not_before: dt.datetime,
    serial: int | None = None,
) -> x509.Certificate:
    """A device certificate: empty subject, critical SAN hardwareModuleName(eui), device policy,
    notAfter 99991231235959Z, keyUsage digitalSignature (DS) or keyAgreement (KA)."""
    if usage is KeyUsage.DS:
        key_usage = _KU_DIGITAL_SIGNATURE
    elif usage is KeyUsage.KA:
        key_usage = _KU_KEY_AGREEMENT
    else:
        raise ProfileError(f"device certificates are DS or KA, not {usage}")
    public_key = _check_p256(public_key)
    # Extension order as in the RTDS device certificates.
    return (
        x509.CertificateBuilder()
        .subject_name(_EMPTY_NAME)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(serial if serial is not None else random_serial())
        .not_valid_before(_utc(not_before))
        .not_valid_after(DEVICE_NOT_AFTER)
        .add_extension(key_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_identifier(public_key)), critical=False)
        .add_extension(x509.SubjectAlternativeName([hardware_module_name(eui)]), critical=True)
        .add_extension(_DEVICE_POLICIES, critical=True)
        .add_extension(ca._authority_key_id, critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )


# --------------------------------------------------------------------------------------------
# Reading identities back
# --------------------------------------------------------------------------------------------


def _attributes(name: x509.Name, oid: x509.ObjectIdentifier) -> list[x509.NameAttribute[Any]]:
    return list(name.get_attributes_for_oid(oid))


def _hardware_module_names(certificate: x509.Certificate) -> Iterator[tuple[bytes, bytes]]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return
    for other in san.value.get_values_for_type(x509.OtherName):
        if other.type_id == HARDWARE_MODULE_NAME:
            parsed = _parse_hardware_module_name(other.value)
            if parsed is not None:
                yield parsed


def eui_of(certificate: x509.Certificate) -> bytes | None:
    """The EUI-64 a certificate names: an organisation's x500UniqueIdentifier or a device's
    hardwareModuleName hwSerialNum. None when it names none (or not as 8 bytes)."""
    for attribute in _attributes(certificate.subject, NameOID.X500_UNIQUE_IDENTIFIER):
        value = attribute.value
        # cryptography hands a BIT STRING over with its unused-bits octet first.
        if isinstance(value, bytes) and len(value) == EUI_LENGTH + 1 and value[0] == 0:
            return value[1:]
    for _hw_type, serial in _hardware_module_names(certificate):
        if len(serial) == EUI_LENGTH:
            return serial
    return None


def role_of(certificate: x509.Certificate) -> int | None:
    """The remote-party role an organisation or CA certificate's OU names; None for devices."""
    for attribute in _attributes(certificate.subject, NameOID.ORGANIZATIONAL_UNIT_NAME):
        if isinstance(attribute.value, str):
            role = parse_role(attribute.value)
            if role is not None:
                return role
    return None


def is_device_certificate(certificate: x509.Certificate) -> bool:
    """Device certificates have an empty subject (their identity is in the SAN)."""
    return len(certificate.subject.rdns) == 0


def usage_of(certificate: x509.Certificate) -> KeyUsage | None:
    """DS, KA or XML_SIGN from keyUsage (and the XML-signing roles); None for CAs and others."""
    try:
        ku = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    if ku.key_cert_sign:
        return None
    if ku.key_agreement and not ku.digital_signature:
        return KeyUsage.KA
    if ku.digital_signature and not ku.key_agreement:
        return KeyUsage.XML_SIGN if role_of(certificate) in XML_SIGNING_ROLES else KeyUsage.DS
    return None


def verify_issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether issuer signed certificate: names compared semantically, key identifiers matched
    where both are present, ECDSA-SHA256 signature checked. Validity dates are not checked."""
    if not names_equal(certificate.issuer, issuer.subject):
        return False
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        if aki.key_identifier is not None and aki.key_identifier != ski.digest:
            return False
    except x509.ExtensionNotFound:
        pass
    public_key = issuer.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False
    if certificate.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        return False
    try:
        public_key.verify(
            certificate.signature,
            certificate.tbs_certificate_bytes,
            ec.ECDSA(hashes.SHA256()),
        )
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------------------------
# The profile, checked field by field
# --------------------------------------------------------------------------------------------

_END_ENTITY_EXTENSIONS = {
    ExtensionOID.KEY_USAGE,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    ExtensionOID.CERTIFICATE_POLICIES,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.BASIC_CONSTRAINTS,
}


def _set_key_usage_bits(ku: x509.KeyUsage) -> set[str]:
    bits = {name for name in _KU_BITS if getattr(ku, name)}
    if ku.key_agreement:
        bits |= {name for name in ("encipher_only", "decipher_only") if getattr(ku, name)}
    return bits


def profile_problems(certificate: x509.Certificate) -> list[str]:
    """Every way certificate departs from the GBCS SMKI profile; an empty list when it conforms.

    Works for organisation, device and CA certificates (a device certificate is one with an empty
    subject; a CA one with keyCertSign). Validity dates are not judged except a device's notAfter.
    """
    problems: list[str] = []
    extensions = {ext.oid: ext for ext in certificate.extensions}

    if certificate.version is not x509.Version.v3:
        problems.append("not an X.509 v3 certificate")
    if certificate.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        problems.append(f"signature algorithm {certificate.signature_algorithm_oid.dotted_string}")
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        problems.append("public key is not P-256")
    if certificate.serial_number <= 0:
        problems.append("serial number is not positive")

    ku_ext = extensions.get(ExtensionOID.KEY_USAGE)
    is_ca = False
    if ku_ext is None:
        problems.append("no keyUsage")
    else:
        assert isinstance(ku_ext.value, x509.KeyUsage)
        if not ku_ext.critical:
            problems.append("keyUsage is not critical")
        bits = _set_key_usage_bits(ku_ext.value)
        is_ca = "key_cert_sign" in bits
        if is_ca:
            if bits != {"key_cert_sign", "crl_sign"}:
                problems.append(f"CA keyUsage is {sorted(bits)}, not keyCertSign + cRLSign")
        elif bits not in ({"digital_signature"}, {"key_agreement"}):
            problems.append(
                f"keyUsage is {sorted(bits)}: want exactly digitalSignature or keyAgreement"
            )

    bc_ext = extensions.get(ExtensionOID.BASIC_CONSTRAINTS)
    if is_ca:
        if bc_ext is None or not bc_ext.critical:
            problems.append("CA certificate without critical basicConstraints")
        elif isinstance(bc_ext.value, x509.BasicConstraints) and not bc_ext.value.ca:
            problems.append("CA keyUsage but basicConstraints cA is false")
    elif bc_ext is not None and isinstance(bc_ext.value, x509.BasicConstraints) and bc_ext.value.ca:
        problems.append("end-entity certificate claims cA in basicConstraints")

    ski_ext = extensions.get(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    if ski_ext is None:
        problems.append("no subjectKeyIdentifier")
    else:
        assert isinstance(ski_ext.value, x509.SubjectKeyIdentifier)
        if len(ski_ext.value.digest) != KEY_ID_LENGTH:
            problems.append(f"subjectKeyIdentifier is {len(ski_ext.value.digest)} bytes, not 8")
        if ski_ext.critical:
            problems.append("subjectKeyIdentifier is critical")

    aki_ext = extensions.get(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if aki_ext is None:
        # The profile has it "where present": ZAZ1's load-controller certificates go without.
        if is_device_certificate(certificate):
            problems.append("device certificate without authorityKeyIdentifier")
    else:
        assert isinstance(aki_ext.value, x509.AuthorityKeyIdentifier)
        aki = aki_ext.value
        if aki.key_identifier is None or len(aki.key_identifier) != KEY_ID_LENGTH:
            problems.append("authorityKeyIdentifier keyIdentifier is not 8 bytes")
        if aki.authority_cert_issuer is not None or aki.authority_cert_serial_number is not None:
            problems.append("authorityKeyIdentifier carries issuer/serial")

    device = is_device_certificate(certificate)
    want_policy = DEVICE_POLICY if device else ORGANISATION_POLICY
    cp_ext = extensions.get(ExtensionOID.CERTIFICATE_POLICIES)
    if cp_ext is None:
        problems.append("no certificatePolicies")
    else:
        assert isinstance(cp_ext.value, x509.CertificatePolicies)
        if not cp_ext.critical:
            problems.append("certificatePolicies is not critical")
        policies = [info.policy_identifier for info in cp_ext.value]
        if policies != [want_policy]:
            problems.append(
                f"certificatePolicies {[p.dotted_string for p in policies]}, "
                f"want [{want_policy.dotted_string}]"
            )

    if not is_ca:
        for oid in extensions.keys() - _END_ENTITY_EXTENSIONS:
            problems.append(f"unexpected extension {oid.dotted_string}")

    if device:
        problems.extend(_device_problems(certificate, extensions))
    else:
        problems.extend(_organisation_problems(certificate, extensions, is_ca=is_ca))
    return problems


_Extensions = dict[x509.ObjectIdentifier, "x509.Extension[x509.ExtensionType]"]


def _device_problems(certificate: x509.Certificate, extensions: _Extensions) -> list[str]:
    problems: list[str] = []
    san_ext = extensions.get(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if san_ext is None:
        problems.append("device certificate without subjectAltName")
    else:
        assert isinstance(san_ext.value, x509.SubjectAlternativeName)
        if not san_ext.critical:
            problems.append("device subjectAltName is not critical (the subject is empty)")
        names = list(san_ext.value)
        if len(names) != 1 or not isinstance(names[0], x509.OtherName):
            problems.append("device subjectAltName is not exactly one otherName")
        elif names[0].type_id != HARDWARE_MODULE_NAME:
            problems.append(f"device SAN otherName is {names[0].type_id.dotted_string}")
        else:
            parsed = _parse_hardware_module_name(names[0].value)
            if parsed is None:
                problems.append("hardwareModuleName is not SEQUENCE { OID, OCTET STRING }")
            else:
                hw_type, serial = parsed
                if _der(0x06, hw_type) != _HW_TYPE_DER:
                    problems.append(f"hwType is not {GBCS_HW_TYPE.dotted_string}")
                if len(serial) != EUI_LENGTH:
                    problems.append(f"hwSerialNum is {len(serial)} bytes, not an EUI-64")
    if certificate.not_valid_after_utc != DEVICE_NOT_AFTER:
        problems.append(f"device notAfter is {certificate.not_valid_after_utc:%Y%m%d%H%M%SZ}")
    return problems


def _organisation_problems(
    certificate: x509.Certificate,
    extensions: _Extensions,
    *,
    is_ca: bool,
) -> list[str]:
    problems: list[str] = []
    subject = certificate.subject
    units = _attributes(subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    uids = _attributes(subject, NameOID.X500_UNIQUE_IDENTIFIER)
    if ExtensionOID.SUBJECT_ALTERNATIVE_NAME in extensions:
        problems.append("organisation certificate with a subjectAltName")
    if is_ca and not units:
        return problems  # a device CA is named by CN alone
    if len(units) != 1:
        problems.append(f"subject has {len(units)} OU attributes, want 1 (the role)")
    else:
        text = units[0].value
        if not (
            isinstance(text, str) and len(text) == 2 and all(c in "0123456789ABCDEF" for c in text)
        ):
            problems.append(f"OU {text!r} is not a role as 2 upper-case hex digits")
    if not is_ca:
        if len(uids) != 1:
            problems.append(f"subject has {len(uids)} x500UniqueIdentifier attributes, want 1")
        else:
            value = uids[0].value
            if uids[0]._type is not _ASN1Type.BitString:
                problems.append("x500UniqueIdentifier is not a BIT STRING")
            elif not (isinstance(value, bytes) and len(value) == EUI_LENGTH + 1 and value[0] == 0):
                problems.append("x500UniqueIdentifier is not the 8 EUI-64 bytes")
        issuer_units = _attributes(certificate.issuer, NameOID.ORGANIZATIONAL_UNIT_NAME)
        issuer_roles = [parse_role(a.value) for a in issuer_units if isinstance(a.value, str)]
        if issuer_roles != [Role.ISSUING_AUTHORITY]:
            problems.append("issuer is not an Issuing Authority (OU=07)")
    return problems


# --------------------------------------------------------------------------------------------
# Checking what comes in from outside (imports, the CLI)
# --------------------------------------------------------------------------------------------

_ROLE_NAMES: dict[str, Role] = {
    "root": Role.ROOT,
    "recovery": Role.RECOVERY,
    "supplier": Role.SUPPLIER,
    "network-operator": Role.NETWORK_OPERATOR,
    "acb": Role.ACB,
    "access-control-broker": Role.ACB,
    "transitional-cos": Role.TRANSITIONAL_COS,
    "wan-provider": Role.WAN_PROVIDER,
    "issuing-authority": Role.ISSUING_AUTHORITY,
    "load-controller": Role.LOAD_CONTROLLER,
    "other": Role.OTHER,
    "xml-sign": Role.XML_SIGN,
    "dsp-xml-sign": Role.DSP_XML_SIGN,
}


def known_roles() -> str:
    """The GBCS remote-party roles as ``02 supplier, ...``, for error messages and help."""
    names: dict[Role, str] = {}
    for name, role in _ROLE_NAMES.items():
        names.setdefault(role, name)
    return ", ".join(f"{role_text(role)} {names[role]}" for role in Role)


def role_from(value: str | int) -> Role:
    """A GBCS remote-party role from a name (``supplier``, ``network-operator``...), 2 hex digits
    as an OU writes it (``02``, ``87``), ``0x`` hex or a number. ProfileError naming the value and
    the known roles when it is none of them."""
    if isinstance(value, int):
        number: int | None = value
    else:
        text = value.strip().lower().replace("_", "-").replace(" ", "-")
        if text in _ROLE_NAMES:
            return _ROLE_NAMES[text]
        try:
            number = int(text, 16) if text.startswith("0x") or len(text) == 2 else int(text)
        except ValueError:
            number = None
    if number is None or number not in Role._value2member_map_:
        raise ProfileError(f"unknown role {value!r}: GBCS remote-party roles are {known_roles()}")
    return Role(number)


def _what(source: str | None) -> str:
    return f"{source}: " if source else ""


def parse_smki_certificate(data: bytes, *, source: str | None = None) -> x509.Certificate:
    """A certificate from PEM or DER bytes, or ProfileError saying what is wrong with them
    (``source``, e.g. a file name, starts the message): malformed PEM, a PEM block that holds
    something else (a private key, a public key), or bytes that are not a DER certificate."""
    what = _what(source)
    if b"-----BEGIN" in data:
        kinds = re.findall(rb"-----BEGIN ([A-Z0-9 ]+)-----", data)
        if kinds and b"CERTIFICATE" not in kinds:
            raise ProfileError(f"{what}PEM holds a {kinds[0].decode().lower()}, not a certificate")
        try:
            return x509.load_pem_x509_certificate(data)
        except ValueError as error:
            raise ProfileError(f"{what}malformed PEM certificate ({error})") from None
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError as error:
        raise ProfileError(f"{what}not a certificate: neither PEM nor DER ({error})") from None


def parse_smki_private_key(data: bytes, *, source: str | None = None) -> ec.EllipticCurvePrivateKey:
    """An unencrypted P-256 private key from PEM or DER (PKCS#8 or SEC1), or ProfileError naming
    what is wrong: malformed PEM, not a private key, encrypted, or a key of the wrong kind."""
    what = _what(source)
    try:
        if b"-----BEGIN" in data:
            key: PrivateKeyTypes = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise ProfileError(f"{what}private key is encrypted; dccsim needs it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm) as error:
        form = "PEM" if b"-----BEGIN" in data else "DER"
        raise ProfileError(f"{what}malformed {form} private key ({error})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ProfileError(
            f"{what}{describe_key(key)} private key: GBCS keys are P-256 (secp256r1) only"
        )
    return key


def check_smki_certificate(
    certificate: x509.Certificate, *, source: str | None = None
) -> KeyUsage | None:
    """Refuse what no GBCS party can use and return the certificate's usage (None for a CA).

    ProfileError, naming the problem, for: a key that is not P-256 (``P-384 (secp384r1) EC``,
    ``RSA-2048``...); a signature other than ECDSA-SHA256; an end-entity keyUsage that allows
    both digitalSignature and keyAgreement (or neither); an OU naming no known role. Lesser
    departures from the profile are for profile_problems() to list.
    """
    what = _what(source)
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise ProfileError(
            f"{what}certificate serial {certificate.serial_number} has a "
            f"{describe_key(public_key)} key: GBCS certificates carry P-256 (secp256r1) keys only"
        )
    if certificate.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        name = getattr(certificate.signature_algorithm_oid, "_name", "")
        raise ProfileError(
            f"{what}certificate serial {certificate.serial_number} is signed with "
            f"{name or certificate.signature_algorithm_oid.dotted_string}, not ECDSA-SHA256"
        )
    try:
        ku = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise ProfileError(
            f"{what}certificate serial {certificate.serial_number} has no keyUsage"
        ) from None
    if not ku.key_cert_sign:
        if ku.digital_signature and ku.key_agreement:
            raise ProfileError(
                f"{what}certificate serial {certificate.serial_number}: keyUsage allows both "
                "digitalSignature and keyAgreement; a GBCS certificate is for exactly one"
            )
        if not (ku.digital_signature or ku.key_agreement):
            raise ProfileError(
                f"{what}certificate serial {certificate.serial_number}: keyUsage allows neither "
                "digitalSignature nor keyAgreement"
            )
    for attribute in _attributes(certificate.subject, NameOID.ORGANIZATIONAL_UNIT_NAME):
        value = attribute.value
        text = value if isinstance(value, str) else repr(value)
        role = parse_role(text)
        if role is None or role not in Role._value2member_map_:
            raise ProfileError(
                f"{what}certificate serial {certificate.serial_number}: OU {text!r} names no "
                f"GBCS remote-party role (known: {known_roles()})"
            )
    return usage_of(certificate)
