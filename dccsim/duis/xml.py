"""DUIS XML: parse untrusted bytes safely, read Service Requests and Responses, build them.

Everything here is pure: bytes and elements in, bytes and elements out. The one exception is
:func:`load_schema`, which reads the XSD folder its caller names.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from dccsim.duis.codes import MALFORMED_REQUEST, DuisError
from dccsim.duis.requestid import RequestId

SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
RA_NS = "http://www.dccinterface.co.uk/ResponseAndAlert"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
SCHEMA_VERSION = "5.4"

MAX_DOCUMENT_BYTES = 1 << 20
"""Largest DUIS document :func:`parse_safely` accepts by default (1 MiB; real ones are a few KB)."""

_XS_NS = "http://www.w3.org/2001/XMLSchema"


def _sr(local: str) -> str:
    return f"{{{SR_NS}}}{local}"


# --------------------------------------------------------------------------- safe parsing


def _parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers must not be used by two threads at once.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,  # keeps libxml2's depth and text-size limits
        remove_blank_text=False,  # whitespace is signed: keep it
        collect_ids=False,
    )


def parse_safely(data: bytes, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> etree._Element:
    """Parse untrusted XML and return its root element.

    Refuses, with :class:`DuisError` (malformed request): input over ``max_bytes``; any DOCTYPE
    or entity declaration (before parsing where the bytes show it, after parsing otherwise, and
    never resolving one); XML that is not well formed. Never touches the network or the file
    system.
    """
    if len(data) > max_bytes:
        raise DuisError(MALFORMED_REQUEST, f"document exceeds {max_bytes} bytes")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise DuisError(MALFORMED_REQUEST, "DOCTYPE and entity declarations are refused")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise DuisError(MALFORMED_REQUEST, f"not well-formed XML (line {exc.lineno})") from None
    except ValueError:  # e.g. an encoding lxml cannot handle
        raise DuisError(MALFORMED_REQUEST, "not well-formed XML") from None
    docinfo = root.getroottree().docinfo
    # Catches a DOCTYPE hidden from the byte scan by a non-ASCII-compatible encoding.
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise DuisError(MALFORMED_REQUEST, "DOCTYPE and entity declarations are refused")
    if next(root.iter(etree.Entity), None) is not None:
        raise DuisError(MALFORMED_REQUEST, "entity references are refused")
    return root


def to_bytes(element: etree._Element) -> bytes:
    """Serialise ``element`` as a UTF-8 document with an XML declaration, unchanged otherwise."""
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8")


def load_schema(xsd_dir: Path, version: str = SCHEMA_VERSION) -> etree.XMLSchema:
    """Load ``DUIS_Schema_V<version>.xsd`` from ``xsd_dir`` with the schemas it imports.

    The DUIS XSD imports ``MMC Schema V<version>.xsd`` by a name with spaces; the folder holds it
    with ``_`` for spaces, so imports are pointed at the files in ``xsd_dir``. Nothing is fetched
    from the network (the DTD the xmldsig schema names is not needed and never loaded).
    """
    folder = xsd_dir.resolve()
    parser = etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=False)
    main = folder / f"DUIS_Schema_V{version}.xsd"
    document = etree.parse(str(main), parser)
    for ref in document.getroot().iter(f"{{{_XS_NS}}}import", f"{{{_XS_NS}}}include"):
        location = ref.get("schemaLocation")
        if location:
            ref.set("schemaLocation", (folder / location.replace(" ", "_")).as_uri())
    return etree.XMLSchema(document)


def check_schema(schema: etree.XMLSchema, root: etree._Element) -> None:
    """Raise :class:`DuisError` (malformed request) unless ``root`` validates against ``schema``."""
    if not schema.validate(root):
        errors: list[etree._LogEntry] = list(schema.error_log)  # type: ignore[call-overload]
        where = f" (line {errors[-1].line})" if errors else ""
        raise DuisError(MALFORMED_REQUEST, f"fails the DUIS schema{where}")


# --------------------------------------------------------------------------- reading helpers


def _elements(parent: etree._Element) -> Iterator[etree._Element]:
    """Element children only (no comments or processing instructions)."""
    for child in parent:
        if isinstance(child.tag, str):
            yield child


def _local(element: etree._Element, what: str) -> str:
    """The local name of an element that must be in the DUIS namespace."""
    qname = etree.QName(element)
    if qname.namespace != SR_NS:
        raise DuisError(MALFORMED_REQUEST, f"{what}: {qname.localname} is not in DUIS's namespace")
    return qname.localname


def _text(element: etree._Element) -> str:
    # xs:token / xs:string fields: DUIS senders sometimes pretty-print around the value.
    return (element.text or "").strip()


class _Sequence:
    """Reads a parent's children in schema order: each optional or required in turn."""

    def __init__(self, parent: etree._Element, what: str) -> None:
        self._items = list(_elements(parent))
        self._position = 0
        self._what = what

    def optional(self, local: str) -> etree._Element | None:
        if self._position < len(self._items):
            item = self._items[self._position]
            if _local(item, self._what) == local:
                self._position += 1
                return item
        return None

    def required(self, local: str) -> etree._Element:
        item = self.optional(local)
        if item is None:
            raise DuisError(MALFORMED_REQUEST, f"{self._what}: {local} missing or out of order")
        return item

    def end(self) -> None:
        if self._position != len(self._items):
            extra = etree.QName(self._items[self._position]).localname
            raise DuisError(MALFORMED_REQUEST, f"{self._what}: unexpected {extra}")


