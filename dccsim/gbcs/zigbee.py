"""GBZ payloads (ZigBee ZCL, GSME and GPF use cases): exact decode and byte-identical encode.

A GBZ payload, as the RTDS vectors carry it (first bytes ``01 09``, the Smart Energy profile)::

    profile:2  component count:1  [alert code:2  alert time:4  alert body]   (alerts only)
    component*: control:1  cluster:2  length:2  [from date-time:4]           (control bit 4)
                [additional header control:1  frame counter:1]               (control bit 1)
                ZCL header (frame control:1  sequence:1  command:1)
                ZCL payload | encrypted length:2 + encrypted content         (control bit 1)

GBZ header fields are big-endian; the ZCL payload is little-endian ZCL. ZCL payloads are decoded
by a table of command layouts (:data:`ZCL_LAYOUTS`): a list of typed fields, optionally followed
by repeated records. Whatever a layout does not cover is kept as ``rest`` so that every payload
re-encodes byte for byte, known layout or not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.octets import OctetReader

GBZ_PROFILE = 0x0109  # ZigBee Smart Energy
CONTROL_LAST = 0x01
CONTROL_ENCRYPTED = 0x02
CONTROL_FROM_DATE_TIME = 0x10
FRAME_CLUSTER_SPECIFIC = 0x01
FRAME_SERVER_TO_CLIENT = 0x08
FUTURE_DATED_ALERTS = (0x8F66, 0x8F67)

# clusters
PRICE, METERING, MESSAGING, PREPAYMENT, DEVICE_MANAGEMENT, EVENTS, CALENDAR = (
    0x0700,
    0x0702,
    0x0703,
    0x0705,
    0x0708,
    0x0709,
    0x0707,
)
CLUSTER_NAMES = {
    PRICE: "price",
    METERING: "metering",
    MESSAGING: "messaging",
    PREPAYMENT: "prepayment",
    CALENDAR: "calendar",
    DEVICE_MANAGEMENT: "device-management",
    EVENTS: "events",
}

# ZCL data types: fixed sizes, and the length-prefixed strings
_FIXED_SIZES: dict[int, int] = {
    0x08: 1, 0x09: 2, 0x0A: 3, 0x0B: 4,  # data8..32
    0x10: 1,  # boolean
    0x18: 1, 0x19: 2, 0x1A: 3, 0x1B: 4, 0x1C: 5, 0x1D: 6, 0x1E: 7, 0x1F: 8,  # bitmaps
    0x20: 1, 0x21: 2, 0x22: 3, 0x23: 4, 0x24: 5, 0x25: 6, 0x26: 7, 0x27: 8,  # unsigned
    0x28: 1, 0x29: 2, 0x2A: 3, 0x2B: 4, 0x2C: 5, 0x2D: 6, 0x2E: 7, 0x2F: 8,  # signed
    0x30: 1, 0x31: 2,  # enums
    0xE0: 4, 0xE1: 4, 0xE2: 4,  # time of day, date, UTC time
    0xE8: 2, 0xE9: 2, 0xEA: 4,  # cluster id, attribute id, BACnet OID
    0xF0: 8, 0xF1: 16,  # IEEE address, 128-bit key
}  # fmt: skip
OCTET_STRING, CHAR_STRING, LONG_OCTET_STRING, LONG_CHAR_STRING = 0x41, 0x42, 0x43, 0x44
U8, U16, U24, U32, INT32, ENUM8, BITMAP8, BITMAP16, BITMAP32, UTC = (
    0x20,
    0x21,
    0x22,
    0x23,
    0x2B,
    0x30,
    0x18,
    0x19,
    0x1B,
    0xE2,
)
U48 = 0x25
DATE = 0xE1  # a ZCL Date: year - 1900, month, day of month, day of week (0xFF: any)
ZclValue = int | bytes | str


def _signed(zcl_type: int) -> bool:
    return 0x28 <= zcl_type <= 0x2F


def read_zcl_value(reader: OctetReader, zcl_type: int) -> ZclValue:
    """One ZCL value of ``zcl_type``: an int (numbers, bitmaps, enums, times), bytes (octet
    strings, addresses, keys) or str (character strings, latin-1 so any byte survives)."""
    if zcl_type in (OCTET_STRING, CHAR_STRING):
        raw = reader.take(reader.byte("ZCL string length"), "ZCL string")
        return raw.decode("latin-1") if zcl_type == CHAR_STRING else raw
    if zcl_type in (LONG_OCTET_STRING, LONG_CHAR_STRING):
        long_size = int.from_bytes(reader.take(2, "ZCL long string length"), "little")
        raw = reader.take(long_size, "ZCL long string")
        return raw.decode("latin-1") if zcl_type == LONG_CHAR_STRING else raw
    size = _FIXED_SIZES.get(zcl_type)
    if size is None:
        raise GbcsError(f"unsupported ZCL data type {zcl_type:#04x}")
    raw = reader.take(size, f"ZCL type {zcl_type:#04x}")
    if zcl_type in (0xF0, 0xF1):
        return raw
    return int.from_bytes(raw, "little", signed=_signed(zcl_type))


def encode_zcl_value(zcl_type: int, value: ZclValue) -> bytes:
    """The inverse of :func:`read_zcl_value`."""
    if zcl_type in (OCTET_STRING, CHAR_STRING, LONG_OCTET_STRING, LONG_CHAR_STRING):
        raw = value.encode("latin-1") if isinstance(value, str) else value
        if not isinstance(raw, bytes):
            raise GbcsError(f"ZCL string type {zcl_type:#04x} needs bytes or str")
        short = zcl_type in (OCTET_STRING, CHAR_STRING)
        if len(raw) > (0xFF if short else 0xFFFF):
            raise GbcsError("ZCL string too long")
        return (bytes([len(raw)]) if short else len(raw).to_bytes(2, "little")) + raw
    size = _FIXED_SIZES.get(zcl_type)
    if size is None:
        raise GbcsError(f"unsupported ZCL data type {zcl_type:#04x}")
    if isinstance(value, bytes):
        if len(value) != size:
            raise GbcsError(f"ZCL type {zcl_type:#04x} is {size} bytes")
        return value
    if not isinstance(value, int):
        raise GbcsError(f"ZCL type {zcl_type:#04x} needs an int")
    try:
        return value.to_bytes(size, "little", signed=_signed(zcl_type))
    except OverflowError as exc:
        raise GbcsError(f"{value} does not fit ZCL type {zcl_type:#04x}") from exc


@dataclass(frozen=True)
class ZclField:
    name: str
    zcl_type: int


@dataclass(frozen=True)
class ZclLayout:
    """A ZCL command's payload: ``fields`` once, then ``record`` repeated to the end.

    ``typed_records`` marks the profile-wide attribute records (Read Attributes Response, Write
    Attributes): ``attribute_id``, ``status``, then ``type`` and ``value`` when status is 0.
    """

    name: str
    fields: tuple[ZclField, ...] = ()
    record: tuple[ZclField, ...] = ()
    typed_records: bool = False


def _f(name: str, zcl_type: int) -> ZclField:
    return ZclField(name, zcl_type)


# Profile-wide (frame type 0) commands, by command id: the same in every cluster.
PROFILE_WIDE_LAYOUTS: dict[int, ZclLayout] = {
    0x00: ZclLayout("read-attributes", record=(_f("attribute_id", U16),)),
    0x01: ZclLayout("read-attributes-response", typed_records=True),
    0x0B: ZclLayout("default-response", (_f("command_id", U8), _f("status", ENUM8))),
}

_EVENT = (_f("log_id", ENUM8), _f("event_id", U16), _f("event_time", UTC))

_CALENDAR_IDS = (_f("provider_id", U32), _f("issuer_event_id", U32), _f("issuer_calendar_id", U32))
_PRICE_IDS = (
    _f("provider_id", U32),
    _f("issuer_event_id", U32),
    _f("start_time", UTC),
    _f("issuer_tariff_id", U32),
    _f("command_index", U8),
    _f("total_number_of_commands", U8),
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

# Cluster-specific commands: (cluster, server-to-client, command id) -> layout (ZSE 1.2 / GBCS)
ZCL_LAYOUTS: dict[tuple[int, bool, int], ZclLayout] = {
    # GCS01a's tariff: the calendar cluster's Publish Calendar, Day Profile, Week Profile,
    # Seasons and Special Days, the price cluster's Publish Tariff Information, Block
    # Thresholds and Price Matrix (ZSE 1.2, server to client; the RTDS GCS01a commands)
    (CALENDAR, True, 0x00): ZclLayout(
        "publish-calendar",
        (
            *_CALENDAR_IDS,
            _f("start_time", UTC),
            _f("calendar_type", ENUM8),
            _f("calendar_time_reference", ENUM8),
            _f("calendar_name", OCTET_STRING),
            _f("number_of_seasons", U8),
            _f("number_of_week_profiles", U8),
            _f("number_of_day_profiles", U8),
        ),
    ),
    (CALENDAR, True, 0x01): ZclLayout(
        "publish-day-profile",
        (
            *_CALENDAR_IDS,
            _f("day_id", U8),
            _f("total_number_of_schedule_entries", U8),
            _f("command_index", U8),
            _f("total_number_of_commands", U8),
            _f("calendar_type", ENUM8),
        ),
        record=(_f("start_time", U16), _f("price_tier", U8)),
    ),
    (CALENDAR, True, 0x02): ZclLayout(
        "publish-week-profile",
        (
            *_CALENDAR_IDS,
            _f("week_id", U8),
            *(_f(f"day_id_ref_{day}", U8) for day in WEEKDAYS),
        ),
    ),
    (CALENDAR, True, 0x03): ZclLayout(
        "publish-seasons",
        (*_CALENDAR_IDS, _f("command_index", U8), _f("total_number_of_commands", U8)),
        record=(_f("season_start_date", DATE), _f("week_id_ref", U8)),
    ),
    (CALENDAR, True, 0x04): ZclLayout(
        "publish-special-days",
        (
            *_CALENDAR_IDS,
            _f("start_time", UTC),
            _f("calendar_type", ENUM8),
            _f("total_number_of_special_days", U8),
            _f("command_index", U8),
            _f("total_number_of_commands", U8),
        ),
        record=(_f("special_day_date", DATE), _f("day_id_ref", U8)),
    ),
    (PRICE, True, 0x04): ZclLayout(
        "publish-tariff-information",
        (
            _f("provider_id", U32),
            _f("issuer_event_id", U32),
            _f("issuer_tariff_id", U32),
            _f("start_time", UTC),
            _f("tariff_type_charging_scheme", BITMAP8),
            _f("tariff_label", OCTET_STRING),
            _f("number_of_price_tiers_in_use", U8),
            _f("number_of_block_thresholds_in_use", U8),
            _f("unit_of_measure", ENUM8),
            _f("currency", U16),
            _f("price_trailing_digit", BITMAP8),
            _f("standing_charge", U32),
            _f("tier_block_mode", ENUM8),
            _f("block_threshold_multiplier", U24),
            _f("block_threshold_divisor", U24),
        ),
    ),
    (PRICE, True, 0x05): ZclLayout(
        "publish-price-matrix",
        (*_PRICE_IDS, _f("sub_payload_control", BITMAP8)),
        record=(_f("tier_block_id", U8), _f("price", U32)),
    ),
    # one tier's thresholds, as a gas tariff has (a second tier's byte would land in ``rest``)
    (PRICE, True, 0x06): ZclLayout(
        "publish-block-thresholds",
        (
            *_PRICE_IDS,
            _f("sub_payload_control", BITMAP8),
            _f("tier_number_of_block_thresholds", BITMAP8),
        ),
        record=(_f("block_threshold", U48),),
    ),
    (PREPAYMENT, False, 0x00): ZclLayout(
        "select-available-emergency-credit",
        (_f("command_issue_date_time", UTC), _f("originating_device", ENUM8)),
    ),
    (PREPAYMENT, False, 0x04): ZclLayout(
        "consumer-top-up", (_f("originating_device", ENUM8), _f("top_up_code", OCTET_STRING))
    ),
    (PREPAYMENT, False, 0x05): ZclLayout(
        "credit-adjustment",
        (
            _f("issuer_event_id", U32),
            _f("start_time", UTC),
            _f("credit_adjustment_type", ENUM8),
            _f("credit_adjustment_value", INT32),
        ),
    ),
    (PREPAYMENT, False, 0x06): ZclLayout(
        "change-payment-mode",
        (
            _f("provider_id", U32),
            _f("issuer_event_id", U32),
            _f("implementation_date_time", UTC),
            _f("proposed_payment_control_configuration", BITMAP16),
            _f("cut_off_value", INT32),
        ),
    ),
    (PREPAYMENT, True, 0x02): ZclLayout(
        "change-payment-mode-response",
        (
            _f("friendly_credit", BITMAP8),
            _f("friendly_credit_calendar_id", U32),
            _f("emergency_credit_limit", U32),
            _f("emergency_credit_threshold", U32),
        ),
    ),
    (PREPAYMENT, True, 0x03): ZclLayout(
        "consumer-top-up-response",
        (
            _f("result_type", ENUM8),
            _f("top_up_value", INT32),
            _f("source_of_top_up", ENUM8),
            _f("credit_remaining", INT32),
        ),
    ),
    (MESSAGING, True, 0x00): ZclLayout(
        "display-message",
        (
            _f("message_id", U32),
            _f("message_control", BITMAP8),
            _f("start_time", UTC),
            _f("duration_in_minutes", U16),
            _f("message", CHAR_STRING),
        ),
    ),
    (METERING, False, 0x06): ZclLayout(
        "get-snapshot",
        (
            _f("earliest_start_time", UTC),
            _f("latest_end_time", UTC),
            _f("snapshot_offset", U8),
            _f("snapshot_cause", BITMAP32),
        ),
    ),
    (METERING, False, 0x08): ZclLayout(
        "get-sampled-data",
        (
            _f("sample_id", U16),
            _f("earliest_sample_time", UTC),
            _f("sample_type", ENUM8),
            _f("number_of_samples", U16),
        ),
    ),
    (METERING, False, 0x0B): ZclLayout(
        "change-supply",
        (
            _f("provider_id", U32),
            _f("issuer_event_id", U32),
            _f("request_date_time", UTC),
            _f("implementation_date_time", UTC),
            _f("proposed_supply_status", ENUM8),
            _f("supply_control_bits", BITMAP8),
        ),
    ),
    # Publish Snapshot as GCS16a's daily read log carries it: snapshot payload type 6 (block
    # tier information set delivered, no billing) with four TOU tiers and one tier of four
    # blocks (0x14); another shape is kept whole in ``rest``
    (METERING, True, 0x06): ZclLayout(
        "publish-snapshot",
        (
            _f("snapshot_id", U32),
            _f("snapshot_time", UTC),
            _f("total_snapshots_found", U8),
            _f("command_index", U8),
            _f("total_commands", U8),
            _f("snapshot_cause", BITMAP32),
            _f("snapshot_payload_type", ENUM8),
            _f("current_summation_delivered", U48),
            _f("number_of_tiers_in_use", U8),
            *(_f(f"tier{n}_summation_delivered", U48) for n in range(1, 5)),
            _f("number_of_tiers_and_blocks_in_use", U8),
            *(_f(f"tier1_block{n}_summation_delivered", U48) for n in range(1, 5)),
        ),
    ),
    (METERING, True, 0x07): ZclLayout(
        "get-sampled-data-response",
        (
            _f("sample_id", U16),
            _f("sample_start_time", UTC),
            _f("sample_type", ENUM8),
            _f("sample_request_interval", U16),
            _f("number_of_samples", U16),
        ),
        record=(_f("sample", U24),),
    ),
    (METERING, True, 0x0C): ZclLayout(
        "supply-status-response",
        (
            _f("provider_id", U32),
            _f("issuer_event_id", U32),
            _f("implementation_date_time", UTC),
            _f("supply_status", ENUM8),
        ),
    ),
    (EVENTS, False, 0x00): ZclLayout(
        "get-event-log",
        (
            _f("event_control_log_id", BITMAP8),
            _f("event_id", U16),
            _f("start_time", UTC),
            _f("end_time", UTC),
            _f("number_of_events", U8),
            _f("event_offset", U16),
        ),
    ),
    (EVENTS, False, 0x01): ZclLayout("clear-event-log-request", (_f("log_id", ENUM8),)),
    (EVENTS, True, 0x01): ZclLayout(
        "publish-event-log",
        (
            _f("total_number_of_matching_events", U16),
            _f("command_index", U8),
            _f("total_commands", U8),
            _f("log_payload_control", BITMAP8),
        ),
        record=(*_EVENT, _f("event_data", OCTET_STRING)),
    ),
    (EVENTS, True, 0x02): ZclLayout(
        "clear-event-log-response", (_f("cleared_event_logs", BITMAP8),)
    ),
    (DEVICE_MANAGEMENT, True, 0x02): ZclLayout(
        "request-new-password-response",
        (
            _f("issuer_event_id", U32),
            _f("implementation_date_time", UTC),
            _f("duration_in_minutes", U16),
            _f("password_type", ENUM8),
            _f("password", OCTET_STRING),
        ),
    ),
    (DEVICE_MANAGEMENT, True, 0x03): ZclLayout(
        "update-site-id",
        (
            _f("issuer_event_id", U32),
            _f("site_id_time", UTC),
            _f("provider_id", U32),
            _f("site_id", OCTET_STRING),
        ),
    ),
}


@dataclass(frozen=True)
class ZclHeader:
    frame_control: int
    sequence: int
    command: int

    @property
    def cluster_specific(self) -> bool:
        return self.frame_control & 0x03 == FRAME_CLUSTER_SPECIFIC

    @property
    def server_to_client(self) -> bool:
        return bool(self.frame_control & FRAME_SERVER_TO_CLIENT)

    def encode(self) -> bytes:
        return bytes((self.frame_control, self.sequence, self.command))


def layout_for(cluster: int, header: ZclHeader) -> ZclLayout | None:
    """The table's layout for a ZCL command, or None when the table has none."""
    if not header.cluster_specific:
        return PROFILE_WIDE_LAYOUTS.get(header.command)
    return ZCL_LAYOUTS.get((cluster, header.server_to_client, header.command))


