"""DLMS A-XDR data and the GBCS DLMS APDUs: Access Request, Access Response, Data Notification.

Decoding is exact and encoding byte-identical: every value keeps its DLMS type, so a decoded
APDU re-encodes to the bytes it came from. Every malformed input raises :class:`GbcsError`.

A-XDR layouts (DLMS Green Book, as GBCS uses them)::

    Access-Request   D9 <long-invoke-id-and-priority:4> <date-time: octet-string>
                     <SEQUENCE OF Access-Request-Specification> <SEQUENCE OF Data>
    Access-Response  DA <long-invoke-id-and-priority:4> <date-time: octet-string>
                     <OPTIONAL SEQUENCE OF Access-Request-Specification (00 | 01 ...)>
                     <SEQUENCE OF Data> <SEQUENCE OF Access-Response-Specification>
    Data-Notification 0F <long-invoke-id-and-priority:4> <date-time: octet-string> <Data>
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum

from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.octets import OctetReader, encode_length

MAX_NESTING = 32  # deeper than any GBCS payload; bounds recursion on hostile input
_COMPACT_BUDGET_BASE = 1024


class DataType(IntEnum):
    """DLMS ``Data`` CHOICE tags."""

    NULL = 0x00
    ARRAY = 0x01
    STRUCTURE = 0x02
    BOOLEAN = 0x03
    BIT_STRING = 0x04
    DOUBLE_LONG = 0x05
    DOUBLE_LONG_UNSIGNED = 0x06
    OCTET_STRING = 0x09
    VISIBLE_STRING = 0x0A
    UTF8_STRING = 0x0C
    BCD = 0x0D
    INTEGER = 0x0F
    LONG = 0x10
    UNSIGNED = 0x11
    LONG_UNSIGNED = 0x12
    COMPACT_ARRAY = 0x13
    LONG64 = 0x14
    LONG64_UNSIGNED = 0x15
    ENUM = 0x16
    FLOAT32 = 0x17
    FLOAT64 = 0x18
    DATE_TIME = 0x19
    DATE = 0x1A
    TIME = 0x1B
    DONT_CARE = 0xFF


# integer types: (size in bytes, signed)
_INTEGERS: dict[DataType, tuple[int, bool]] = {
    DataType.BCD: (1, True),
    DataType.INTEGER: (1, True),
    DataType.LONG: (2, True),
    DataType.UNSIGNED: (1, False),
    DataType.LONG_UNSIGNED: (2, False),
    DataType.DOUBLE_LONG: (4, True),
    DataType.DOUBLE_LONG_UNSIGNED: (4, False),
    DataType.LONG64: (8, True),
    DataType.LONG64_UNSIGNED: (8, False),
    DataType.ENUM: (1, False),
}
# fixed-size octet values, kept as raw bytes (floats too, so NaN payloads survive)
_FIXED_OCTETS: dict[DataType, int] = {
    DataType.FLOAT32: 4,
    DataType.FLOAT64: 8,
    DataType.DATE_TIME: 12,
    DataType.DATE: 5,
    DataType.TIME: 4,
}
_SIZED_OCTETS = (DataType.OCTET_STRING, DataType.VISIBLE_STRING, DataType.UTF8_STRING)
_CONTAINERS = (DataType.ARRAY, DataType.STRUCTURE)
_EMPTY = (DataType.NULL, DataType.DONT_CARE)


@dataclass(frozen=True)
class BitString:
    """A DLMS bit-string: ``bits`` significant bits, most significant first, in ``octets``."""

    bits: int
    octets: bytes

    def __post_init__(self) -> None:
        if len(self.octets) != (self.bits + 7) // 8:
            raise ValueError("bit-string octets do not match its bit count")


@dataclass(frozen=True)
class CompactArray:
    """A DLMS compact-array: its type description and packed contents, both kept as raw bytes.

    Use :meth:`elements` to read the contents as :class:`Data` values.
    """

    type_description: bytes
    contents: bytes

    def elements(self) -> tuple[Data, ...]:
        """The array's elements, each decoded against the type description."""
        description = _read_type_description(OctetReader(self.type_description), 0)
        reader = OctetReader(self.contents)
        # every value takes at least one byte unless its type is null or an empty container:
        # a budget stops such descriptions from expanding without bound
        budget = [_COMPACT_BUDGET_BASE + 8 * len(self.contents)]
        out: list[Data] = []
        while not reader.at_end():
            start = reader.pos
            out.append(_read_described(reader, description, 0, budget))
            if reader.pos == start:
                raise GbcsError("compact-array element occupies no bytes")
        return tuple(out)