def _base64(element: etree._Element, what: str) -> bytes:
    try:
        return base64.b64decode("".join(_text(element).split()), validate=True)
    except (binascii.Error, ValueError):
        raise DuisError(MALFORMED_REQUEST, f"{what} is not base64") from None


def _is_signature(element: etree._Element) -> bool:
    return element.tag == f"{{{DS_NS}}}Signature"


# --------------------------------------------------------------------------- Service Requests


@dataclass(frozen=True)
class ServiceRequest:
    """A parsed DUIS Request. ``body`` is the one element inside ``Body`` (a Service Request
    element or ``SignedPreCommand``); ``root`` is the whole document, signature included."""

    request_id: RequestId
    command_variant: int
    service_reference: str
    service_reference_variant: str
    body: etree._Element
    first_in_sequence: bool | None
    preceding_request_id: RequestId | None
    schema_version: str
    root: etree._Element

    @property
    def body_name(self) -> str:
        """The local name of the body element, e.g. ``ReadInstantaneousImportRegisters``."""
        return etree.QName(self.body).localname

    @property
    def signed_pre_command(self) -> bytes | None:
        """The GBCS payload of a ``SignedPreCommand`` body (CV 5, 6, 7), else None."""
        if self.body_name != "SignedPreCommand":
            return None
        payload = self.body.find(_sr("GBCSPayload"))
        if payload is None:
            raise DuisError(MALFORMED_REQUEST, "SignedPreCommand has no GBCSPayload")
        return _base64(payload, "SignedPreCommand GBCSPayload")


def _boolean(element: etree._Element, what: str) -> bool:
    value = _text(element)
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise DuisError(MALFORMED_REQUEST, f"{what} is not an xs:boolean")