@dataclass(frozen=True)
class ZclPayload:
    """A ZCL payload as fields: ``values`` (the layout's fixed fields), ``records`` (repeated
    groups) and ``rest`` (trailing bytes no layout covers, often empty)."""

    layout: str | None
    values: Mapping[str, ZclValue] = field(default_factory=dict)
    records: tuple[Mapping[str, ZclValue], ...] = ()
    rest: bytes = b""


def _read_fields(reader: OctetReader, fields: tuple[ZclField, ...]) -> dict[str, ZclValue]:
    return {f.name: read_zcl_value(reader, f.zcl_type) for f in fields}


def _read_typed_record(reader: OctetReader) -> dict[str, ZclValue]:
    record: dict[str, ZclValue] = {
        "attribute_id": int.from_bytes(reader.take(2, "attribute id"), "little"),
        "status": reader.byte("attribute status"),
    }
    if record["status"] == 0:
        zcl_type = reader.byte("attribute type")
        record["type"] = zcl_type
        record["value"] = read_zcl_value(reader, zcl_type)
    return record


def decode_zcl_payload(cluster: int, header: ZclHeader, payload: bytes) -> ZclPayload:
    """Split ``payload`` into the fields of its layout; never fails — what does not parse as
    the layout (or has no layout) is kept in ``rest``."""
    layout = layout_for(cluster, header)
    if layout is None:
        return ZclPayload(None, rest=payload)
    reader = OctetReader(payload)
    try:
        values = _read_fields(reader, layout.fields)
    except GbcsError:
        return ZclPayload(layout.name, rest=payload)
    records: list[dict[str, ZclValue]] = []
    if layout.record or layout.typed_records:
        while not reader.at_end():
            start = reader.pos
            try:
                record = (
                    _read_typed_record(reader)
                    if layout.typed_records
                    else _read_fields(reader, layout.record)
                )
            except GbcsError:
                reader = OctetReader(payload, start)
                break
            records.append(record)
    rest = reader.take(reader.remaining(), "rest")
    return ZclPayload(layout.name, values, tuple(records), rest)


