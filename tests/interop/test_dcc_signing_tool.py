"""dccsim and DCC's own signing tool agree on DUIS XML signatures, in both directions.

With the ZAZ1 test set imported (as ``dccsim pki import-zaz1`` does): every request template the
tool signs verifies with dccsim's verifier and passes the User Gateway's check chain, and every
document dccsim signs (its Responses, Alerts and acknowledgements, and the templates re-signed)
passes the tool's validation wherever the tool's bundled DUIS 5.1 schema accepts the content.
The tool runs once per direction over all the documents (see signing_tool.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from dccsim.duis import xmldsig
from dccsim.duis.catalogue import UserRole
from dccsim.duis.codes import INVALID_SIGNATURE, DuisError
from dccsim.duis.requestid import DCC_EUI, RequestId, format_eui, parse_eui
from dccsim.duis.xml import (
    DS_NS,
    PreCommand,
    build_acknowledgement,
    build_dcc_alert,
    build_device_alert,
    build_response,
    build_service_request,
    dsp_inventory,
    load_schema,
    parse_safely,
    quarantined_request,
    to_bytes,
)
from dccsim.participants import Participant
from dccsim.pki.devpki import init_pki, issue_party
from dccsim.pki.keystore import Entry, KeyStore
from dccsim.pki.smki import KeyUsage, Role, eui_of
from dccsim.smi import DeviceRecord, DeviceStatus, DeviceType
from services.transform.srvs import TRANSFORMATIONS_BY_KEY
from services.user_gateway.checks import CheckChain, DeviceCache, Route, WebService
from services.user_gateway.non_device import NON_DEVICE_SERVICES
from tests.interop.signing_tool import (
    MISSING_KEY,
    SUCCESS,
    VALIDATION_FAILED,
    SigningTool,
    ToolResult,
)

pytestmark = pytest.mark.interop

WHEN = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
ZAZ1_SUPPLIER = "90-B3-D5-1F-30-01-00-00"
TEMPLATE_ESME = "00-DB-12-34-56-78-90-A0"
ECS17B = "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
Lookup = Callable[[int], x509.Certificate | None]


def _lookup(store: KeyStore) -> Lookup:
    def find(serial: int) -> x509.Certificate | None:
        entry = store.by_serial(serial)
        return None if entry is None else entry.certificate

    return find


def _serial(document: bytes) -> int:
    found = parse_safely(document).find(f".//{{{DS_NS}}}X509SerialNumber")
    assert found is not None and found.text is not None
    return int(found.text)


def _originator(document: bytes) -> str:
    found = parse_safely(document).find(".//{*}Header/{*}RequestID")
    assert found is not None and found.text is not None
    return found.text.split(":")[0].upper()


def _sign(root: etree._Element, entry: Entry) -> bytes:
    key = entry.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey), f"{entry.name} has no private key"
    return to_bytes(xmldsig.sign(root, private_key=key, certificate=entry.certificate))


@pytest.fixture(scope="module")
def templates(reference_dir: Path) -> dict[str, bytes]:
    folder = reference_dir / "duis" / "templates"
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.XML"))}


@pytest.fixture(scope="module")
def tool_signed(signing_tool: SigningTool, templates: dict[str, bytes]) -> dict[str, ToolResult]:
    """Every template signed by the tool with its own ZAZ1 key for the originator (one JVM)."""
    results = signing_tool.sign(list(templates.values()), preserve_counter=True)
    return dict(zip(templates, results, strict=True))


def _responses() -> dict[str, etree._Element]:
    """One of each kind of signed document the DCC sends, as dccsim builds them."""
    rid = RequestId.parse(f"{ZAZ1_SUPPLIER}:{TEMPLATE_ESME}:1000")
    dcc_rid = RequestId.parse(f"{ZAZ1_SUPPLIER}:{format_eui(DCC_EUI)}:1001")
    device = {
        "device_id": TEMPLATE_ESME,
        "device_type": "ESME",
        "device_status": "Commissioned",
        "device_manufacturer": "1234",
        "device_model": "5678",
        "import_mpxn": "1234567890123",
        "postcode": "AB1 2CD",
        "address_identifier": "1 Test Street",
    }
    return {
        "async I0 with GBCSPayload": build_response(
            request_id=rid,
            response_id=rid.response_id(),
            response_code="I0",
            response_datetime=WHEN,
            service_reference="4.1",
            service_reference_variant="4.1.1",
            gbcs_payload=bytes.fromhex("DD000000000000") + bytes(range(40)),
        ),
        "I99 acknowledgement": build_acknowledgement(
            request_id=rid,
            response_code="I99",
            response_datetime=WHEN,
            service_reference="4.1",
            service_reference_variant="4.1.1",
        ),
        "CV 4 PreCommand": build_response(
            request_id=rid,
            response_id=None,
            response_code="I0",
            response_datetime=WHEN,
            service_reference="6.15",
            service_reference_variant="6.15.1",
            pre_command=PreCommand("3.2", bytes.fromhex("DF09") + bytes(30)),
        ),
        "8.2 DSPInventory": build_response(
            request_id=dcc_rid,
            response_id=None,
            response_code="I0",
            response_datetime=WHEN,
            service_reference="8.2",
            service_reference_variant="8.2",
            content=dsp_inventory([device]),
        ),
        "Device Alert": build_device_alert(
            response_id=f"{TEMPLATE_ESME}:{ZAZ1_SUPPLIER}:5",
            alert_code=0x8F35,
            gbcs_payload=bytes.fromhex("DF09") + bytes(20),
            response_datetime=WHEN,
        ),
        "DCC Alert AD1": build_dcc_alert(
            response_id=f"{format_eui(DCC_EUI)}:{ZAZ1_SUPPLIER}:7",
            alert_code="AD1",
            alert=quarantined_request(request_id=rid, event_ref=12),
            response_datetime=WHEN,
            request_id=rid,
        ),
    }


def _dsp_credentials(store: KeyStore) -> list[Entry]:
    """Every DSP XML-signing credential (with its key) the ZAZ1 import brought in."""
    found = [
        e
        for e in store.find(eui=DCC_EUI, usage=KeyUsage.XML_SIGN)
        if e.source == "zaz1" and e.private_key is not None
    ]
    unique = {e.serial: e for e in found}
    return sorted(unique.values(), key=lambda e: e.name or "")


@pytest.fixture(scope="module")
def dccsim_signed(
    zaz1_store: KeyStore,
    templates: dict[str, bytes],
    tool_signed: dict[str, ToolResult],
) -> dict[str, bytes]:
    """Documents signed by dccsim: each kind of Response with each ZAZ1 DSP credential, and each
    template the tool could sign, re-signed by dccsim with the very credential the tool used."""
    documents: dict[str, bytes] = {}
    for entry in _dsp_credentials(zaz1_store):
        for kind, root in _responses().items():
            documents[f"{kind} / {entry.name}"] = _sign(root, entry)
    for name, result in tool_signed.items():
        if result.exit_code != SUCCESS:
            continue
        used = zaz1_store.by_serial(_serial(result.output))
        assert used is not None, f"{name}: the tool signed with a certificate ZAZ1 lacks"
        documents[f"template {name}"] = _sign(parse_safely(templates[name]), used)
    return documents


@pytest.fixture(scope="module")
def tampered(dccsim_signed: dict[str, bytes]) -> dict[str, tuple[str, bytes]]:
    """Each dccsim-signed Response changed after signing: name -> (its untouched twin, bytes)."""
    out: dict[str, tuple[str, bytes]] = {}
    for name, document in dccsim_signed.items():
        if name.startswith("template "):
            continue
        altered = parse_safely(document)
        when = altered.find(".//{*}ResponseDateTime")
        assert when is not None
        when.text = "2024-01-02T03:04:06.000Z"
        out[f"{name} (date changed after signing)"] = (name, to_bytes(altered))
    return out


@pytest.fixture(scope="module")
def tool_validated(
    signing_tool: SigningTool,
    dccsim_signed: dict[str, bytes],
    tampered: dict[str, tuple[str, bytes]],
) -> dict[str, ToolResult]:
    """The tool's verdict on every dccsim-signed document, certificates from its own library."""
    documents = {**dccsim_signed, **{name: data for name, (_, data) in tampered.items()}}
    results = signing_tool.validate(list(documents.values()))
    return dict(zip(documents, results, strict=True))