def parse_service_request(data: bytes) -> ServiceRequest:
    """Parse a DUIS Request document (safely, see :func:`parse_safely`) into a ServiceRequest.

    Checks the structure this module reads (root, header order, one body element, an optional
    trailing signature); full schema validation is :func:`check_schema`'s job and signature
    checking is :mod:`dccsim.duis.xmldsig`'s. Raises :class:`DuisError` on any failure.
    """
    root = parse_safely(data)
    if root.tag != _sr("Request"):
        raise DuisError(MALFORMED_REQUEST, "root element is not a DUIS Request")
    schema_version = root.get("schemaVersion")
    if not schema_version:
        raise DuisError(MALFORMED_REQUEST, "Request has no schemaVersion")

    top = list(_elements(root))
    if top and _is_signature(top[-1]):
        top = top[:-1]
    if len(top) != 2 or [_local(e, "Request") for e in top] != ["Header", "Body"]:
        raise DuisError(MALFORMED_REQUEST, "Request is not Header, Body, optional Signature")
    header, body = top

    fields = _Sequence(header, "Header")
    request_id = RequestId.parse(_text(fields.required("RequestID")))
    first = fields.optional("FirstInSequence")
    preceding = fields.optional("PrecedingServiceRequestID")
    command_variant_text = _text(fields.required("CommandVariant"))
    service_reference = _text(fields.required("ServiceReference"))
    service_reference_variant = _text(fields.required("ServiceReferenceVariant"))
    fields.end()

    if not (len(command_variant_text) == 1 and command_variant_text in "12345678"):
        raise DuisError(MALFORMED_REQUEST, "CommandVariant is not 1 to 8")
    if not service_reference or not service_reference_variant:
        raise DuisError(MALFORMED_REQUEST, "ServiceReference or its variant is empty")

    content = list(_elements(body))
    if len(content) != 1:
        raise DuisError(MALFORMED_REQUEST, "Body must hold exactly one element")
    _local(content[0], "Body")

    return ServiceRequest(
        request_id=request_id,
        command_variant=int(command_variant_text),
        service_reference=service_reference,
        service_reference_variant=service_reference_variant,
        body=content[0],
        first_in_sequence=None if first is None else _boolean(first, "FirstInSequence"),
        preceding_request_id=None if preceding is None else RequestId.parse(_text(preceding)),
        schema_version=schema_version,
        root=root,
    )


def _sub(parent: etree._Element, local: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, _sr(local))
    if text is not None:
        element.text = text
    return element


def _body_element(body_xml: bytes) -> etree._Element:
    # Wrapping lets callers write <sr:X/> without declaring the prefix themselves.
    wrapped = b'<w xmlns:sr="' + SR_NS.encode() + b'">' + body_xml + b"</w>"
    content = list(_elements(parse_safely(wrapped)))
    if len(content) != 1:
        raise ValueError("body_xml must be exactly one element")
    return content[0]


def build_service_request(
    *,
    request_id: RequestId,
    command_variant: int,
    service_reference: str,
    service_reference_variant: str,
    body_xml: bytes,
    first_in_sequence: bool | None = None,
    preceding_request_id: RequestId | None = None,
    schema_version: str = SCHEMA_VERSION,
) -> etree._Element:
    """An unsigned DUIS Request (for tests and load generators); sign it with xmldsig.sign.

    ``body_xml`` is the one Service Request element, e.g. ``b"<sr:ClearEventLog/>"`` (the ``sr``
    prefix is predeclared), or ``<sr:SignedPreCommand>`` for CV 5 to 7.
    """
    if not 1 <= command_variant <= 8:
        raise ValueError("CommandVariant is 1 to 8")
    root = etree.Element(_sr("Request"), nsmap={"sr": SR_NS})
    root.set("schemaVersion", schema_version)
    header = _sub(root, "Header")
    _sub(header, "RequestID", str(request_id))
    if first_in_sequence is not None:
        _sub(header, "FirstInSequence", "true" if first_in_sequence else "false")
    if preceding_request_id is not None:
        _sub(header, "PrecedingServiceRequestID", str(preceding_request_id))
    _sub(header, "CommandVariant", str(command_variant))
    _sub(header, "ServiceReference", service_reference)
    _sub(header, "ServiceReferenceVariant", service_reference_variant)
    _sub(root, "Body").append(_body_element(body_xml))
    return root


# --------------------------------------------------------------------------- Responses