def encode_zcl_payload(cluster: int, header: ZclHeader, payload: ZclPayload) -> bytes:
    """The inverse of :func:`decode_zcl_payload`."""
    layout = layout_for(cluster, header)
    out = bytearray()
    if layout is not None and (payload.values or payload.records):
        for f in layout.fields:
            out += encode_zcl_value(f.zcl_type, payload.values[f.name])
        for record in payload.records:
            if layout.typed_records:
                out += int(record["attribute_id"]).to_bytes(2, "little")
                out.append(int(record["status"]))
                if record["status"] == 0:
                    out.append(int(record["type"]))
                    out += encode_zcl_value(int(record["type"]), record["value"])
            else:
                for f in layout.record:
                    out += encode_zcl_value(f.zcl_type, record[f.name])
    elif payload.values or payload.records:
        raise GbcsError("ZCL fields given for a command without a layout")
    return bytes(out) + payload.rest


@dataclass(frozen=True)
class GbzComponent:
    """One GBZ use-case-specific component: the extended header and one ZCL command.

    For an encrypted component (control bit 1) ``payload`` is empty and ``encrypted_content``
    holds the encrypted ZCL payload as sent (``31 00000000`` + ciphertext + tag).
    """

    control: int
    cluster: int
    header: ZclHeader
    payload: ZclPayload
    from_date_time: int | None = None
    additional_header_control: int = 0
    additional_frame_counter: int = 0
    encrypted_content: bytes | None = None

    @property
    def encrypted(self) -> bool:
        return bool(self.control & CONTROL_ENCRYPTED)

    def encode(self) -> bytes:
        body = bytearray()
        if self.control & CONTROL_FROM_DATE_TIME:
            if self.from_date_time is None:
                raise GbcsError("GBZ control says a from date-time follows, none given")
            body += self.from_date_time.to_bytes(4, "big")
        if self.encrypted:
            if self.encrypted_content is None:
                raise GbcsError("an encrypted GBZ component needs its encrypted content")
            body += bytes((self.additional_header_control, self.additional_frame_counter))
            body += self.header.encode()
            body += len(self.encrypted_content).to_bytes(2, "big") + self.encrypted_content
        else:
            body += self.header.encode()
            body += encode_zcl_payload(self.cluster, self.header, self.payload)
        if len(body) > 0xFFFF:
            raise GbcsError("GBZ component too long")
        return (
            bytes([self.control])
            + self.cluster.to_bytes(2, "big")
            + len(body).to_bytes(2, "big")
            + bytes(body)
        )


