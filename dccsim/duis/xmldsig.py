"""XML signatures on DUIS documents, interoperable with DCC's signing tool (PROTOCOL.md).

Exactly one profile is produced and accepted: an enveloped ``ds:Signature``, last child of the
root; SignedInfo canonicalised in place with exclusive C14N; one ``Reference URI=""`` whose only
transform is enveloped-signature, digested with SHA-256 over inclusive C14N 1.0 (no comments) of
the root without the Signature; ECDSA P-256 with SHA-256, the value base64 of raw r||s wrapped at
76 characters with CR LF; KeyInfo ``X509Data/X509IssuerSerial`` only (issuer in RFC 4514 form,
decimal serial), the certificate being found by its serial.

DCC's signing tool (the Java tool in ``@smartdcc/duis-sign-wrap``, DCC Boxed's) parses with its
DUIS schema and drops the whitespace between elements before it digests or canonicalises, while
XMLDSig (and :func:`verify`) treats that whitespace as signed content. The two agree exactly when
a document has none, so :func:`sign` removes it before signing: what dccsim signs verifies in both.
A document indented after it was signed passes DCC's tool but not :func:`verify`, which says so.
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import hashlib
import hmac
import re
from collections.abc import Callable

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from lxml import etree

from dccsim.duis.codes import INVALID_SIGNATURE, DuisError
from dccsim.duis.xml import DS_NS

EXCLUSIVE_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
ENVELOPED_SIGNATURE = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

_COORDINATE = 32  # P-256: r and s are 32 bytes each
_LINE = 76
_SERIAL_RE = re.compile(r"[0-9]{1,80}", re.ASCII)


def _ds(local: str) -> str:
    return f"{{{DS_NS}}}{local}"


def _elements(parent: etree._Element) -> list[etree._Element]:
    return [child for child in parent if isinstance(child.tag, str)]


def _detach(element: etree._Element) -> None:
    """Remove ``element`` but keep the text that followed it (lxml would drop its tail)."""
    parent = element.getparent()
    if parent is None:
        raise ValueError("cannot detach the root")
    tail = element.tail or ""
    previous = element.getprevious()
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(element)


# ds types declared mixed in the xmldsig schema: their whitespace is content, even to DCC's tool.
_MIXED_DS = frozenset(
    f"{{{DS_NS}}}{local}"
    for local in (
        "CanonicalizationMethod",
        "SignatureMethod",
        "Transform",
        "DigestMethod",
        "KeyInfo",
        "KeyValue",
        "Object",
        "SignatureProperty",
    )
)


def _is_blank(text: str | None) -> bool:
    return text is not None and not text.strip()


def _strip_element_whitespace(root: etree._Element) -> bool:
    """Remove whitespace-only text between the children of elements that have children (DUIS
    declares no mixed content), as a schema-aware parser ignoring element-content whitespace
    does. Leaf elements keep their text. Returns whether anything was removed."""
    removed = False
    for element in root.iter():
        if not isinstance(element.tag, str) or element.tag in _MIXED_DS or len(element) == 0:
            continue
        if _is_blank(element.text):
            element.text, removed = None, True
        for child in element:
            if _is_blank(child.tail):
                child.tail, removed = None, True
    return removed


def _enveloped_signature(root: etree._Element) -> etree._Element | None:
    children = _elements(root)
    if children and children[-1].tag == _ds("Signature"):
        return children[-1]
    return None


def _reference_digest(root: etree._Element) -> bytes:
    """SHA-256 of the inclusive C14N 1.0 of ``root`` without its enveloped Signature."""
    document = copy.deepcopy(root)
    signature = _enveloped_signature(document)
    if signature is not None:
        _detach(signature)
    canonical = etree.tostring(document, method="c14n", exclusive=False, with_comments=False)
    return hashlib.sha256(canonical).digest()


def _signed_info_bytes(signed_info: etree._Element) -> bytes:
    # In place: lxml canonicalises the subtree in its document context.
    return etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)


def _wrap(text: str) -> str:
    return "\r\n".join(text[i : i + _LINE] for i in range(0, len(text), _LINE))


def _p256_public_key(certificate: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise DuisError(INVALID_SIGNATURE, "signing certificate does not hold a P-256 key")
    return key


def sign(
    root: etree._Element,
    *,
    private_key: ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
) -> etree._Element:
    """Sign the DUIS document ``root`` in place and return it.

    Any ``ds:Signature`` already ending the document (e.g. a template's placeholder) is replaced;
    the new one is appended as the root's last child. Whitespace-only text between elements
    (indentation) is removed first, so that DCC's signing tool, which ignores it, and XMLDSig
    verifiers, which sign it, digest the same bytes. ``certificate`` names the signer in KeyInfo
    (its issuer in RFC 4514 form, e.g. ``CN=Z1,OU=07``, and its decimal serial) and must hold the
    public half of ``private_key``, a P-256 key.
    """
    template = _signature_template(certificate, private_key)
    while (existing := _enveloped_signature(root)) is not None:
        _detach(existing)
    # DCC's tool would digest the document without it (see the module docstring).
    _strip_element_whitespace(root)
    canonical = etree.tostring(root, method="c14n", exclusive=False, with_comments=False)
    digest = hashlib.sha256(canonical).digest()  # no Signature yet: nothing to leave out

    signature = copy.deepcopy(template)
    root.append(signature)
    signed_info, value = signature[0], signature[1]
    signed_info[2][2].text = base64.b64encode(digest).decode()  # Reference/DigestValue
    der = private_key.sign(_signed_info_bytes(signed_info), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(_COORDINATE, "big") + s.to_bytes(_COORDINATE, "big")
    value.text = _wrap(base64.b64encode(raw).decode())
    return root


@functools.lru_cache(maxsize=64)
def _signature_template(
    certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey
) -> etree._Element:
    """The ds:Signature a signer writes, with empty DigestValue and SignatureValue: built (and
    the key checked against the certificate) once per signer rather than on every document."""
    if not isinstance(private_key.curve, ec.SECP256R1):
        raise ValueError("DUIS XML signatures use P-256 keys")
    certified = certificate.public_key()
    if (
        not isinstance(certified, ec.EllipticCurvePublicKey)
        or certified.public_numbers() != private_key.public_key().public_numbers()
    ):
        raise ValueError("the certificate does not hold this private key's public key")
    signature = etree.Element(_ds("Signature"), nsmap={"ds": DS_NS})
    signed_info = etree.SubElement(signature, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=EXCLUSIVE_C14N)
    etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=ECDSA_SHA256)
    reference = etree.SubElement(signed_info, _ds("Reference"), URI="")
    transforms = etree.SubElement(reference, _ds("Transforms"))
    etree.SubElement(transforms, _ds("Transform"), Algorithm=ENVELOPED_SIGNATURE)
    etree.SubElement(reference, _ds("DigestMethod"), Algorithm=SHA256)
    etree.SubElement(reference, _ds("DigestValue"))
    etree.SubElement(signature, _ds("SignatureValue"))
    key_info = etree.SubElement(signature, _ds("KeyInfo"))
    issuer_serial = etree.SubElement(
        etree.SubElement(key_info, _ds("X509Data")), _ds("X509IssuerSerial")
    )
    etree.SubElement(
        issuer_serial, _ds("X509IssuerName")
    ).text = certificate.issuer.rfc4514_string()
    etree.SubElement(issuer_serial, _ds("X509SerialNumber")).text = str(certificate.serial_number)
    return signature


def _expect(parent: etree._Element, *locals_: str) -> list[etree._Element]:
    """The element children of ``parent``, which must be exactly ``locals_`` in ds, in order."""
    children = _elements(parent)
    if [child.tag for child in children] != [_ds(local) for local in locals_]:
        found = ", ".join(etree.QName(child).localname for child in children) or "nothing"
        raise DuisError(
            INVALID_SIGNATURE,
            f"{etree.QName(parent).localname} holds {found}, not {', '.join(locals_)}",
        )
    return children


def _algorithm(element: etree._Element, expected: str) -> None:
    if element.get("Algorithm") != expected or _elements(element):
        raise DuisError(INVALID_SIGNATURE, f"{etree.QName(element).localname} is not {expected}")


def _base64(element: etree._Element, what: str) -> bytes:
    try:
        return base64.b64decode("".join((element.text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise DuisError(INVALID_SIGNATURE, f"{what} is not base64") from None


def _name_parts(text: str) -> list[tuple[str, str]] | None:
    parts = []
    for part in text.split(","):
        kind, sep, value = part.partition("=")
        if not sep:
            return None
        parts.append((kind.strip().upper(), value.strip()))
    return sorted(parts)


def _issuer_matches(written: str, certificate: x509.Certificate) -> bool:
    """Whether KeyInfo's issuer names the certificate's issuer (RDN order and blanks aside)."""
    actual = certificate.issuer.rfc4514_string()
    if "\\" in written or "\\" in actual or "+" in written or "+" in actual:
        return written == actual  # escaped or multi-valued names: no lenient comparison
    ours, theirs = _name_parts(written), _name_parts(actual)
    return ours is not None and ours == theirs


def verify(
    root: etree._Element,
    *,
    find_certificate: Callable[[int], x509.Certificate | None],
) -> x509.Certificate:
    """Verify the enveloped signature on the DUIS document ``root``; return the signer's cert.

    ``find_certificate`` maps the KeyInfo serial to a certificate (None when unknown). Raises
    :class:`DuisError` (invalid signature) when the signature is missing, departs from the one
    accepted profile, names an unknown certificate or one whose issuer differs, or when the digest
    or the ECDSA signature does not verify. The caller must go on using this same ``root``.
    """
    signature = _enveloped_signature(root)
    if signature is None:
        raise DuisError(INVALID_SIGNATURE, "document has no enveloped ds:Signature")
    signed_info, signature_value, key_info = _expect(
        signature, "SignedInfo", "SignatureValue", "KeyInfo"
    )
    c14n_method, signature_method, reference = _expect(
        signed_info, "CanonicalizationMethod", "SignatureMethod", "Reference"
    )
    _algorithm(c14n_method, EXCLUSIVE_C14N)
    _algorithm(signature_method, ECDSA_SHA256)
    if reference.get("URI") != "":
        raise DuisError(INVALID_SIGNATURE, 'Reference URI is not ""')
    transforms, digest_method, digest_value = _expect(
        reference, "Transforms", "DigestMethod", "DigestValue"
    )
    (transform,) = _expect(transforms, "Transform")
    _algorithm(transform, ENVELOPED_SIGNATURE)
    _algorithm(digest_method, SHA256)
    (x509_data,) = _expect(key_info, "X509Data")
    (issuer_serial,) = _expect(x509_data, "X509IssuerSerial")
    issuer_name, serial_number = _expect(issuer_serial, "X509IssuerName", "X509SerialNumber")

    serial_text = (serial_number.text or "").strip()
    if not _SERIAL_RE.fullmatch(serial_text):
        raise DuisError(INVALID_SIGNATURE, "X509SerialNumber is not a decimal integer")
    certificate = find_certificate(int(serial_text))
    if certificate is None:
        raise DuisError(INVALID_SIGNATURE, "signing certificate is unknown")
    if not _issuer_matches((issuer_name.text or "").strip(), certificate):
        raise DuisError(INVALID_SIGNATURE, "X509IssuerName does not match the certificate")
    public_key = _p256_public_key(certificate)

    expected_digest = _base64(digest_value, "DigestValue")
    if not hmac.compare_digest(expected_digest, _reference_digest(root)):
        raise DuisError(INVALID_SIGNATURE, _digest_mismatch(root, expected_digest))

    raw = _base64(signature_value, "SignatureValue")
    if len(raw) != 2 * _COORDINATE:
        raise DuisError(INVALID_SIGNATURE, "SignatureValue is not a 64-byte r||s")
    der = encode_dss_signature(
        int.from_bytes(raw[:_COORDINATE], "big"), int.from_bytes(raw[_COORDINATE:], "big")
    )
    try:
        public_key.verify(der, _signed_info_bytes(signed_info), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise DuisError(INVALID_SIGNATURE, "signature does not verify") from None
    return certificate


def _digest_mismatch(root: etree._Element, expected_digest: bytes) -> str:
    """Why the digest failed, naming the one mistake that DCC's tool would forgive."""
    compact = copy.deepcopy(root)
    if _strip_element_whitespace(compact) and hmac.compare_digest(
        expected_digest, _reference_digest(compact)
    ):
        return (
            "digest does not match the document: it matches once the whitespace between "
            "elements is removed (as DCC's signing tool reads documents), so the document was "
            "indented or reformatted after it was signed"
        )
    return "digest does not match the document"