@dataclass(frozen=True)
class PreCommand:
    """The Pre-Command a CV 4 (Transform) request is answered with, for the User to sign."""

    gbcs_version: str
    gbcs_payload: bytes


def format_datetime(value: dt.datetime) -> str:
    """An aware datetime as DUIS writes it: UTC, milliseconds, ``Z`` (2022-08-17T15:45:42.790Z)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("ResponseDateTime needs a timezone-aware datetime")
    utc = value.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{utc.microsecond // 1000:03d}Z"


def _id_text(value: RequestId | str) -> str:
    return str(value)


def build_response(
    *,
    request_id: RequestId | str | None,
    response_id: RequestId | str | None,
    response_code: str,
    response_datetime: dt.datetime,
    service_reference: str | None = None,
    service_reference_variant: str | None = None,
    gbcs_payload: bytes | None = None,
    pre_command: PreCommand | None = None,
    content: etree._Element | None = None,
) -> etree._Element:
    """An unsigned DUIS Response with a ``ResponseMessage`` body, valid against the 5.4 XSD.

    Header: RequestID?, ResponseID?, ResponseCode, ResponseDateTime. Body: ResponseMessage with
    ServiceReference, ServiceReferenceVariant and at most one of ``gbcs_payload`` (written as
    base64 GBCSPayload), ``pre_command`` or ``content`` (any other ResponseMessage element, e.g.
    :func:`dsp_inventory`). The schema requires both service reference fields, so leaving either
    out raises ValueError.
    """
    if service_reference is None or service_reference_variant is None:
        raise ValueError("a DUIS ResponseMessage needs ServiceReference and its variant")
    if sum(x is not None for x in (gbcs_payload, pre_command, content)) > 1:
        raise ValueError("a ResponseMessage carries one of GBCSPayload, PreCommand or content")
    if not response_code:
        raise ValueError("ResponseCode is required")
    root = etree.Element(_sr("Response"), nsmap={"sr": SR_NS, "ra": RA_NS})
    root.set("schemaVersion", SCHEMA_VERSION)
    header = _sub(root, "Header")
    if request_id is not None:
        _sub(header, "RequestID", _id_text(request_id))
    if response_id is not None:
        _sub(header, "ResponseID", _id_text(response_id))
    _sub(header, "ResponseCode", response_code)
    _sub(header, "ResponseDateTime", format_datetime(response_datetime))
    message = _sub(_sub(root, "Body"), "ResponseMessage")
    _sub(message, "ServiceReference", service_reference)
    _sub(message, "ServiceReferenceVariant", service_reference_variant)
    if gbcs_payload is not None:
        _sub(message, "GBCSPayload", base64.b64encode(gbcs_payload).decode("ascii"))
    if pre_command is not None:
        element = _sub(message, "PreCommand")
        _sub(element, "GBCSVersion", pre_command.gbcs_version)
        _sub(element, "GBCSPayload", base64.b64encode(pre_command.gbcs_payload).decode("ascii"))
    if content is not None:
        message.append(content)
    return root


def local_command(gbcs_payload: bytes) -> etree._Element:
    """A ``LocalCommand`` element (the answer to CV 2, 3, 6, 7): the GBCS command, base64, that
    the User delivers to the Device itself, for :func:`build_response`'s ``content``."""
    element = etree.Element(_sr("LocalCommand"), nsmap={"sr": SR_NS})
    _sub(element, "GBCSPayload", base64.b64encode(gbcs_payload).decode("ascii"))
    return element


DSP_INVENTORY_MAX_DEVICES = 17
"""DSPInventory holds at most 17 Device elements: a longer 8.2 answer takes several Responses."""