@dataclass(frozen=True)
class FutureDatedOutcome:
    """The body of a GBZ 0x8F66/0x8F67 alert: which command ran (or failed) at its date."""

    message_code: int
    originator_counter: int
    cluster: int
    frame_control: int
    command: int

    def encode(self) -> bytes:
        inner = (
            self.message_code.to_bytes(2, "big")
            + self.originator_counter.to_bytes(8, "big")
            + self.cluster.to_bytes(2, "big")
            + bytes((self.frame_control, self.command))
        )
        return bytes([len(inner)]) + inner


@dataclass(frozen=True)
class GbzAlert:
    """A GBZ alert header: code and time (seconds since 2000-01-01 UTC), then its body —
    :class:`FutureDatedOutcome` for 0x8F66/0x8F67, else the raw ``body`` bytes."""

    alert_code: int
    timestamp: int
    future_dated: FutureDatedOutcome | None = None
    body: bytes = b""


@dataclass(frozen=True)
class GbzPayload:
    """A whole GBZ payload: the count of components, the alert header if any, components."""

    component_count: int
    components: tuple[GbzComponent, ...]
    alert: GbzAlert | None = None
    profile: int = GBZ_PROFILE

    def encode(self) -> bytes:
        out = bytearray(self.profile.to_bytes(2, "big"))
        out.append(self.component_count)
        if self.alert is not None:
            out += self.alert.alert_code.to_bytes(2, "big")
            out += self.alert.timestamp.to_bytes(4, "big")
            if self.alert.future_dated is not None:
                out += self.alert.future_dated.encode()
            out += self.alert.body
        for component in self.components:
            out += component.encode()
        return bytes(out)