# --------------------------------------------------------------------------- tool -> dccsim


def test_the_tool_signs_the_templates_its_schema_allows(tool_signed: dict[str, ToolResult]) -> None:
    signed = [n for n, r in tool_signed.items() if r.exit_code == SUCCESS]
    refused = {n: r.describe() for n, r in tool_signed.items() if r.exit_code != SUCCESS}
    # The tool refuses only what its schema rejects or whose originator it holds no key for.
    assert all(
        r.exit_code == MISSING_KEY or (r.exit_code == VALIDATION_FAILED and not r.schema_ok)
        for n, r in tool_signed.items()
        if n in refused
    ), refused
    assert ECS17B in signed
    assert len(signed) >= len(tool_signed) * 9 // 10, refused


def test_requests_the_tool_signs_verify_in_dccsim(
    tool_signed: dict[str, ToolResult], zaz1_store: KeyStore
) -> None:
    find = _lookup(zaz1_store)
    failures = {}
    verified = 0
    for name, result in tool_signed.items():
        if result.exit_code != SUCCESS:
            continue
        try:
            signer = xmldsig.verify(parse_safely(result.output), find_certificate=find)
        except DuisError as error:
            failures[name] = str(error)
            continue
        # The User Gateway's rule: the signer is the RequestID originator.
        signer_eui = eui_of(signer)
        assert signer_eui is not None and format_eui(signer_eui) == _originator(result.output)
        verified += 1
    assert failures == {}
    assert verified > 0