# DSPInventory/Device children in schema order: (element, key in the device mapping).
_DEVICE_FIELDS: tuple[tuple[str, str], ...] = (
    ("DeviceID", "device_id"),
    ("DeviceType", "device_type"),
    ("DeviceStatus", "device_status"),
    ("DeviceManufacturer", "device_manufacturer"),
    ("DeviceModel", "device_model"),
    ("SMETSCHTSVersion", "smets_chts_version"),
    ("DeviceFirmwareVersion", "device_firmware_version"),
    ("DeviceFirmwareVersionStatus", "device_firmware_version_status"),
    ("CPLStatus", "cpl_status"),
    ("DateCommissioned", "date_commissioned"),
    ("ImportMPxN", "import_mpxn"),
    ("SecondaryImportMPAN", "secondary_import_mpan"),
    ("ExportMPAN", "export_mpan"),
    ("ESMEVariant", "esme_variant"),
    ("UPRN", "uprn"),
    ("PropertyFilter", ""),
    ("CSPRegion", "csp_region"),
    ("DeviceGBCSVersion", "device_gbcs_version"),
)
_REQUIRED_DEVICE_FIELDS = frozenset({"DeviceID", "DeviceType", "DeviceManufacturer", "DeviceModel"})


def dsp_inventory(devices: Sequence[Mapping[str, Any]]) -> etree._Element:
    """A ``DSPInventory`` element (8.2's answer) for up to 17 devices.

    Each device is a mapping with the DUIS ``Device`` fields in snake case (``device_id``,
    ``device_type``, ``device_status``, ``device_manufacturer``, ``device_model``, ...,
    ``postcode`` and ``address_identifier`` for the PropertyFilter); None values are left out.
    Device ID, type, manufacturer and model are required (ValueError otherwise).
    """
    if not 1 <= len(devices) <= DSP_INVENTORY_MAX_DEVICES:
        raise ValueError("a DSPInventory holds 1 to 17 devices")
    inventory = etree.Element(_sr("DSPInventory"), nsmap={"sr": SR_NS})
    for device in devices:
        element = _sub(inventory, "Device")
        for name, key in _DEVICE_FIELDS:
            if name == "PropertyFilter":
                postcode, address = device.get("postcode"), device.get("address_identifier")
                if postcode and address:
                    where = _sub(element, "PropertyFilter")
                    _sub(where, "PostCode", str(postcode))
                    _sub(where, "AddressIdentifier", str(address)[:30])
                continue
            value = device.get(key)
            if value is None or value == "":
                if name in _REQUIRED_DEVICE_FIELDS:
                    raise ValueError(f"a DSPInventory Device needs {name}")
                continue
            _sub(element, name, str(value))
    return inventory


def dsp_scheduled_message(gbcs_payload: bytes, schedule_id: int) -> etree._Element:
    """A ``DSPScheduledMessage`` element: the ResponseMessage content of the Response to a run
    of a DSP schedule (5.1), the device's GBCS response and the DSPScheduleID it ran for. Pass
    it to :func:`build_response` as ``content``."""
    if not 0 <= schedule_id <= 1_000_000_000_000:
        raise ValueError("a DSPScheduleID is 0..10^12")
    message = etree.Element(_sr("DSPScheduledMessage"), nsmap={"sr": SR_NS})
    _sub(message, "GBCSPayload", base64.b64encode(gbcs_payload).decode("ascii"))
    _sub(message, "DSPScheduleID", str(schedule_id))
    return message


def build_acknowledgement(
    *,
    request_id: RequestId | str | None,
    response_code: str,
    response_datetime: dt.datetime,
    service_reference: str,
    service_reference_variant: str,
) -> etree._Element:
    """The synchronous answer to a request: I99 (accepted for a Device), I0 without data, or an
    error code. Shaped like DCC Boxed's: RequestID, ResponseCode, ResponseDateTime, then a
    ResponseMessage with only the service reference fields. Unsigned (DUIS allows that for error
    acknowledgements; sign an I99 with xmldsig.sign if wanted).
    """
    return build_response(
        request_id=request_id,
        response_id=None,
        response_code=response_code,
        response_datetime=response_datetime,
        service_reference=service_reference,
        service_reference_variant=service_reference_variant,
    )


