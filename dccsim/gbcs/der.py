"""ASN.1 DER payloads (CS02 credentials, CS03 join, CS06 firmware, CS08, GCS28 ...).

Two layers. :class:`Tlv` is a strict DER tree: single-byte tags, minimal lengths, so that
``Tlv.decode(b).encode() == b`` for every payload it accepts. Over it, an :class:`Asn1Field`
schema per use case and direction (:data:`ASN1_SCHEMAS`) names the parts: decode gives a dict
of fields, encode rebuilds the same bytes from that dict. Parts a schema does not name (for
example the X.509 certificates inside CS02) are ``any`` fields and stay DER bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.octets import OctetReader, encode_length

MAX_DEPTH = 32
CONSTRUCTED = 0x20
INTEGER, BIT_STRING, OCTET_STRING, NULL, ENUMERATED = 0x02, 0x03, 0x04, 0x05, 0x0A
GENERALIZED_TIME, SEQUENCE = 0x18, 0x30


@dataclass(frozen=True)
class Tlv:
    """One DER element: its identifier octet and either primitive ``content`` or children."""

    tag: int
    content: bytes = b""
    children: tuple[Tlv, ...] = ()
    # 0: minimal length; else the number of length octets a sender used in long form where
    # DER would not (RTDS devices write ``82 00 83``), kept so re-encoding is byte-identical
    length_size: int = 0

    @property
    def constructed(self) -> bool:
        return bool(self.tag & CONSTRUCTED)

    def value_bytes(self) -> bytes:
        if self.constructed:
            return b"".join(child.encode() for child in self.children)
        return self.content

    def encode(self) -> bytes:
        value = self.value_bytes()
        if self.length_size:
            length = bytes([0x80 | self.length_size]) + len(value).to_bytes(self.length_size, "big")
        else:
            length = encode_length(len(value))
        return bytes([self.tag]) + length + value

    def preorder(self) -> list[Tlv]:
        """This element and all below it, parents first."""
        out = [self]
        for child in self.children:
            out.extend(child.preorder())
        return out

    def with_length_sizes(self, sizes: list[int]) -> Tlv:
        """A copy whose elements, in pre-order, take ``sizes`` (consumed from the front)."""
        size = sizes.pop(0) if sizes else 0
        children = tuple(child.with_length_sizes(sizes) for child in self.children)
        return Tlv(self.tag, self.content, children, size)

    @classmethod
    def decode(cls, data: bytes) -> Tlv:
        """Exactly one DER element filling ``data``; :class:`GbcsError` otherwise."""
        reader = OctetReader(data)
        element = _read_tlv(reader, 0)
        if not reader.at_end():
            raise GbcsError(f"{reader.remaining()} trailing bytes after DER element")
        return element


def _read_tlv(reader: OctetReader, depth: int) -> Tlv:
    if depth > MAX_DEPTH:
        raise GbcsError("DER nesting too deep")
    tag = reader.byte("DER tag")
    if tag & 0x1F == 0x1F:
        raise GbcsError(f"multi-byte DER tag {tag:02x} not used by GBCS")
    first = reader.byte("DER length")
    length_size = 0
    if first < 0x80:
        length = first
    else:
        size = first & 0x7F
        if size == 0 or size > 3:
            raise GbcsError(f"bad DER length form {first:02x}")
        length = reader.uint(size, "DER length")
        if len(encode_length(length)) != 1 + size:
            length_size = size
    value = reader.take(length, "DER value")
    if not tag & CONSTRUCTED:
        return Tlv(tag, value, length_size=length_size)
    inner = OctetReader(value)
    children: list[Tlv] = []
    while not inner.at_end():
        children.append(_read_tlv(inner, depth + 1))
    return Tlv(tag, children=tuple(children), length_size=length_size)


def tlv_to_json(element: Tlv) -> Any:
    """A DER tree as ``{"tag": "30", "children": [...]}`` or ``{"tag": "02", "value": hex}``."""
    if element.constructed:
        return {"tag": f"{element.tag:02x}", "children": [tlv_to_json(c) for c in element.children]}
    return {"tag": f"{element.tag:02x}", "value": element.content.hex()}


Asn1Kind = Literal["integer", "octets", "bits", "null", "time", "sequence", "sequence-of", "any"]
Asn1Value = int | bytes | str | None | Mapping[str, Any] | list[Any]


@dataclass(frozen=True)
class Asn1Field:
    """A named part of a schema. ``tag`` is the identifier octet expected (context tags such
    as ``0xA2`` for implicit ones); ``optional`` parts are absent when the next tag differs."""

    name: str
    kind: Asn1Kind
    tag: int
    children: tuple[Asn1Field, ...] = ()
    optional: bool = False


def integer(name: str, tag: int = INTEGER, optional: bool = False) -> Asn1Field:
    return Asn1Field(name, "integer", tag, optional=optional)


def octets(name: str, tag: int = OCTET_STRING, optional: bool = False) -> Asn1Field:
    return Asn1Field(name, "octets", tag, optional=optional)


def bits(name: str, tag: int = BIT_STRING) -> Asn1Field:
    return Asn1Field(name, "bits", tag)


def null(name: str) -> Asn1Field:
    return Asn1Field(name, "null", NULL)


def time(name: str, optional: bool = False) -> Asn1Field:
    return Asn1Field(name, "time", GENERALIZED_TIME, optional=optional)


def sequence(
    name: str, *children: Asn1Field, tag: int = SEQUENCE, optional: bool = False
) -> Asn1Field:
    return Asn1Field(name, "sequence", tag, children, optional)


def sequence_of(
    name: str, item: Asn1Field, tag: int = SEQUENCE, optional: bool = False
) -> Asn1Field:
    return Asn1Field(name, "sequence-of", tag, (item,), optional)


def any_der(name: str, tag: int, optional: bool = False) -> Asn1Field:
    return Asn1Field(name, "any", tag, optional=optional)


def _int_from(content: bytes) -> int:
    if not content:
        raise GbcsError("empty DER INTEGER")
    if len(content) > 1 and (
        (content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise GbcsError("non-minimal DER INTEGER")
    return int.from_bytes(content, "big", signed=True)


def _int_bytes(value: int) -> bytes:
    size = max(1, (value + (value < 0)).bit_length() // 8 + 1)
    return value.to_bytes(size, "big", signed=True)


def _decode_field(schema: Asn1Field, element: Tlv) -> Asn1Value:
    if element.tag != schema.tag:
        raise GbcsError(f"{schema.name}: expected tag {schema.tag:02x}, got {element.tag:02x}")
    if schema.kind == "integer":
        return _int_from(element.content)
    if schema.kind in ("octets", "bits"):
        return element.content
    if schema.kind == "null":
        if element.content:
            raise GbcsError(f"{schema.name}: NULL with content")
        return None
    if schema.kind == "time":
        return element.content.decode("ascii", errors="strict")
    if schema.kind == "any":
        return element.encode()
    if schema.kind == "sequence-of":
        return [_decode_field(schema.children[0], child) for child in element.children]
    out: dict[str, Any] = {}
    children = list(element.children)
    for part in schema.children:
        if children and children[0].tag == part.tag:
            out[part.name] = _decode_field(part, children.pop(0))
        elif not part.optional:
            raise GbcsError(f"{schema.name}: {part.name} missing")
    if children:
        raise GbcsError(f"{schema.name}: {len(children)} parts the schema does not name")
    return out


def _encode_field(schema: Asn1Field, value: Any) -> Tlv:
    if schema.kind == "integer":
        if not isinstance(value, int):
            raise GbcsError(f"{schema.name}: an int is needed")
        return Tlv(schema.tag, _int_bytes(value))
    if schema.kind in ("octets", "bits"):
        if not isinstance(value, bytes):
            raise GbcsError(f"{schema.name}: bytes are needed")
        return Tlv(schema.tag, value)
    if schema.kind == "null":
        return Tlv(schema.tag)
    if schema.kind == "time":
        return Tlv(schema.tag, str(value).encode("ascii"))
    if schema.kind == "any":
        element = Tlv.decode(value)
        if element.tag != schema.tag:
            raise GbcsError(f"{schema.name}: expected tag {schema.tag:02x}")
        return element
    if schema.kind == "sequence-of":
        return Tlv(schema.tag, children=tuple(_encode_field(schema.children[0], v) for v in value))
    if not isinstance(value, Mapping):
        raise GbcsError(f"{schema.name}: a mapping of parts is needed")
    parts = []
    for part in schema.children:
        if part.name in value:
            parts.append(_encode_field(part, value[part.name]))
        elif not part.optional:
            raise GbcsError(f"{schema.name}: {part.name} missing")
    return Tlv(schema.tag, children=tuple(parts))


def decode_with(schema: Asn1Field, data: bytes) -> Asn1Value:
    """``data`` (one DER element) as the fields ``schema`` names; :class:`GbcsError` when it
    does not have that shape."""
    return _decode_field(schema, Tlv.decode(data))


def encode_with(schema: Asn1Field, value: Asn1Value) -> bytes:
    """The inverse of :func:`decode_with`."""
    return _encode_field(schema, value).encode()


# ---- the use cases' schemas (names after GBCS where known, else after what the part holds)

CERTIFICATE = any_der("certificate", SEQUENCE)
_TA_CELL = sequence("trust_anchor_cell", integer("remote_party_role"), bits("key_usage"))
_SEQ_NUMBER = sequence("seq_number", integer("remote_party_role"), integer("value"))
_CREDENTIALS_CONTROL = sequence(
    "authorising_remote_party_control",
    integer("authorising_remote_party_role"),
    integer("authorising_ta_cell_identifier", tag=0x81, optional=True),
    sequence(
        "ta_cell_identifier",
        integer("remote_party_role"),
        bits("key_usage"),
        tag=0xA2,
        optional=True,
    ),
    integer("originator_counter", tag=0x83, optional=True),
    integer("floor_seq_number", tag=0x84, optional=True),
    any_der("new_remote_party_seq_numbers", 0xA5, optional=True),
    any_der("new_seq_numbers", 0xA6, optional=True),
)
_CS02B_COMMAND = sequence(
    "update_security_credentials",
    _CREDENTIALS_CONTROL,
    any_der("replacements", SEQUENCE),
    sequence_of("certification_path_certificates", CERTIFICATE, optional=True),
    time("execution_date_time", optional=True),
)
_CS02B_REPORT = sequence(
    "credentials_replacement_report",
    integer("originator_counter"),
    integer("authorising_remote_party_role"),
    any_der("seq_numbers", SEQUENCE),
    sequence_of("replacement_results", any_der("result", SEQUENCE)),
)
_CS02B_RESPONSE = sequence(
    "update_security_credentials_response",
    null("future_dated_or_null"),
    _CS02B_REPORT,
    optional=False,
)
_CS06_OUTCOME = sequence("activate_firmware_outcome", integer("result"), octets("firmware_version"))
_CS02_FUTURE_DATED_ALERT = sequence(
    "future_dated_alert",
    integer("alert_code"),
    time("execution_date_time"),
    _CS02B_REPORT,
)
_FUTURE_DATED_ALERT = sequence(
    "future_dated_alert",
    integer("alert_code"),
    time("execution_date_time"),
    integer("originator_counter"),
    any_der("outcome", SEQUENCE),
)

# (message code, CRA flag) -> schema. CRA 3 alerts are looked up with the message code too.
ASN1_SCHEMAS: dict[tuple[int, int], Asn1Field] = {
    # CS06 Activate Firmware (11.3)
    (0x0012, 1): sequence(
        "activate_firmware",
        octets("manufacturer_image_hash"),
        integer("originator_counter"),
        time("execution_date_time", optional=True),
    ),
    (0x0012, 2): _CS06_OUTCOME,
    (0x00CA, 3): _FUTURE_DATED_ALERT,
    # CS08 Read Device Firmware Version (11.2)
    (0x0129, 1): null("read_firmware_version"),
    (0x0129, 2): sequence(
        "firmware_version_response", octets("firmware_version"), integer("result")
    ),
    # CS07 Read Device Join Details (8.9)
    (0x0013, 1): null("read_device_join_details"),
    # GCS28 Set Time (6.11, 8.1.1)
    (0x007F, 1): sequence("set_time", time("validity_start"), time("validity_end")),
    (0x007F, 2): sequence("set_time_response", time("date_time"), integer("result")),
    # CS02c Issue Security Credentials (6.17) and CS02d (6.15.2)
    (0x000A, 1): sequence("issue_security_credentials", bits("key_usage")),
    (0x000B, 1): CERTIFICATE,
    # CS04AC (8.8.2): the other device's entity identifier
    (0x000F, 1): octets("other_device_entity_identifier"),
    # CS02a Provide Security Credential Details (6.24.1)
    (0x0008, 1): sequence("provide_security_credential_details", _TA_CELL, _SEQ_NUMBER),
    # GCS59 Restore GPF Device Log (8.12.2)
    (0x008C, 1): sequence(
        "restore_gpf_device_log",
        sequence_of(
            "devices",
            sequence("device", octets("device_id"), integer("device_type")),
        ),
    ),
    # GCS62 Backup GPF Device Log alert
    (0x00B2, 3): sequence(
        "gpf_device_log_backup",
        integer("alert_code"),
        time("date_time"),
        sequence_of("devices", sequence("device", octets("device_id"), integer("device_type"))),
    ),
    # CCS08 alert
    (0x0128, 3): sequence(
        "ccs08_alert",
        integer("alert_code"),
        time("date_time"),
        octets("device_id"),
        octets("firmware_version"),
        integer("result"),
    ),
    # 8F66/8F67 for CS02b and CS02g
    (0x00CB, 3): _CS02_FUTURE_DATED_ALERT,
    (0x0124, 3): _CS02_FUTURE_DATED_ALERT,
    (0x000A, 2): any_der("certificate_signing_request", SEQUENCE),
    (0x008C, 2): sequence(
        "restore_gpf_device_log_response",
        sequence_of(
            "results",
            sequence(
                "result",
                sequence("device", octets("device_id"), integer("device_type")),
                integer("result"),
            ),
        ),
    ),
    (0x0013, 2): sequence(
        "device_join_details",
        integer("result"),
        sequence_of("devices", any_der("device", SEQUENCE), optional=True),
    ),
    (0x0008, 2): sequence_of("credential_details", any_der("details", SEQUENCE)),
}
# CS03 Join (8.7.1, 8.7.2): the same command layout for every variant
for _code in (0x000D, 0x000E, 0x00AB, 0x00AF):
    ASN1_SCHEMAS[(_code, 1)] = sequence(
        "join_device",
        integer("join_method_and_role"),
        octets("other_device_entity_identifier"),
        integer("other_device_type"),
        any_der("other_device_certificate", SEQUENCE, optional=True),
    )
# CS02b / CS02g Update Security Credentials (6.15.1, 6.23, 8.5, recovery and contingency)
for _code in (0x0102, 0x0103, 0x0104, 0x0106, 0x0107, 0x0108, 0x0109, 0x0126):
    ASN1_SCHEMAS[(_code, 1)] = _CS02B_COMMAND
    ASN1_SCHEMAS[(_code, 2)] = _CS02B_RESPONSE

# Responses that are one primitive (CS03's INTEGER result, a future-dated NULL acknowledgement)
_PRIMITIVE_RESPONSES = {
    INTEGER: integer("result"),
    NULL: null("acknowledgement"),
    OCTET_STRING: octets("value"),
}
_CONSTRUCTED_NULL_ACK = sequence("acknowledgement", null("future_dated_or_null"))


def schema_for(message_code: int, cra_flag: int, payload: bytes) -> Asn1Field | None:
    """The schema that names ``payload``'s parts, or None (the DER tree is still decoded)."""
    if payload[:1] and payload[0] != SEQUENCE and cra_flag == 2:
        return _PRIMITIVE_RESPONSES.get(payload[0])
    if payload[:1] and payload[0] == NULL:
        return null("acknowledgement")
    if payload == b"\x30\x02\x05\x00":
        return _CONSTRUCTED_NULL_ACK
    return ASN1_SCHEMAS.get((message_code, cra_flag))


