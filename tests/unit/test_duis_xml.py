"""DUIS XML: safe parsing, Service Requests from DCC's templates, Responses against the XSD."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from dccsim.duis.codes import MALFORMED_REQUEST, DuisError
from dccsim.duis.requestid import DCC_EUI, RequestId
from dccsim.duis.xml import (
    SR_NS,
    PreCommand,
    build_acknowledgement,
    build_response,
    build_service_request,
    check_schema,
    format_datetime,
    load_schema,
    parse_response,
    parse_safely,
    parse_service_request,
    to_bytes,
)
from tests.conftest import reference_root

SUPPLIER = bytes.fromhex("90B3D51F30010000")
ESME = bytes.fromhex("00DB1234567890A0")
WHEN = dt.datetime(2022, 8, 17, 15, 45, 42, 790123, tzinfo=dt.UTC)


def _templates() -> Iterator[Path]:
    folder = reference_root() / "duis" / "templates"
    return iter(sorted(folder.glob("*.XML")) if folder.is_dir() else [])


TEMPLATES = list(_templates())


def _srv_from_name(path: Path) -> str:
    # "<use case>_<SRV>_..." or "<SRV>_...", e.g. ECS17b_4.1.1_..., 8.2_READ_INVENTORY_...
    first, second = path.name.split("_")[:2]
    token = first if first[0].isdigit() else second
    return token.rstrip(".")


@pytest.fixture(scope="module")
def schema(reference_dir: Path) -> etree.XMLSchema:
    return load_schema(reference_dir / "duis" / "xsd")


@pytest.fixture
def samples(reference_dir: Path) -> Path:
    return reference_dir / "duis" / "samples"


def _sr(local: str) -> str:
    return f"{{{SR_NS}}}{local}"


# --------------------------------------------------------------------------- safe parsing


def test_xxe_sample_is_refused(samples: Path) -> None:
    with pytest.raises(DuisError) as caught:
        parse_safely((samples / "duis-xxe.xml").read_bytes())
    assert caught.value.code == MALFORMED_REQUEST


def test_doctype_hidden_by_utf16_is_refused_without_resolving(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    document = (
        f'<?xml version="1.0" encoding="UTF-16"?>'
        f'<!DOCTYPE r [<!ENTITY x SYSTEM "{secret.as_uri()}">]><r>&x;</r>'
    ).encode("utf-16")
    with pytest.raises(DuisError) as caught:
        parse_safely(document)
    assert "SECRET" not in str(caught.value)


def test_billion_laughs_is_refused() -> None:
    document = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>'
    )
    with pytest.raises(DuisError):
        parse_safely(document)


@pytest.mark.parametrize("data", [b"", b"<a>", b"not xml", b"<a></b>", b"\xff\xfe\x00"])
def test_malformed_xml_is_refused(data: bytes) -> None:
    with pytest.raises(DuisError) as caught:
        parse_safely(data)
    assert caught.value.code == MALFORMED_REQUEST


def test_oversized_documents_are_refused() -> None:
    with pytest.raises(DuisError):
        parse_safely(b"<a>" + b" " * 100 + b"</a>", max_bytes=64)


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(DuisError):
        parse_safely(b"<a>" * 100_000 + b"</a>" * 100_000, max_bytes=10**7)


def test_to_bytes_writes_a_utf8_declaration() -> None:
    data = to_bytes(etree.fromstring(b"<a>\xc3\xa9</a>"))
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert data.endswith(b"<a>\xc3\xa9</a>")


# --------------------------------------------------------------------------- Service Requests


@pytest.mark.parametrize("template", TEMPLATES, ids=[t.name for t in TEMPLATES])
def test_every_template_parses_with_the_srv_of_its_file_name(template: Path) -> None:
    request = parse_service_request(template.read_bytes())
    assert request.service_reference_variant == _srv_from_name(template)
    assert request.service_reference_variant.startswith(request.service_reference)
    assert 1 <= request.command_variant <= 8
    assert etree.QName(request.body).namespace == SR_NS
    assert request.schema_version == "5.4"
    assert request.request_id.counter > 0


def test_there_are_templates(reference_dir: Path) -> None:
    assert len(TEMPLATES) > 200


def test_non_device_templates_target_the_dcc(reference_dir: Path) -> None:
    non_device = [parse_service_request(t.read_bytes()) for t in TEMPLATES]
    cv8 = [r for r in non_device if r.command_variant == 8]
    assert cv8
    assert all(r.request_id.target == DCC_EUI for r in cv8)


def test_template_fields_are_read(reference_dir: Path) -> None:
    path = reference_dir / "duis" / "templates" / "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
    request = parse_service_request(path.read_bytes())
    assert request.request_id == RequestId(SUPPLIER, ESME, 1000)
    assert (request.command_variant, request.service_reference) == (1, "4.1")
    assert request.body_name == "ReadInstantaneousImportRegisters"
    assert request.first_in_sequence is None and request.preceding_request_id is None
    assert request.signed_pre_command is None


def test_templates_validate_against_the_schema(schema: etree.XMLSchema) -> None:
    for template in TEMPLATES:
        check_schema(schema, parse_safely(template.read_bytes()))


def test_a_response_is_not_a_service_request(samples: Path) -> None:
    with pytest.raises(DuisError):
        parse_service_request((samples / "readfw-response.xml").read_bytes())


def _request_xml(header: str, body: str = "<sr:ClearEventLog/>") -> bytes:
    return (
        f'<sr:Request xmlns:sr="{SR_NS}" schemaVersion="5.4"><sr:Header>{header}</sr:Header>'
        f"<sr:Body>{body}</sr:Body></sr:Request>"
    ).encode()


_ID = "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A1:1000"
_TAIL = (
    "<sr:CommandVariant>1</sr:CommandVariant><sr:ServiceReference>3.3</sr:ServiceReference>"
    "<sr:ServiceReferenceVariant>3.3</sr:ServiceReferenceVariant>"
)


@pytest.mark.parametrize(
    "document",
    [
        _request_xml(_TAIL),  # no RequestID
        _request_xml(_TAIL + f"<sr:RequestID>{_ID}</sr:RequestID>"),  # out of order
        _request_xml(f"<sr:RequestID>{_ID}</sr:RequestID>" + _TAIL.replace(">1<", ">9<")),
        _request_xml(f"<sr:RequestID>{_ID}</sr:RequestID>" + _TAIL, body=""),
        _request_xml(
            f"<sr:RequestID>{_ID}</sr:RequestID>" + _TAIL,
            body="<sr:ClearEventLog/><sr:ClearEventLog/>",
        ),
        _request_xml(f"<sr:RequestID>{_ID}:1</sr:RequestID>" + _TAIL),
        _request_xml(f"<sr:RequestID>{_ID}</sr:RequestID>" + _TAIL + "<sr:Extra/>"),
        _request_xml(f"<sr:RequestID>{_ID}</sr:RequestID>" + _TAIL).replace(
            b' schemaVersion="5.4"', b""
        ),
    ],
)
def test_structurally_wrong_requests_are_refused(document: bytes) -> None:
    with pytest.raises(DuisError) as caught:
        parse_service_request(document)
    assert caught.value.code == MALFORMED_REQUEST


def test_optional_header_fields_are_read() -> None:
    preceding = "90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A1:999"
    document = _request_xml(
        f"<sr:RequestID>{_ID}</sr:RequestID><sr:FirstInSequence>false</sr:FirstInSequence>"
        f"<sr:PrecedingServiceRequestID>{preceding}</sr:PrecedingServiceRequestID>" + _TAIL
    )
    request = parse_service_request(document)
    assert request.first_in_sequence is False
    assert request.preceding_request_id == RequestId.parse(preceding)


def test_built_request_round_trips_and_validates(schema: etree.XMLSchema) -> None:
    request_id = RequestId(SUPPLIER, ESME, 1001)
    root = build_service_request(
        request_id=request_id,
        command_variant=1,
        service_reference="4.1",
        service_reference_variant="4.1.1",
        body_xml=b"<sr:ReadInstantaneousImportRegisters/>",
        first_in_sequence=True,
        preceding_request_id=RequestId(SUPPLIER, ESME, 1000),
    )
    check_schema(schema, root)
    parsed = parse_service_request(to_bytes(root))
    assert parsed.request_id == request_id
    assert (parsed.command_variant, parsed.service_reference_variant) == (1, "4.1.1")
    assert parsed.body_name == "ReadInstantaneousImportRegisters"
    assert parsed.first_in_sequence is True


def test_built_signed_pre_command_exposes_its_payload(schema: etree.XMLSchema) -> None:
    payload = bytes(range(40))
    body = (
        f"<sr:SignedPreCommand><sr:GBCSPayload>{base64.b64encode(payload).decode()}"
        "</sr:GBCSPayload></sr:SignedPreCommand>"
    ).encode()
    root = build_service_request(
        request_id=RequestId(SUPPLIER, ESME, 1002),
        command_variant=5,
        service_reference="1.6",
        service_reference_variant="1.6",
        body_xml=body,
    )
    check_schema(schema, root)
    assert parse_service_request(to_bytes(root)).signed_pre_command == payload


def test_body_xml_may_declare_its_own_namespace() -> None:
    root = build_service_request(
        request_id=RequestId(SUPPLIER, ESME, 1),
        command_variant=1,
        service_reference="3.3",
        service_reference_variant="3.3",
        body_xml=f'<ClearEventLog xmlns="{SR_NS}"/>'.encode(),
    )
    assert parse_service_request(to_bytes(root)).body_name == "ClearEventLog"


# --------------------------------------------------------------------------- Responses


def test_format_datetime_writes_utc_milliseconds() -> None:
    plus_one = dt.timezone(dt.timedelta(hours=1))
    assert format_datetime(WHEN) == "2022-08-17T15:45:42.790Z"
    assert format_datetime(WHEN.astimezone(plus_one)) == "2022-08-17T15:45:42.790Z"
    with pytest.raises(ValueError):
        format_datetime(WHEN.replace(tzinfo=None))


def test_built_response_with_payload_validates(schema: etree.XMLSchema) -> None:
    request_id = RequestId(SUPPLIER, ESME, 1000)
    root = build_response(
        request_id=str(request_id),
        response_id=request_id.response_id(),
        response_code="I0",
        response_datetime=WHEN,
        service_reference="4.1",
        service_reference_variant="4.1.1",
        gbcs_payload=b"\xdd\x00\x01",
    )
    check_schema(schema, root)


def test_response_header_is_in_schema_order() -> None:
    request_id = RequestId(SUPPLIER, ESME, 1000)
    root = build_response(
        request_id=request_id,
        response_id=request_id.response_id(),
        response_code="I0",
        response_datetime=WHEN,
        service_reference="4.1",
        service_reference_variant="4.1.1",
    )
    header = root.find(_sr("Header"))
    assert header is not None
    names = [etree.QName(e).localname for e in header]
    assert names == ["RequestID", "ResponseID", "ResponseCode", "ResponseDateTime"]


def test_built_response_round_trips() -> None:
    request_id = RequestId(SUPPLIER, ESME, 1000)
    root = build_response(
        request_id=request_id,
        response_id=request_id.response_id(),
        response_code="I0",
        response_datetime=WHEN,
        service_reference="4.1",
        service_reference_variant="4.1.1",
        gbcs_payload=b"\xdd\x00\x01",
    )
    response = parse_response(to_bytes(root))
    assert response.request_id == request_id
    assert response.response_id == RequestId(ESME, SUPPLIER, 1000)
    assert (response.response_code, response.service_reference_variant) == ("I0", "4.1.1")
    assert response.gbcs_payload == b"\xdd\x00\x01"
    assert response.response_datetime == "2022-08-17T15:45:42.790Z"


def test_pre_command_response_validates_and_round_trips(schema: etree.XMLSchema) -> None:
    pre_command = PreCommand("4.0", b"\xdf\x09\x01")
    root = build_response(
        request_id=RequestId(SUPPLIER, ESME, 5),
        response_id=None,
        response_code="I0",
        response_datetime=WHEN,
        service_reference="1.6",
        service_reference_variant="1.6",
        pre_command=pre_command,
    )
    check_schema(schema, root)
    response = parse_response(to_bytes(root))
    assert response.pre_command == pre_command
    assert response.gbcs_payload is None


def test_response_without_ids_validates(schema: etree.XMLSchema) -> None:
    root = build_response(
        request_id=None,
        response_id=None,
        response_code="E13",
        response_datetime=WHEN,
        service_reference="8.2",
        service_reference_variant="8.2",
    )
    check_schema(schema, root)


def test_a_response_needs_its_service_reference() -> None:
    with pytest.raises(ValueError):
        build_response(
            request_id=None, response_id=None, response_code="E13", response_datetime=WHEN
        )


def test_a_response_carries_payload_or_pre_command_not_both() -> None:
    with pytest.raises(ValueError):
        build_response(
            request_id=None,
            response_id=None,
            response_code="I0",
            response_datetime=WHEN,
            service_reference="1.6",
            service_reference_variant="1.6",
            gbcs_payload=b"x",
            pre_command=PreCommand("4.0", b"y"),
        )


@pytest.mark.parametrize("code", ["I99", "I0", "E19", "E4", "E13"])
def test_acknowledgements_validate(schema: etree.XMLSchema, code: str) -> None:
    root = build_acknowledgement(
        request_id=RequestId(SUPPLIER, ESME, 1000),
        response_code=code,
        response_datetime=WHEN,
        service_reference="11.2",
        service_reference_variant="11.2",
    )
    check_schema(schema, root)


def test_acknowledgement_has_dcc_boxeds_shape(samples: Path) -> None:
    sample = parse_safely((samples / "acknowledgement-error.xml").read_bytes())
    ours = build_acknowledgement(
        request_id="90-B3-D5-1F-30-01-00-00:88-73-84-57-00-2F-96-6C:1658482675800",
        response_code="E65",
        response_datetime=WHEN,
        service_reference="11.2",
        service_reference_variant="11.2",
    )

    def shape(element: etree._Element) -> list[str]:
        return [etree.QName(e).localname for e in element.iter() if isinstance(e.tag, str)]

    assert shape(ours) == shape(sample)
    theirs = parse_response(to_bytes(sample))
    mine = parse_response(to_bytes(ours))
    assert (mine.request_id, mine.response_code, mine.service_reference) == (
        theirs.request_id,
        theirs.response_code,
        theirs.service_reference,
    )


def test_schema_check_rejects_an_unknown_response_code(schema: etree.XMLSchema) -> None:
    root = build_acknowledgement(
        request_id=None,
        response_code="E8",  # not in the DUIS 5.4 enumeration
        response_datetime=WHEN,
        service_reference="11.2",
        service_reference_variant="11.2",
    )
    with pytest.raises(DuisError) as caught:
        check_schema(schema, root)
    assert caught.value.code == MALFORMED_REQUEST


def test_readfw_sample_response_is_read(samples: Path) -> None:
    response = parse_response((samples / "readfw-response.xml").read_bytes())
    assert response.request_id == RequestId.parse(
        "90-B3-D5-1F-30-01-00-00:88-73-84-57-00-2F-96-1E:1660751141087"
    )
    assert response.request_id is not None
    assert str(response.response_id) == response.request_id.response_id()
    assert (response.response_code, response.service_reference_variant) == ("I0", "11.2")
    assert response.gbcs_payload is not None and response.gbcs_payload[:1] == b"\xdd"


def test_inventory_sample_response_has_no_payload(samples: Path) -> None:
    response = parse_response((samples / "read-inventory-response-5.4.xml").read_bytes())
    assert response.response_id is None
    assert response.gbcs_payload is None
    assert response.service_reference_variant == "8.2"


def test_error_acknowledgement_sample_is_read(samples: Path) -> None:
    response = parse_response((samples / "acknowledgement-error.xml").read_bytes())
    assert (response.response_code, response.response_id) == ("E65", None)


def test_samples_validate_against_the_loaded_schema(schema: etree.XMLSchema, samples: Path) -> None:
    for name in ("readfw-response.xml", "read-inventory-response-5.4.xml"):
        check_schema(schema, parse_safely((samples / name).read_bytes()))