def _read_component(reader: OctetReader) -> GbzComponent:
    control = reader.byte("GBZ extended header control")
    cluster = reader.uint(2, "GBZ cluster id")
    body = OctetReader(reader.take(reader.uint(2, "GBZ command length"), "GBZ command"))
    from_date_time = (
        body.uint(4, "GBZ from date-time") if control & CONTROL_FROM_DATE_TIME else None
    )
    if control & CONTROL_ENCRYPTED:
        additional_control = body.byte("GBZ additional header control")
        frame_counter = body.byte("GBZ additional frame counter")
        header = ZclHeader(*body.take(3, "ZCL header"))
        content = body.take(body.uint(2, "GBZ encrypted length"), "GBZ encrypted content")
        if not body.at_end():
            raise GbcsError("trailing bytes after GBZ encrypted content")
        return GbzComponent(
            control,
            cluster,
            header,
            ZclPayload(None),
            from_date_time,
            additional_control,
            frame_counter,
            content,
        )
    header = ZclHeader(*body.take(3, "ZCL header"))
    payload = decode_zcl_payload(cluster, header, body.take(body.remaining(), "ZCL payload"))
    return GbzComponent(control, cluster, header, payload, from_date_time)


def decode_gbz(payload: bytes, *, alert: bool = False) -> GbzPayload:
    """Decode a GBZ payload (``alert`` when the frame's CRA flag is 3).

    Raises :class:`GbcsError` on a wrong profile, truncation, trailing bytes or a component
    count that does not match.
    """
    reader = OctetReader(payload)
    profile = reader.uint(2, "GBZ profile id")
    if profile != GBZ_PROFILE:
        raise GbcsError(f"not a GBZ payload (profile {profile:#06x})")
    count = reader.byte("GBZ component count")
    gbz_alert: GbzAlert | None = None
    if alert:
        code = reader.uint(2, "GBZ alert code")
        timestamp = reader.uint(4, "GBZ alert time")
        if code in FUTURE_DATED_ALERTS:
            inner = OctetReader(reader.sized("future-dated alert body"))
            outcome = FutureDatedOutcome(
                inner.uint(2, "message code"),
                inner.uint(8, "originator counter"),
                inner.uint(2, "cluster id"),
                inner.byte("frame control"),
                inner.byte("command id"),
            )
            if not inner.at_end():
                raise GbcsError("trailing bytes in future-dated alert body")
            gbz_alert = GbzAlert(code, timestamp, outcome)
        else:
            # other GBZ alert bodies (e.g. 0x8F72) are kept whole: no components follow
            gbz_alert = GbzAlert(code, timestamp, body=reader.take(reader.remaining(), "body"))
        return GbzPayload(count, (), gbz_alert, profile)
    components: list[GbzComponent] = []
    while not reader.at_end():
        components.append(_read_component(reader))
    if len(components) != count:
        raise GbcsError(f"GBZ count says {count} components, found {len(components)}")
    return GbzPayload(count, tuple(components), None, profile)