@dataclass(frozen=True)
class Asn1Payload:
    """A decoded DER payload: its tree, and the named fields when a schema matched."""

    tree: Tlv
    schema: Asn1Field | None
    fields: Asn1Value

    def encode(self) -> bytes:
        """The payload again: from the named fields when a schema matched (with the sender's
        length forms), else from the tree."""
        if self.schema is None:
            return self.tree.encode()
        rebuilt = _encode_field(self.schema, self.fields)
        sizes = [element.length_size for element in self.tree.preorder()]
        return rebuilt.with_length_sizes(sizes).encode()


def decode_asn1(payload: bytes, *, message_code: int, cra_flag: int) -> Asn1Payload:
    """Decode a DER payload; :class:`GbcsError` when it is not one whole DER element. When the
    use case's schema does not fit (an unexpected shape) only the tree is given."""
    tree = Tlv.decode(payload)
    schema = schema_for(message_code, cra_flag, payload)
    if schema is not None:
        try:
            return Asn1Payload(tree, schema, _decode_field(schema, tree))
        except GbcsError:
            pass
    return Asn1Payload(tree, None, None)


def _json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


def asn1_to_json(payload: Asn1Payload) -> dict[str, Any]:
    """Named fields when a schema matched, else the DER tree."""
    if payload.schema is None:
        return {"schema": None, "tree": tlv_to_json(payload.tree)}
    return {"schema": payload.schema.name, "fields": _json(payload.fields)}