@dataclass(frozen=True)
class DuisResponse:
    """A parsed DUIS Response (an answer or an alert).

    ``gbcs_payload`` is the GBCSPayload of a ResponseMessage or DeviceAlertMessage; a CV 4
    answer's Pre-Command is in ``pre_command``; ``alert_code`` is a Device Alert's (hex) or a DCC
    Alert's code. Service reference fields are None for alerts that carry none.
    """

    request_id: RequestId | None
    response_id: RequestId | None
    response_code: str
    service_reference_variant: str | None
    gbcs_payload: bytes | None
    service_reference: str | None = None
    response_datetime: str | None = None
    pre_command: PreCommand | None = None
    alert_code: str | None = None
    body_name: str | None = None
    root: etree._Element | None = field(default=None, compare=False, repr=False)


def parse_response(data: bytes) -> DuisResponse:
    """Parse a DUIS Response document (safely) for the fields tests and test Users need.

    Raises :class:`DuisError` (malformed) when it is not a DUIS Response of the expected shape.
    """
    root = parse_safely(data)
    if root.tag != _sr("Response"):
        raise DuisError(MALFORMED_REQUEST, "root element is not a DUIS Response")
    top = [e for e in _elements(root) if not _is_signature(e)]
    if [_local(e, "Response") for e in top] != ["Header", "Body"]:
        raise DuisError(MALFORMED_REQUEST, "Response is not Header, Body, optional Signature")
    header, body = top

    fields = _Sequence(header, "Header")
    request_id = fields.optional("RequestID")
    response_id = fields.optional("ResponseID")
    response_code = _text(fields.required("ResponseCode"))
    response_datetime = _text(fields.required("ResponseDateTime"))
    fields.end()

    content = list(_elements(body))
    if len(content) != 1:
        raise DuisError(MALFORMED_REQUEST, "Response Body must hold exactly one element")
    message = content[0]
    body_name = _local(message, "Body")

    service_reference: str | None = None
    service_reference_variant: str | None = None
    gbcs_payload: bytes | None = None
    pre_command: PreCommand | None = None
    alert_code: str | None = None
    for child in _elements(message):
        name = _local(child, body_name)
        if name == "ServiceReference":
            service_reference = _text(child)
        elif name == "ServiceReferenceVariant":
            service_reference_variant = _text(child)
        elif name == "GBCSPayload":
            gbcs_payload = _base64(child, "GBCSPayload")
        elif name == "DSPScheduledMessage":  # a run of a DSP schedule: payload and schedule id
            payload = child.find(_sr("GBCSPayload"))
            if payload is not None:
                gbcs_payload = _base64(payload, "DSPScheduledMessage GBCSPayload")
        elif name in ("AlertCode", "DCCAlertCode"):
            alert_code = _text(child)
        elif name == "PreCommand":
            version = child.find(_sr("GBCSVersion"))
            payload = child.find(_sr("GBCSPayload"))
            if version is None or payload is None:
                raise DuisError(MALFORMED_REQUEST, "PreCommand lacks GBCSVersion or GBCSPayload")
            pre_command = PreCommand(_text(version), _base64(payload, "PreCommand GBCSPayload"))

    return DuisResponse(
        request_id=None if request_id is None else RequestId.parse(_text(request_id)),
        response_id=None if response_id is None else RequestId.parse(_text(response_id)),
        response_code=response_code,
        service_reference_variant=service_reference_variant,
        gbcs_payload=gbcs_payload,
        service_reference=service_reference,
        response_datetime=response_datetime,
        pre_command=pre_command,
        alert_code=alert_code,
        body_name=body_name,
        root=root,
    )