def _value_json(value: ZclValue) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def zcl_payload_to_json(payload: ZclPayload) -> dict[str, Any]:
    """A ZCL payload's layout, fields, records and uncovered rest as JSON-able values."""
    out: dict[str, Any] = {
        "layout": payload.layout,
        "fields": {k: _value_json(v) for k, v in payload.values.items()},
    }
    if payload.records:
        out["records"] = [{k: _value_json(v) for k, v in r.items()} for r in payload.records]
    if payload.rest:
        out["rest"] = payload.rest.hex()
    return out


def gbz_to_json(gbz: GbzPayload) -> dict[str, Any]:
    """A GBZ payload as JSON-able fields (what ``dccsim gbcs decode`` prints)."""
    out: dict[str, Any] = {"profile": f"{gbz.profile:#06x}", "component_count": gbz.component_count}
    if gbz.alert is not None:
        alert: dict[str, Any] = {
            "alert_code": f"{gbz.alert.alert_code:#06x}",
            "timestamp": gbz.alert.timestamp,
        }
        if gbz.alert.future_dated is not None:
            fd = gbz.alert.future_dated
            alert["future_dated"] = {
                "message_code": f"{fd.message_code:#06x}",
                "originator_counter": fd.originator_counter,
                "cluster": f"{fd.cluster:#06x}",
                "frame_control": fd.frame_control,
                "command": fd.command,
            }
        if gbz.alert.body:
            alert["body"] = gbz.alert.body.hex()
        out["alert"] = alert
    components = []
    for c in gbz.components:
        item: dict[str, Any] = {
            "control": c.control,
            "cluster": f"{c.cluster:#06x}",
            "cluster_name": CLUSTER_NAMES.get(c.cluster),
            "frame_control": c.header.frame_control,
            "sequence": c.header.sequence,
            "command": c.header.command,
        }
        if c.from_date_time is not None:
            item["from_date_time"] = c.from_date_time
        if c.encrypted_content is not None:
            item["encrypted_content"] = c.encrypted_content.hex()
        else:
            item.update(zcl_payload_to_json(c.payload))
        components.append(item)
    out["components"] = components
    return out