# A parsed TypeDescription: a simple type, (ARRAY, count, element) or (STRUCTURE, members).
TypeDescription = (
    DataType
    | tuple[DataType, int, "TypeDescription"]
    | tuple[DataType, tuple["TypeDescription", ...]]
)

DataValue = None | bool | int | bytes | BitString | CompactArray | tuple["Data", ...]


@dataclass(frozen=True)
class Data:
    """One DLMS ``Data`` value and its type.

    ``value`` is ``None`` (null, dont-care), ``bool`` (boolean), ``int`` (integer types and
    enum), ``bytes`` (octet-, visible- and utf8-string, date-time, date, time, floats as raw
    IEEE 754), :class:`BitString`, or a tuple of :class:`Data` (array, structure).
    """

    type: DataType
    value: DataValue = None

    def __post_init__(self) -> None:
        t, v = self.type, self.value
        if t in _EMPTY:
            ok = v is None
        elif t in _CONTAINERS:
            ok = isinstance(v, tuple) and all(isinstance(item, Data) for item in v)
        elif t == DataType.BOOLEAN:
            ok = isinstance(v, bool)
        elif t == DataType.BIT_STRING:
            ok = isinstance(v, BitString)
        elif t == DataType.COMPACT_ARRAY:
            ok = isinstance(v, CompactArray)
        elif t in _INTEGERS:
            size, signed = _INTEGERS[t]
            bits = 8 * size
            low, high = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
            ok = isinstance(v, int) and not isinstance(v, bool) and low <= v < high
        elif t in _FIXED_OCTETS:
            ok = isinstance(v, bytes) and len(v) == _FIXED_OCTETS[t]
        else:
            ok = isinstance(v, bytes)
        if not ok:
            raise ValueError(f"{v!r} is not a valid {t.name}")

    @property
    def items(self) -> tuple[Data, ...]:
        """The members of an array or structure."""
        if not isinstance(self.value, tuple):
            raise GbcsError(f"expected an array or structure, got {self.type.name}")
        return self.value

    @property
    def integer(self) -> int:
        """The value of an integer-typed or enum item."""
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise GbcsError(f"expected an integer, got {self.type.name}")
        return self.value

    @property
    def octets(self) -> bytes:
        """The value of an octet-string-like item."""
        if not isinstance(self.value, bytes):
            raise GbcsError(f"expected an octet string, got {self.type.name}")
        return self.value

    def encode(self) -> bytes:
        out = bytearray()
        _encode_data(self, out)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Data:
        """Decode exactly one Data value filling ``data``."""
        reader = OctetReader(data)
        value = read_data(reader)
        if not reader.at_end():
            raise GbcsError(f"{reader.remaining()} trailing bytes after DLMS data")
        return value


# Constructors that read like the DLMS type names, for use-case tables.
def null() -> Data:
    return Data(DataType.NULL)


def structure(*items: Data) -> Data:
    return Data(DataType.STRUCTURE, tuple(items))


def array(*items: Data) -> Data:
    return Data(DataType.ARRAY, tuple(items))


def octet_string(value: bytes) -> Data:
    return Data(DataType.OCTET_STRING, value)


def visible_string(value: bytes) -> Data:
    return Data(DataType.VISIBLE_STRING, value)


def boolean(value: bool) -> Data:
    return Data(DataType.BOOLEAN, value)


def integer(value: int) -> Data:
    return Data(DataType.INTEGER, value)


def unsigned(value: int) -> Data:
    return Data(DataType.UNSIGNED, value)


def long_unsigned(value: int) -> Data:
    return Data(DataType.LONG_UNSIGNED, value)


def double_long_unsigned(value: int) -> Data:
    return Data(DataType.DOUBLE_LONG_UNSIGNED, value)


def long(value: int) -> Data:
    return Data(DataType.LONG, value)


def double_long(value: int) -> Data:
    return Data(DataType.DOUBLE_LONG, value)


def bit_string(bits: int, octets: bytes) -> Data:
    return Data(DataType.BIT_STRING, BitString(bits, octets))


def enum(value: int) -> Data:
    return Data(DataType.ENUM, value)