def build_device_alert(
    *,
    response_id: str,
    alert_code: int,
    gbcs_payload: bytes,
    response_datetime: dt.datetime,
) -> etree._Element:
    """An unsigned DUIS Device Alert: header ResponseID (device EUI : User EUI : the alert's
    GBCS originator counter), ResponseCode I0, ResponseDateTime; body DeviceAlertMessage with
    AlertCode (hex, e.g. ``8F35``) and the alert's GBCS payload. Valid against the 5.4 XSD."""
    if not 0 <= alert_code <= 0xFFFF:
        raise ValueError("a GBCS alert code is two bytes")
    root = etree.Element(_sr("Response"), nsmap={"sr": SR_NS, "ra": RA_NS})
    root.set("schemaVersion", SCHEMA_VERSION)
    header = _sub(root, "Header")
    _sub(header, "ResponseID", response_id)
    _sub(header, "ResponseCode", "I0")
    _sub(header, "ResponseDateTime", format_datetime(response_datetime))
    message = _sub(_sub(root, "Body"), "DeviceAlertMessage")
    _sub(message, "AlertCode", f"{alert_code:04X}")
    _sub(message, "GBCSPayload", base64.b64encode(gbcs_payload).decode("ascii"))
    return root


DCC_ALERT_QUARANTINED_REQUEST = "AD1"
"""The DCC Alert code for a Service Request quarantined by Anomaly Detection (the XSD's one
``AD`` code; its ``DCCAlert`` content is ``QuarantinedRequest``)."""

QUARANTINE_BREACHES = frozenset(
    {"ADUserThresholdBreach", "ADDCCThresholdBreach", "ADAttributeLimitsBreach"}
)


def quarantined_request(
    *, request_id: RequestId | str, event_ref: int, breach: str = "ADUserThresholdBreach"
) -> etree._Element:
    """A ``QuarantinedRequest`` DCCAlert content: which threshold was breached (``breach``, one of
    :data:`QUARANTINE_BREACHES`), the quarantined request's RequestID and the DCC's
    QuarantineEventRef (an integer of at most 20 digits, quoted when the request is released)."""
    if breach not in QUARANTINE_BREACHES:
        raise ValueError(f"{breach} is not a QuarantinedRequest breach")
    if not 0 <= event_ref < 10**20:
        raise ValueError("a QuarantineEventRef has at most 20 digits")
    element = etree.Element(_sr("QuarantinedRequest"), nsmap={"sr": SR_NS})
    detail = _sub(element, breach)
    _sub(detail, "RequestID", _id_text(request_id))
    _sub(detail, "QuarantineEventRef", str(event_ref))
    return element


def build_dcc_alert(
    *,
    response_id: str,
    alert_code: str,
    alert: etree._Element,
    response_datetime: dt.datetime,
    request_id: RequestId | str | None = None,
) -> etree._Element:
    """An unsigned DUIS DCC Alert: header RequestID? (when the alert is about one request),
    ResponseID (the DCC's EUI : the User's EUI : a counter), ResponseCode I0, ResponseDateTime;
    body DCCAlertMessage with DCCAlertCode (``AD1``, ``N1`` ...) and the ``DCCAlert`` content
    element (e.g. :func:`quarantined_request`). Valid against the 5.4 XSD."""
    if not alert_code:
        raise ValueError("DCCAlertCode is required")
    root = etree.Element(_sr("Response"), nsmap={"sr": SR_NS, "ra": RA_NS})
    root.set("schemaVersion", SCHEMA_VERSION)
    header = _sub(root, "Header")
    if request_id is not None:
        _sub(header, "RequestID", _id_text(request_id))
    _sub(header, "ResponseID", response_id)
    _sub(header, "ResponseCode", "I0")
    _sub(header, "ResponseDateTime", format_datetime(response_datetime))
    message = _sub(_sub(root, "Body"), "DCCAlertMessage")
    _sub(message, "DCCAlertCode", alert_code)
    _sub(message, "DCCAlert").append(alert)
    return root
