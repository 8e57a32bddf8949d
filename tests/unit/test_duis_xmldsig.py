"""XML signatures: DCC Boxed's samples verify, our signatures verify, tampering is caught."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from dccsim.duis import xmldsig
from dccsim.duis.codes import INVALID_SIGNATURE, DuisError
from dccsim.duis.requestid import DCC_EUI, RequestId
from dccsim.duis.xml import (
    DS_NS,
    build_response,
    check_schema,
    load_schema,
    parse_safely,
    parse_service_request,
    to_bytes,
)

Lookup = Callable[[int], x509.Certificate | None]
SUPPLIER = bytes.fromhex("90B3D51F30010000")
ESME = bytes.fromhex("00DB1234567890A0")
WHEN = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
DSP_OU = {"89", "137"}  # the current and the older DSP XML-signing certificate


def _ds(local: str) -> str:
    return f"{{{DS_NS}}}{local}"


@pytest.fixture(scope="module")
def certificates(reference_dir: Path) -> dict[int, x509.Certificate]:
    """Every ZAZ1 certificate by serial: zaz1/*.pem and zaz1-keystore.json."""
    smki = reference_dir / "smki"
    found: dict[int, x509.Certificate] = {}
    for pem in sorted((smki / "zaz1").glob("*.pem")):
        if pem.name.endswith(".key.pem"):
            continue
        certificate = x509.load_pem_x509_certificate(pem.read_bytes())
        found[certificate.serial_number] = certificate
    keystore = json.loads((smki / "zaz1-keystore.json").read_text())
    for usages in keystore.values():
        for entries in usages.values():
            for entry in entries.values():
                try:
                    certificate = x509.load_pem_x509_certificate(entry["certificate"].encode())
                except ValueError:
                    continue  # the two "mdr" entries with an explicit NULL (PROTOCOL.md)
                found[certificate.serial_number] = certificate
    return found


@pytest.fixture(scope="module")
def find(certificates: dict[int, x509.Certificate]) -> Lookup:
    return certificates.get


@pytest.fixture(scope="module")
def schema(reference_dir: Path) -> etree.XMLSchema:
    return load_schema(reference_dir / "duis" / "xsd")


def _zaz1_pair(
    reference_dir: Path, name: str
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    folder = reference_dir / "smki" / "zaz1"
    key = serialization.load_der_private_key((folder / f"{name}.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    certificate = x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes())
    return key, certificate


def _self_made() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "07"),
            x509.NameAttribute(NameOID.COMMON_NAME, "T1"),
        ]
    )
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "87")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(WHEN)
        .not_valid_after(WHEN + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def _response() -> etree._Element:
    request_id = RequestId(SUPPLIER, ESME, 1000)
    return build_response(
        request_id=request_id,
        response_id=request_id.response_id(),
        response_code="I0",
        response_datetime=WHEN,
        service_reference="4.1",
        service_reference_variant="4.1.1",
        gbcs_payload=b"\xdd\x00\x00\x00\x00\x00\x00\x10",
    )


# --------------------------------------------------------------------------- DCC Boxed samples


@pytest.mark.parametrize("name", ["readfw-response.xml", "read-inventory-response-5.4.xml"])
def test_dcc_boxed_responses_verify_with_the_dsp_xml_sign_certificate(
    reference_dir: Path, find: Lookup, name: str
) -> None:
    root = parse_safely((reference_dir / "duis" / "samples" / name).read_bytes())
    signer = xmldsig.verify(root, find_certificate=find)
    units = signer.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert {str(a.value) for a in units} <= DSP_OU
    assert DCC_EUI.hex() in signer.subject.rfc4514_string()


def test_dcc_boxed_bad_signature_sample_fails(reference_dir: Path, find: Lookup) -> None:
    path = reference_dir / "duis" / "samples" / "readfw-response-badsignature.xml"
    with pytest.raises(DuisError) as caught:
        xmldsig.verify(parse_safely(path.read_bytes()), find_certificate=find)
    assert caught.value.code == INVALID_SIGNATURE


SIGNED_REQUEST = "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS-signed.XML"


def test_template_placeholder_signature_fails(reference_dir: Path, find: Lookup) -> None:
    path = reference_dir / "duis" / "samples" / SIGNED_REQUEST
    with pytest.raises(DuisError):
        xmldsig.verify(parse_safely(path.read_bytes()), find_certificate=find)


# --------------------------------------------------------------------------- our signatures


def test_sign_then_verify_with_a_fresh_key() -> None:
    key, certificate = _self_made()
    root = xmldsig.sign(_response(), private_key=key, certificate=certificate)
    reparsed = parse_safely(to_bytes(root))
    signer = xmldsig.verify(reparsed, find_certificate={certificate.serial_number: certificate}.get)
    assert signer == certificate


def test_signature_is_the_last_child_in_the_agreed_form() -> None:
    key, certificate = _self_made()
    root = xmldsig.sign(_response(), private_key=key, certificate=certificate)
    signature = root[-1]
    assert signature.tag == _ds("Signature") and signature.prefix == "ds"
    assert signature.nsmap["ds"] == DS_NS
    issuer = signature.find(f".//{_ds('X509IssuerName')}")
    serial = signature.find(f".//{_ds('X509SerialNumber')}")
    assert issuer is not None and issuer.text == "CN=T1,OU=07"
    assert serial is not None and serial.text == str(certificate.serial_number)


def test_signature_value_is_raw_r_s_wrapped_at_76_with_crlf() -> None:
    key, certificate = _self_made()
    root = xmldsig.sign(_response(), private_key=key, certificate=certificate)
    value = root.find(f".//{_ds('SignatureValue')}")
    assert value is not None and value.text is not None
    lines = value.text.split("\r\n")
    assert [len(line) for line in lines] == [76, 12]
    assert len(base64.b64decode("".join(lines))) == 64
    assert b"&#13;\n" in to_bytes(root)


def test_signed_response_still_validates(schema: etree.XMLSchema) -> None:
    key, certificate = _self_made()
    check_schema(schema, xmldsig.sign(_response(), private_key=key, certificate=certificate))


def test_dsp_signed_response_verifies_with_the_dsp_certificate(
    reference_dir: Path, find: Lookup
) -> None:
    key, certificate = _zaz1_pair(reference_dir, "Z1-accessControlBroker-dSPXmlSign")
    root = xmldsig.sign(_response(), private_key=key, certificate=certificate)
    assert xmldsig.verify(parse_safely(to_bytes(root)), find_certificate=find) == certificate


def test_resigned_request_sample_verifies(
    reference_dir: Path, find: Lookup, schema: etree.XMLSchema
) -> None:
    path = reference_dir / "duis" / "samples" / SIGNED_REQUEST
    request = parse_service_request(path.read_bytes())
    key, certificate = _zaz1_pair(reference_dir, "xml-sign-90B3D51F30010000-ds")
    xmldsig.sign(request.root, private_key=key, certificate=certificate)
    data = to_bytes(request.root)
    assert data.count(b"Signature>") == 2  # the placeholder was replaced, not kept
    again = parse_service_request(data)
    assert xmldsig.verify(again.root, find_certificate=find) == certificate
    assert again.request_id == request.request_id
    check_schema(schema, again.root)


def test_every_template_can_be_signed_and_verified(reference_dir: Path) -> None:
    key, certificate = _self_made()
    lookup = {certificate.serial_number: certificate}.get
    for template in sorted((reference_dir / "duis" / "templates").glob("*.XML")):
        root = xmldsig.sign(
            parse_safely(template.read_bytes()), private_key=key, certificate=certificate
        )
        xmldsig.verify(parse_safely(to_bytes(root)), find_certificate=lookup)


def test_sign_refuses_a_certificate_for_another_key() -> None:
    key, _ = _self_made()
    _, other = _self_made()
    with pytest.raises(ValueError):
        xmldsig.sign(_response(), private_key=key, certificate=other)


# --------------------------------------------------------------------------- what must fail


def _signed() -> tuple[bytes, Lookup]:
    key, certificate = _self_made()
    root = xmldsig.sign(_response(), private_key=key, certificate=certificate)
    return to_bytes(root), {certificate.serial_number: certificate}.get


def _texts(data: bytes) -> dict[str, int]:
    """The elements with text, by local name, as positions in document order."""
    elements = list(parse_safely(data).iter())
    return {
        etree.QName(e).localname: i
        for i, e in enumerate(elements)
        if isinstance(e.tag, str) and (e.text or "").strip()
    }


_SIGNED, _LOOKUP = _signed()
_TEXTS = _texts(_SIGNED)


@pytest.mark.parametrize("index", list(_TEXTS.values()), ids=list(_TEXTS))
def test_tampering_with_any_element_text_breaks_verification(index: int) -> None:
    root = parse_safely(_SIGNED)
    element = list(root.iter())[index]
    text = element.text or ""
    # Change one character and keep the text's shape (base64 stays base64, digits digits).
    position = len(text.strip()) // 2
    old = text.strip()[position]
    new = {"0": "1", "A": "B", "a": "b"}.get(old, "0" if old.isdigit() else "A")
    if new == old:
        new = "B"
    element.text = text.strip()[:position] + new + text.strip()[position + 1 :]
    with pytest.raises(DuisError) as caught:
        xmldsig.verify(root, find_certificate=_LOOKUP)
    assert caught.value.code == INVALID_SIGNATURE


def test_an_untampered_copy_verifies() -> None:
    xmldsig.verify(parse_safely(_SIGNED), find_certificate=_LOOKUP)


def test_tampering_with_whitespace_breaks_verification() -> None:
    root = parse_safely(_SIGNED)
    root[0].tail = "\n"
    with pytest.raises(DuisError):
        xmldsig.verify(root, find_certificate=_LOOKUP)


def test_an_unsigned_document_fails() -> None:
    with pytest.raises(DuisError) as caught:
        xmldsig.verify(_response(), find_certificate=_LOOKUP)
    assert caught.value.code == INVALID_SIGNATURE


def test_an_unknown_certificate_fails() -> None:
    with pytest.raises(DuisError):
        xmldsig.verify(parse_safely(_SIGNED), find_certificate=lambda serial: None)


def test_a_signature_that_is_not_last_fails() -> None:
    root = parse_safely(_SIGNED)
    root.insert(0, root[-1])
    with pytest.raises(DuisError):
        xmldsig.verify(root, find_certificate=_LOOKUP)


@pytest.mark.parametrize(
    ("local", "algorithm"),
    [
        ("CanonicalizationMethod", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"),
        ("SignatureMethod", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
        ("DigestMethod", "http://www.w3.org/2000/09/xmldsig#sha1"),
        ("Transform", "http://www.w3.org/2001/10/xml-exc-c14n#"),
    ],
)
def test_another_algorithm_fails(local: str, algorithm: str) -> None:
    root = parse_safely(_SIGNED)
    element = root.find(f".//{_ds(local)}")
    assert element is not None
    element.set("Algorithm", algorithm)
    with pytest.raises(DuisError):
        xmldsig.verify(root, find_certificate=_LOOKUP)


def test_a_reference_to_something_else_fails() -> None:
    root = parse_safely(_SIGNED)
    reference = root.find(f".//{_ds('Reference')}")
    assert reference is not None
    reference.set("URI", "#body")
    with pytest.raises(DuisError):
        xmldsig.verify(root, find_certificate=_LOOKUP)


def test_a_der_signature_value_fails() -> None:
    key, certificate = _self_made()
    root = xmldsig.sign(_response(), private_key=key, certificate=certificate)
    signed_info = root.find(f".//{_ds('SignedInfo')}")
    value = root.find(f".//{_ds('SignatureValue')}")
    assert signed_info is not None and value is not None
    canonical = etree.tostring(signed_info, method="c14n", exclusive=True)
    value.text = base64.b64encode(key.sign(canonical, ec.ECDSA(hashes.SHA256()))).decode()
    with pytest.raises(DuisError):
        xmldsig.verify(root, find_certificate={certificate.serial_number: certificate}.get)


def test_a_signature_by_another_key_fails() -> None:
    _, certificate = _self_made()
    other_key, _ = _self_made()
    root = _response()
    xmldsig.sign(root, private_key=other_key, certificate=_self_made_for(other_key, certificate))
    with pytest.raises(DuisError):
        xmldsig.verify(root, find_certificate=lambda serial: certificate)


def _self_made_for(key: ec.EllipticCurvePrivateKey, template: x509.Certificate) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(template.issuer)
        .public_key(key.public_key())
        .serial_number(template.serial_number)
        .not_valid_before(WHEN)
        .not_valid_after(WHEN + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


# --------------------------------------------------------------------------- DCC's tool's view


def _blank_between_elements(root: etree._Element) -> list[str]:
    """Where whitespace-only text sits between elements (what DCC's tool ignores)."""
    found = []
    for element in root.iter():
        if not isinstance(element.tag, str) or len(element) == 0:
            continue
        name = etree.QName(element).localname
        if element.text is not None and not element.text.strip():
            found.append(f"{name} text")
        found += [
            f"{name} child tail" for c in element if c.tail is not None and not c.tail.strip()
        ]
    return found


def test_sign_removes_the_indentation_dcc_tool_would_ignore(reference_dir: Path) -> None:
    template = reference_dir / "duis" / "templates" / "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
    root = parse_safely(template.read_bytes())
    assert _blank_between_elements(root)  # the template is indented
    key, certificate = _self_made()
    xmldsig.sign(root, private_key=key, certificate=certificate)
    assert _blank_between_elements(root) == []
    again = parse_service_request(to_bytes(root))
    assert str(again.request_id).endswith(":1000") and again.body_name == (
        "ReadInstantaneousImportRegisters"
    )


def test_sign_keeps_whitespace_inside_leaf_elements() -> None:
    key, certificate = _self_made()
    root = _response()
    variant = root.find(".//{*}ServiceReferenceVariant")
    assert variant is not None
    variant.text = " 4.1.1 "
    xmldsig.sign(root, private_key=key, certificate=certificate)
    assert variant.text == " 4.1.1 "


def test_a_document_indented_after_signing_is_refused_saying_so() -> None:
    root = parse_safely(_SIGNED)
    etree.indent(root)
    with pytest.raises(DuisError) as caught:
        xmldsig.verify(root, find_certificate=_LOOKUP)
    assert caught.value.code == INVALID_SIGNATURE
    assert "indented" in str(caught.value)


def test_other_tampering_does_not_blame_indentation() -> None:
    root = parse_safely(_SIGNED)
    etree.indent(root)
    code = root.find(".//{*}ResponseCode")
    assert code is not None
    code.text = "I99"
    with pytest.raises(DuisError) as caught:
        xmldsig.verify(root, find_certificate=_LOOKUP)
    assert "indented" not in str(caught.value)