def test_a_tool_signed_request_altered_afterwards_is_refused(
    tool_signed: dict[str, ToolResult], zaz1_store: KeyStore
) -> None:
    root = parse_safely(tool_signed[ECS17B].output)
    request_id = root.find(".//{*}Header/{*}RequestID")
    assert request_id is not None and request_id.text is not None
    request_id.text = request_id.text.replace(":1000", ":1001")
    with pytest.raises(DuisError) as caught:
        xmldsig.verify(root, find_certificate=_lookup(zaz1_store))
    assert caught.value.code == INVALID_SIGNATURE


async def test_a_tool_signed_request_passes_the_user_gateway_check_chain(
    tool_signed: dict[str, ToolResult], zaz1_store: KeyStore, reference_dir: Path
) -> None:
    """The whole chain as the User Gateway runs it, signature validation on, with the official
    DUIS 5.4 schema too; the signing User is ZAZ1's supplier, the device its ESME."""
    user = Participant(
        "zaz1-supplier",
        ZAZ1_SUPPLIER,
        frozenset({UserRole.IMPORT_SUPPLIER, UserRole.GAS_SUPPLIER}),
        None,
    )

    async def fetch(eui: str, _rid: str) -> dict[str, Any] | None:
        if eui != TEMPLATE_ESME:
            return None
        record = DeviceRecord(
            eui, DeviceType.ESME, DeviceStatus.COMMISSIONED, registrations={"IS": ZAZ1_SUPPLIER}
        )
        return record.to_wire()

    advanced: list[tuple[str, int]] = []

    async def advance(originator: str, counter: int) -> None:
        advanced.append((originator, counter))

    chain = CheckChain(
        find_certificate=_lookup(zaz1_store),
        advance_counter=advance,
        devices=DeviceCache(fetch),
        transformable=frozenset(TRANSFORMATIONS_BY_KEY),
        non_device_srvs=frozenset(NON_DEVICE_SERVICES),
        schema=load_schema(reference_dir / "duis" / "xsd"),
    )
    accepted = await chain.check(
        tool_signed[ECS17B].output, web_service=WebService.SEND_COMMAND, participant=user
    )
    assert accepted.route is Route.DEVICE
    assert accepted.srv.variant == "4.1.1"
    assert advanced == [(ZAZ1_SUPPLIER, 1000)]


# --------------------------------------------------------------------------- dccsim -> tool


def test_dccsim_signed_documents_pass_the_tools_validation(
    tool_validated: dict[str, ToolResult], dccsim_signed: dict[str, bytes]
) -> None:
    """Each passes, or is outside what the tool's 5.1 schema allows, or names a DSP certificate
    the tool does not hold (checked with the certificate file in the next test)."""
    failures = {}
    for name in dccsim_signed:
        result = tool_validated[name]
        if result.signature_ok:
            continue
        if result.exit_code == MISSING_KEY and result.schema_ok:
            continue
        failures[name] = result.describe()
    assert failures == {}


def test_every_kind_of_dccsim_response_passes_the_tool(
    tool_validated: dict[str, ToolResult],
) -> None:
    """Not vacuous: every kind of Response passed the tool's schema and signature check with a
    DSP certificate from the tool's own library."""
    passed = {name.split(" / ")[0] for name, r in tool_validated.items() if r.signature_ok}
    assert set(_responses()) <= passed


def test_dccsim_resigned_templates_pass_the_tool(
    tool_validated: dict[str, ToolResult], tool_signed: dict[str, ToolResult]
) -> None:
    """Each template the tool itself could sign, re-signed by dccsim (indentation and all) with
    the same credential, passes the tool's validation."""
    signable = [n for n, r in tool_signed.items() if r.exit_code == SUCCESS]
    results = {n: tool_validated[f"template {n}"] for n in signable}
    assert {n: r.describe() for n, r in results.items() if not r.signature_ok} == {}