def date_time(value: bytes) -> Data:
    return Data(DataType.DATE_TIME, value)


def _encode_data(item: Data, out: bytearray) -> None:
    t, v = item.type, item.value
    out.append(t)
    if t in _EMPTY:
        return
    if isinstance(v, tuple):
        out += encode_length(len(v))
        for member in v:
            _encode_data(member, out)
    elif isinstance(v, bool):
        out.append(0xFF if v else 0x00)
    elif isinstance(v, BitString):
        out += encode_length(v.bits) + v.octets
    elif isinstance(v, CompactArray):
        out += v.type_description + encode_length(len(v.contents)) + v.contents
    elif isinstance(v, int):
        size, signed = _INTEGERS[t]
        out += v.to_bytes(size, "big", signed=signed)
    elif isinstance(v, bytes):
        if t in _SIZED_OCTETS:
            out += encode_length(len(v))
        out += v


def read_data(reader: OctetReader, depth: int = 0) -> Data:
    """Read one Data value from ``reader``."""
    if depth > MAX_NESTING:
        raise GbcsError("DLMS data nested too deeply")
    tag = reader.byte("DLMS data tag")
    try:
        t = DataType(tag)
    except ValueError:
        raise GbcsError(f"unsupported DLMS data tag {tag:02x}") from None
    if t in _CONTAINERS:
        count = reader.length(f"{t.name.lower()} count")
        return Data(t, tuple(read_data(reader, depth + 1) for _ in range(count)))
    if t == DataType.COMPACT_ARRAY:
        start = reader.pos
        _read_type_description(reader, depth + 1)
        description = reader.slice(start, reader.pos)
        return Data(t, CompactArray(description, reader.sized("compact-array contents")))
    return _read_untagged(reader, t)