def test_the_tool_refuses_dccsim_documents_altered_after_signing(
    tool_validated: dict[str, ToolResult], tampered: dict[str, tuple[str, bytes]]
) -> None:
    checked = 0
    for name, (twin, _) in tampered.items():
        if not tool_validated[twin].signature_ok:
            continue  # signed with a certificate the tool lacks: it cannot tell
        result = tool_validated[name]
        assert result.schema_ok and result.exit_code == VALIDATION_FAILED, (name, result.log)
        checked += 1
    assert checked >= len(_responses())


def test_responses_signed_with_dsp_certificates_the_tool_lacks_pass_given_the_certificate(
    signing_tool: SigningTool,
    zaz1_store: KeyStore,
    tool_validated: dict[str, ToolResult],
    tmp_path: Path,
) -> None:
    """ZAZ1's newest DSP XML-signing certificate (2025, what the import makes primary) postdates
    the tool's bundled library: the tool validates dccsim's signatures with it when given it."""
    lacking = {
        entry.serial: entry
        for entry in _dsp_credentials(zaz1_store)
        for name, result in tool_validated.items()
        if name.endswith(f" / {entry.name}") and result.exit_code == MISSING_KEY
    }
    if not lacking:
        pytest.skip("the tool holds every ZAZ1 DSP XML-signing certificate")
    for entry in lacking.values():
        certificate = tmp_path / f"{entry.serial}.pem"
        certificate.write_bytes(entry.certificate_path.read_bytes())
        documents = [_sign(root, entry) for root in _responses().values()]
        results = signing_tool.validate(documents, certificate=certificate)
        assert [r.describe() for r in results if not r.signature_ok] == []


def test_the_js_api_signs_and_validates_like_the_jar(
    signing_tool: SigningTool,
    templates: dict[str, bytes],
    zaz1_store: KeyStore,
    tool_validated: dict[str, ToolResult],
) -> None:
    """The package's own entry points, signDuis and validateDuis, as a Node User System calls
    them: its signature verifies in dccsim, and it validates a dccsim-signed Response."""
    if signing_tool.node is None:
        pytest.skip("node is not installed: the package's JavaScript API cannot run")
    kind, response = next(iter(_responses().items()))
    known = next(
        e for e in _dsp_credentials(zaz1_store) if tool_validated[f"{kind} / {e.name}"].signature_ok
    )
    (signed_ok, signed), (validated_ok, validated) = signing_tool.through_js_api(
        [("signDuis", templates[ECS17B]), ("validateDuis", _sign(response, known))]
    )
    assert signed_ok, signed
    signer = xmldsig.verify(parse_safely(signed.encode()), find_certificate=_lookup(zaz1_store))
    signer_eui = eui_of(signer)
    assert signer_eui is not None and format_eui(signer_eui) == ZAZ1_SUPPLIER
    assert validated_ok, validated
    # validateDuis answers the signed content without the signature.
    assert "ResponseMessage" in validated and "SignatureValue" not in validated


def test_the_tool_signing_with_a_dccsim_issued_key_verifies_in_dccsim(
    signing_tool: SigningTool, tmp_path: Path
) -> None:
    """A User of dccsim's own test PKI signing with DCC's tool, its key and certificate given as
    files (the tool's ``signingcert.pem signingkey.key`` arguments): dccsim verifies it, the
    tool's issuer name for dccsim's CA included."""
    eui = "90-B3-D5-1F-30-01-00-42"
    bundle = tmp_path / "bundle"
    init_pki(tmp_path)
    issue_party(
        tmp_path, eui=parse_eui(eui), role=Role.SUPPLIER, user_id="tool-user", out_dir=bundle
    )
    key = serialization.load_pem_private_key((bundle / "xml-sign.key").read_bytes(), None)
    certificate = x509.load_pem_x509_certificate((bundle / "xml-sign.pem").read_bytes())
    pem_key = tmp_path / "xml-sign-pkcs8.pem"  # the tool reads "BEGIN PRIVATE KEY" PEM files
    pem_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    request = build_service_request(
        request_id=RequestId.parse(f"{eui}:{TEMPLATE_ESME}:7"),
        command_variant=1,
        service_reference="4.1",
        service_reference_variant="4.1.1",
        body_xml=b"<sr:ReadInstantaneousImportRegisters/>",
    )
    (signed,) = signing_tool.sign(
        [to_bytes(request)], credentials=(bundle / "xml-sign.pem", pem_key)
    )
    assert signed.exit_code == SUCCESS, signed.describe()
    assert _serial(signed.output) == certificate.serial_number
    found = {certificate.serial_number: certificate}.get
    assert xmldsig.verify(parse_safely(signed.output), find_certificate=found) == certificate