def _read_untagged(reader: OctetReader, t: DataType) -> Data:
    """A simple value of known type ``t``, as it appears after its tag."""
    if t in _EMPTY:
        return Data(t)
    if t == DataType.BOOLEAN:
        raw = reader.byte("boolean")
        if raw not in (0x00, 0xFF):
            raise GbcsError(f"non-canonical boolean {raw:02x}")
        return Data(t, raw == 0xFF)
    if t == DataType.BIT_STRING:
        bits = reader.length("bit-string length")
        return Data(t, BitString(bits, reader.take((bits + 7) // 8, "bit-string")))
    if t in _INTEGERS:
        size, signed = _INTEGERS[t]
        raw_int = reader.take(size, t.name.lower())
        return Data(t, int.from_bytes(raw_int, "big", signed=signed))
    if t in _FIXED_OCTETS:
        return Data(t, reader.take(_FIXED_OCTETS[t], t.name.lower()))
    if t in _SIZED_OCTETS:
        return Data(t, reader.sized(t.name.lower()))
    raise GbcsError(f"{t.name} cannot appear here")


def _read_type_description(reader: OctetReader, depth: int) -> TypeDescription:
    if depth > MAX_NESTING:
        raise GbcsError("compact-array type description nested too deeply")
    tag = reader.byte("type description tag")
    try:
        t = DataType(tag)
    except ValueError:
        raise GbcsError(f"unsupported type description tag {tag:02x}") from None
    if t == DataType.ARRAY:
        count = reader.uint(2, "type description element count")
        return (t, count, _read_type_description(reader, depth + 1))
    if t == DataType.STRUCTURE:
        members = reader.length("type description member count")
        return (t, tuple(_read_type_description(reader, depth + 1) for _ in range(members)))
    if t in (DataType.COMPACT_ARRAY, DataType.DONT_CARE):
        raise GbcsError(f"{t.name} in a type description")
    return t


def _read_described(
    reader: OctetReader, description: TypeDescription, depth: int, budget: list[int]
) -> Data:
    if depth > MAX_NESTING:
        raise GbcsError("compact-array contents nested too deeply")
    budget[0] -= 1
    if budget[0] < 0:
        raise GbcsError("compact-array type description expands beyond its contents")
    if isinstance(description, DataType):
        return _read_untagged(reader, description)
    if len(description) == 3:
        _, count, element = description
        return array(*(_read_described(reader, element, depth + 1, budget) for _ in range(count)))
    _, members = description
    return structure(*(_read_described(reader, m, depth + 1, budget) for m in members))


class AccessKind(IntEnum):
    """Access-Request-Specification CHOICE tags (and, for 1–3, Access-Response-Specification)."""

    GET = 1
    SET = 2
    ACTION = 3
    GET_WITH_SELECTION = 4
    SET_WITH_SELECTION = 5


_WITH_SELECTION = (AccessKind.GET_WITH_SELECTION, AccessKind.SET_WITH_SELECTION)


@dataclass(frozen=True)
class SelectiveAccess:
    """Selective-Access-Descriptor: an access selector and its parameters."""

    selector: int
    parameters: Data


@dataclass(frozen=True)
class RequestSpec:
    """One Access-Request-Specification: what to get, set or act on.

    ``member_id`` is the attribute id (get/set) or method id (action), a DLMS Integer8.
    """

    kind: AccessKind
    class_id: int
    instance_id: bytes
    member_id: int
    selection: SelectiveAccess | None = None

    def __post_init__(self) -> None:
        if len(self.instance_id) != 6:
            raise ValueError("a COSEM instance id (OBIS code) is 6 bytes")
        if (self.selection is not None) != (self.kind in _WITH_SELECTION):
            raise ValueError("selective access goes with the *_WITH_SELECTION kinds only")

    def encode(self) -> bytes:
        out = (
            bytes([self.kind])
            + self.class_id.to_bytes(2, "big")
            + self.instance_id
            + self.member_id.to_bytes(1, "big", signed=True)
        )
        if self.selection is not None:
            out += bytes([self.selection.selector]) + self.selection.parameters.encode()
        return out


@dataclass(frozen=True)
class ResponseSpec:
    """One Access-Response-Specification: the kind (get, set, action) and its result code."""

    kind: AccessKind
    result: int

    def encode(self) -> bytes:
        return bytes([self.kind, self.result])


def _read_request_spec(reader: OctetReader) -> RequestSpec:
    tag = reader.byte("access request specification")
    try:
        kind = AccessKind(tag)
    except ValueError:
        raise GbcsError(f"unknown access request specification {tag:02x}") from None
    class_id = reader.uint(2, "class id")
    instance_id = reader.take(6, "instance id")
    member_id = int.from_bytes(reader.take(1, "attribute or method id"), "big", signed=True)
    selection = None
    if kind in _WITH_SELECTION:
        selector = reader.byte("access selector")
        selection = SelectiveAccess(selector, read_data(reader))
    return RequestSpec(kind, class_id, instance_id, member_id, selection)


def _read_response_spec(reader: OctetReader) -> ResponseSpec:
    tag = reader.byte("access response specification")
    if tag not in (AccessKind.GET, AccessKind.SET, AccessKind.ACTION):
        raise GbcsError(f"unknown access response specification {tag:02x}")
    return ResponseSpec(AccessKind(tag), reader.byte("access result"))


def _read_date_time(reader: OctetReader) -> bytes:
    value = reader.sized("APDU date-time")
    if len(value) not in (0, 12):
        raise GbcsError(f"bad APDU date-time length {len(value)}")
    return value


def _sequence(items: tuple[bytes, ...]) -> bytes:
    return encode_length(len(items)) + b"".join(items)


class ApduTag(IntEnum):
    DATA_NOTIFICATION = 0x0F
    ACCESS_REQUEST = 0xD9
    ACCESS_RESPONSE = 0xDA


@dataclass(frozen=True)
class AccessRequest:
    """A DLMS Access Request (``D9``). ``date_time`` is empty or a 12-byte date-time."""

    invoke_id_and_priority: int
    date_time: bytes
    specs: tuple[RequestSpec, ...]
    data: tuple[Data, ...]

    def encode(self) -> bytes:
        return b"".join(
            (
                bytes([ApduTag.ACCESS_REQUEST]),
                self.invoke_id_and_priority.to_bytes(4, "big"),
                encode_length(len(self.date_time)) + self.date_time,
                _sequence(tuple(spec.encode() for spec in self.specs)),
                _sequence(tuple(item.encode() for item in self.data)),
            )
        )


@dataclass(frozen=True)
class AccessResponse:
    """A DLMS Access Response (``DA``).

    ``request_specs`` is the optional echo of the request's specifications (``None`` when
    absent); ``data`` and ``results`` hold one entry per specification.
    """

    invoke_id_and_priority: int
    date_time: bytes
    request_specs: tuple[RequestSpec, ...] | None
    data: tuple[Data, ...]
    results: tuple[ResponseSpec, ...]

    def encode(self) -> bytes:
        if self.request_specs is None:
            echo = b"\x00"
        else:
            echo = b"\x01" + _sequence(tuple(spec.encode() for spec in self.request_specs))
        return b"".join(
            (
                bytes([ApduTag.ACCESS_RESPONSE]),
                self.invoke_id_and_priority.to_bytes(4, "big"),
                encode_length(len(self.date_time)) + self.date_time,
                echo,
                _sequence(tuple(item.encode() for item in self.data)),
                _sequence(tuple(result.encode() for result in self.results)),
            )
        )


@dataclass(frozen=True)
class DataNotification:
    """A DLMS Data Notification (``0F``), the carrier of GBCS DLMS alerts."""

    invoke_id_and_priority: int
    date_time: bytes
    body: Data

    def encode(self) -> bytes:
        return b"".join(
            (
                bytes([ApduTag.DATA_NOTIFICATION]),
                self.invoke_id_and_priority.to_bytes(4, "big"),
                encode_length(len(self.date_time)) + self.date_time,
                self.body.encode(),
            )
        )


DlmsApdu = AccessRequest | AccessResponse | DataNotification


def decode_apdu(payload: bytes) -> DlmsApdu:
    """Decode a GBCS DLMS payload (``D9``, ``DA`` or ``0F``) to its last byte.

    The last few hundred payloads' decodings are kept (they are immutable): a device decodes
    its command to act on it, and the response builder decodes it again for its parameters."""
    if type(payload) is bytes:
        return _decode_apdu_cached(payload)
    return _decode_apdu(bytes(payload))


def _decode_apdu(payload: bytes) -> DlmsApdu:
    reader = OctetReader(payload)
    tag = reader.byte("DLMS APDU tag")
    apdu: DlmsApdu
    if tag == ApduTag.ACCESS_REQUEST:
        invoke = reader.uint(4, "long-invoke-id-and-priority")
        when = _read_date_time(reader)
        specs = tuple(_read_request_spec(reader) for _ in range(reader.length("spec count")))
        data = tuple(read_data(reader) for _ in range(reader.length("data count")))
        apdu = AccessRequest(invoke, when, specs, data)
    elif tag == ApduTag.ACCESS_RESPONSE:
        invoke = reader.uint(4, "long-invoke-id-and-priority")
        when = _read_date_time(reader)
        present = reader.byte("request specification echo flag")
        echo: tuple[RequestSpec, ...] | None
        if present == 0:
            echo = None
        elif present == 1:
            echo = tuple(_read_request_spec(reader) for _ in range(reader.length("spec count")))
        else:
            raise GbcsError(f"bad OPTIONAL flag {present:02x}")
        data = tuple(read_data(reader) for _ in range(reader.length("data count")))
        results = tuple(_read_response_spec(reader) for _ in range(reader.length("result count")))
        apdu = AccessResponse(invoke, when, echo, data, results)
    elif tag == ApduTag.DATA_NOTIFICATION:
        invoke = reader.uint(4, "long-invoke-id-and-priority")
        when = _read_date_time(reader)
        apdu = DataNotification(invoke, when, read_data(reader))
    else:
        raise GbcsError(f"not a DLMS APDU tag: {tag:02x}")
    if not reader.at_end():
        raise GbcsError(f"{reader.remaining()} trailing bytes after DLMS APDU")
    return apdu


DATE_TIME_DEVIATION_UNSPECIFIED = 0x8000
CLOCK_STATUS_UNSPECIFIED = 0xFF


def encode_date_time(when: datetime) -> bytes:
    """A 12-byte DLMS date-time for ``when`` (UTC), as the RTDS devices write it.

    Day of week, deviation and clock status are "not specified" (FF, 8000, FF); hundredths 0.
    """
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return b"".join(
        (
            when.year.to_bytes(2, "big"),
            bytes([when.month, when.day, 0xFF, when.hour, when.minute, when.second, 0x00]),
            DATE_TIME_DEVIATION_UNSPECIFIED.to_bytes(2, "big"),
            bytes([CLOCK_STATUS_UNSPECIFIED]),
        )
    )


_decode_apdu_cached = functools.lru_cache(maxsize=256)(_decode_apdu)
