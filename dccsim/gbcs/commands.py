"""Commands as data: one layout per use case.

A DLMS layout names the COSEM objects a use case touches (request specifications) and how its
data is filled from the Service Request's parameters; an ASN.1 layout (CS06, CS02b) names the
DER schema of :mod:`dccsim.gbcs.der` and how its fields are filled; a GBZ layout (the GSME and
GPF use cases) lists its ZCL commands, encoded by :mod:`dccsim.gbcs.zigbee`.
:func:`command_payload` turns any of them into the command payload, which
:mod:`dccsim.gbcs.critical` (critical) or :func:`dccsim.gbcs.usecases.build_command`
(non-critical) then frames. Every layout here reproduces its RTDS vector byte for byte.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dccsim.gbcs import der, dlms, zigbee
from dccsim.gbcs.dlms import AccessKind, AccessRequest, Data, RequestSpec, SelectiveAccess
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.usecases import (
    DATA_PROTECTION_CLASS,
    GET_PROTECTED_ATTRIBUTES,
    USE_CASES_BY_NAME,
    UseCase,
    ecs17b_request,
    invoke_id_for,
    protection_parameters,
)

# COSEM objects
SCRIPT_TABLE_CLASS = 9
DISCONNECT_SCRIPT_TABLE = bytes.fromhex("00000A006AFF")  # 0-0:10.0.106.255
EXECUTE = 1  # script table method: execute(script id)
DISCONNECT_CONTROL_CLASS = 70
DISCONNECT_CONTROL = bytes.fromhex("000060030AFF")  # 0-0:96.3.10.255
CONTROL_STATE = 3  # disconnect control attribute: 0 disconnected, 1 connected, 2 ready
CLOCK_CLASS = 8
CLOCK = bytes.fromhex("0000010000FF")  # 0-0:1.0.0.255
CLOCK_TIME, CLOCK_STATUS, CLOCK_BASE = 2, 4, 9
ADJUST_TO_PRESET_TIME, PRESET_ADJUSTING_TIME = 4, 5

DATA_CLASS = 1
PROFILE_GENERIC_CLASS = 7
BUFFER = 2  # profile generic attribute: the log itself
VALUE = 2  # data attribute: value
ACCOUNT_CLASS = 111
ACCOUNT = bytes.fromhex("0001130000FF")  # 0-1:19.0.0.255, the passive account ECS02/03 set
ACCOUNT_MODE_AND_STATUS, CREDIT_REFERENCE_LIST, ACCOUNT_ACTIVATION_TIME = 2, 11, 13
TOKEN_GATEWAY_CLASS = 115
TOKEN_GATEWAY = bytes.fromhex("0000132800FF")  # 0-0:19.40.0.255
ENTER_TOKEN = 1
SUPPLIER_MESSAGE = bytes.fromhex("0002600D01FF")  # 0-2:96.13.1.255
FIRMWARE_VERSION = bytes.fromhex("0000000201FF")  # 0-0:0.2.1.255
ESME_EVENT_LOG = bytes.fromhex("0000636200FF")  # 0-0:99.98.0.255
PRIVACY_PIN = bytes.fromhex("00005E2C0301")  # 0-0:94.44.3.1
ACTIVE_POWER_IMPORT = bytes.fromhex("00005E2C2214")  # 0-0:94.44.34.20
RESET = 1  # profile generic method: reset (clear the buffer)
IMPORT_MPXN = bytes.fromhex("00005E2C220B")  # 0-0:94.44.34.11: the MPAN(s), ASCII digits
RANGE_RESTRICTION = 1  # protected reads: restriction by date-time range
BY_RANGE = 1  # selective access selector: range_descriptor
# the restricting column of every event and security log range read, as the vectors carry it
LOG_RANGE_COLUMN = dlms.structure(
    dlms.long_unsigned(DATA_CLASS),
    dlms.octet_string(bytes.fromhex("00005E2C64FF")),  # 0-0:94.44.100.255
    dlms.integer(2),
    dlms.long_unsigned(0),
)
GBCS_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # event log ranges: seconds since 2000
# account_activation_time for "now" (ECS02 immediate) and for the DUIS cancellation date
IMMEDIATE_DATE_TIME = bytes.fromhex("0000000000000000008000FF")
CANCELLATION_YEAR = 3000
CREDIT_MODE, PREPAYMENT_MODE = 1, 2  # account payment_mode
ACCOUNT_STATUS_NEW, ACCOUNT_STATUS_ACTIVE = 1, 2  # account_status: the passive account is new
ACCOUNT_ACTIVE = bytes.fromhex("0000130000FF")  # 0-0:19.0.0.255, the account in force
CREDIT_REFERENCE_TARIFF = bytes.fromhex("0000130A00FF")  # 0-0:19.10.0.255
CREDIT_REFERENCES_SINGLE = (bytes.fromhex("0000131400FF"), bytes.fromhex("0000131404FF"))
CREDIT_REFERENCE_TWIN = bytes.fromhex("0000131405FF")
CREDIT_CONFIGURATION = dlms.BitString(3, b"\xe0")
PREPAYMENT_DEBT_SUSPENDED = dlms.BitString(3, b"\xc0")
# ECS03's credits (0-0:19.10.x.255) and its (credit, charge 0-0:19.20.x.255, is a debt charge)
# rows, in the order the RTDS vectors carry them
PREPAYMENT_CREDITS = tuple(bytes.fromhex(f"0000130A{n:02X}FF") for n in range(3))
_CHARGE = {n: bytes.fromhex(f"000013140{n}FF") for n in range(6)}
PREPAYMENT_BASE_REFERENCES: tuple[tuple[bytes, bytes, bool], ...] = tuple(
    (PREPAYMENT_CREDITS[credit], _CHARGE[charge], charge in (1, 2))
    for credit, charge in (
        *((0, 0), (0, 4), (0, 1), (0, 2), (0, 3)),
        *((1, 3), (1, 0), (1, 4), (1, 1), (1, 2)),
    )
)
PREPAYMENT_EMERGENCY_REFERENCES: tuple[tuple[bytes, bytes], ...] = tuple(
    (PREPAYMENT_CREDITS[2], _CHARGE[charge]) for charge in (4, 1, 2)
)
DISABLEMENT_THRESHOLD_CLASS = 9000  # GBCS register class
DISABLEMENT_THRESHOLD = bytes.fromhex("00005E2C8016")  # 0-0:94.44.128.22
THRESHOLD_VALUE, THRESHOLD_ACTIVATION_TIME = 4, 6

# CCS01/CCS02: the CHF device log, the DLMS ZigBee network control object
ZIGBEE_NETWORK_CONTROL_CLASS = 104
ZIGBEE_NETWORK_CONTROL = bytes.fromhex("00001E0300FF")  # 0-0:30.3.0.255
REGISTER_DEVICE, UNREGISTER_DEVICE = 1, 2  # methods
ENABLE_DISABLE_JOINING, JOIN_TIMEOUT = 2, 3  # attributes
INSTALL_CODE_LENGTH = 16
# The device type enum of a CCS01 device log entry, by inventory device type. Only the ESME's
# value is attested (the RTDS CCS01 vector adds the ESME 00-DB-12-34-56-78-90-A0 as 1); a
# device type without a known value is refused rather than guessed.
HAN_DEVICE_TYPES: dict[str, int] = {"ESME": 1}

# disconnect script table entries GBCS assigns to the load switch
SCRIPT_CLOSE_LOAD_SWITCH = 51  # ECS42: supply enabled
SCRIPT_OPEN_LOAD_SWITCH = 52  # ECS43: supply disabled
SCRIPT_ARM_LOAD_SWITCH = 54  # ECS44: supply armed

CLOCK_BASE_RADIO_CONTROLLED = 5  # what ECS70 writes to clock_base, as the vectors do
# a DLMS date-time with every field "not specified": ECS70's preset_time
UNSPECIFIED_DATE_TIME = bytes.fromhex("FFFFFFFFFFFFFFFFFF8000FF")


@dataclass(frozen=True)
class CommandContext:
    """What a layout may read: the header values and the Service Request's parameters.

    ``parameters`` holds the DUIS body's values under snake_case names (for example
    ``current_date_time`` as an aware datetime and ``tolerance_period`` in seconds for ECS70).
    """

    counter: int
    originator_title: bytes
    device_title: bytes
    parameters: Mapping[str, object] = field(default_factory=dict)

    def parameter(self, name: str, kind: type[object]) -> object:
        value = self.parameters.get(name)
        if not isinstance(value, kind):
            raise GbcsError(f"command parameter {name!r} missing or not {kind.__name__}")
        return value


@dataclass(frozen=True)
class DlmsCommandLayout:
    """One use case's Access Request: fixed specifications, data computed from the context."""

    use_case: UseCase
    specs: tuple[RequestSpec, ...]
    data: Callable[[CommandContext], tuple[Data, ...]]
    # for layouts whose selective access depends on the parameters (ECS35 ranges)
    specs_for: Callable[[CommandContext], tuple[RequestSpec, ...]] | None = None

    def request(self, context: CommandContext) -> AccessRequest:
        specs = self.specs if self.specs_for is None else self.specs_for(context)
        data = self.data(context)
        if len(data) != len(specs):
            raise GbcsError(f"{self.use_case.name}: {len(data)} data for {len(specs)} specs")
        return AccessRequest(
            invoke_id_and_priority=invoke_id_for(context.counter),
            date_time=b"",
            specs=specs,
            data=data,
        )


def _fixed(*data: Data) -> Callable[[CommandContext], tuple[Data, ...]]:
    return lambda _context: data


def _ecs17b_data(context: CommandContext) -> tuple[Data, ...]:
    return ecs17b_request(context.counter, context.originator_title, context.device_title).data


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise GbcsError("command date-times must be timezone-aware")
    return value.astimezone(dt.UTC)


def _ecs70_data(context: CommandContext) -> tuple[Data, ...]:
    """Set the clock: adjust to "now" when the command arrives within the tolerance period."""
    now = context.parameter("current_date_time", dt.datetime)
    tolerance = context.parameter("tolerance_period", int)
    assert isinstance(now, dt.datetime) and isinstance(tolerance, int)
    if not 0 <= tolerance <= 0xFFFFFFFF:
        raise GbcsError("tolerance_period out of range")
    start = _utc(now)
    end = start + dt.timedelta(seconds=tolerance)
    return (
        dlms.enum(CLOCK_BASE_RADIO_CONTROLLED),
        dlms.structure(
            dlms.octet_string(UNSPECIFIED_DATE_TIME),
            dlms.octet_string(dlms.encode_date_time(start)),
            dlms.octet_string(dlms.encode_date_time(end)),
        ),
        dlms.integer(0),
        dlms.null(),
        dlms.null(),
    )


def _protected_range_read(
    use_case: str, protection_instance: bytes, log: bytes
) -> DlmsCommandLayout:
    """A protected log read (ECS21a, ECS22b, ECS66): get_protected_attributes on the log's
    buffer restricted to [``start_date_time``, ``end_date_time``], encrypted for the User."""

    def data(context: CommandContext) -> tuple[Data, ...]:
        start = context.parameter("start_date_time", dt.datetime)
        end = context.parameter("end_date_time", dt.datetime)
        assert isinstance(start, dt.datetime) and isinstance(end, dt.datetime)
        restriction = dlms.structure(
            dlms.enum(RANGE_RESTRICTION),
            dlms.structure(
                dlms.octet_string(dlms.encode_date_time(_utc(start))),
                dlms.octet_string(dlms.encode_date_time(_utc(end))),
            ),
        )
        object_list = dlms.array(
            dlms.structure(
                dlms.long_unsigned(PROFILE_GENERIC_CLASS),
                dlms.octet_string(log),
                dlms.integer(BUFFER),
                dlms.long_unsigned(0),
                restriction,
            )
        )
        parameters = protection_parameters(
            context.counter, context.originator_title, context.device_title
        )
        return (dlms.structure(object_list, parameters),)

    return DlmsCommandLayout(
        USE_CASES_BY_NAME[use_case],
        (
            RequestSpec(
                AccessKind.ACTION,
                DATA_PROTECTION_CLASS,
                protection_instance,
                GET_PROTECTED_ATTRIBUTES,
            ),
        ),
        data,
    )


def _seconds_since_2000(value: dt.datetime) -> int:
    seconds = int((_utc(value) - GBCS_EPOCH).total_seconds())
    if not 0 <= seconds <= 0xFFFFFFFF:
        raise GbcsError("log range date outside 2000-2136")
    return seconds


def _log_range_read(use_case: str, log: bytes) -> DlmsCommandLayout:
    """ECS35a-g: the log's buffer by range, ``start_date_time`` to ``end_date_time``."""

    def selection(start: dt.datetime, end: dt.datetime) -> SelectiveAccess:
        return SelectiveAccess(
            BY_RANGE,
            dlms.structure(
                LOG_RANGE_COLUMN,
                dlms.double_long_unsigned(_seconds_since_2000(start)),
                dlms.double_long_unsigned(_seconds_since_2000(end)),
                dlms.array(),  # every column
            ),
        )

    return DlmsCommandLayout(
        USE_CASES_BY_NAME[use_case],
        (),
        _fixed(dlms.null()),
        specs_for=lambda context: (
            RequestSpec(
                AccessKind.GET_WITH_SELECTION,
                PROFILE_GENERIC_CLASS,
                log,
                BUFFER,
                selection(
                    _datetime(context, "start_date_time"), _datetime(context, "end_date_time")
                ),
            ),
        ),
    )


def _datetime(context: CommandContext, name: str) -> dt.datetime:
    value = context.parameter(name, dt.datetime)
    assert isinstance(value, dt.datetime)
    return value


def _octets_parameter(name: str) -> Callable[[CommandContext], tuple[Data, ...]]:
    def data(context: CommandContext) -> tuple[Data, ...]:
        value = context.parameters.get(name)
        if isinstance(value, str):
            value = value.encode("ascii")
        if not isinstance(value, bytes):
            raise GbcsError(f"command parameter {name!r} missing or not text")
        return (dlms.octet_string(value),)

    return data


def _activation_time(context: CommandContext) -> bytes:
    """A future-datable command's execution date-time as DLMS octets: ``execution_date_time``
    None is "now" (all zero, as the IMMEDIATE vectors), year 3000 or later cancels a pending
    one (every field unspecified, as the CANCELLATION vectors), else that date-time."""
    when = context.parameters.get("execution_date_time")
    if when is None:
        return IMMEDIATE_DATE_TIME
    if not isinstance(when, dt.datetime):
        raise GbcsError("command parameter 'execution_date_time' must be a datetime")
    if _utc(when).year >= CANCELLATION_YEAR:
        return UNSPECIFIED_DATE_TIME
    return dlms.encode_date_time(_utc(when))


def _flag(context: CommandContext, name: str) -> bool:
    value = context.parameters.get(name, False)
    if not isinstance(value, bool):
        raise GbcsError(f"command parameter {name!r} must be a bool")
    return value


def _credit_reference_list(entries: tuple[tuple[bytes, bytes, dlms.BitString], ...]) -> Data:
    return dlms.array(
        *(
            dlms.structure(
                dlms.octet_string(credit),
                dlms.octet_string(charge),
                Data(dlms.DataType.BIT_STRING, configuration),
            )
            for credit, charge, configuration in entries
        )
    )


def credit_mode_references(*, twin: bool) -> tuple[tuple[bytes, bytes, dlms.BitString], ...]:
    """ECS02's credit/charge configuration: the meter balance pays the standing charge and
    the element charges (the second element's too on a twin-element ESME)."""
    charges = CREDIT_REFERENCES_SINGLE + ((CREDIT_REFERENCE_TWIN,) if twin else ())
    return tuple((CREDIT_REFERENCE_TARIFF, charge, CREDIT_CONFIGURATION) for charge in charges)


def prepayment_mode_references(
    *, twin: bool, suspend_debt_disabled: bool, suspend_debt_emergency: bool
) -> tuple[tuple[bytes, bytes, dlms.BitString], ...]:
    """ECS03's credit/charge configuration, as the RTDS ECS03 vectors lay it out: the base
    rows of credits 0 and 1; the debt charges' collection configuration drops its third bit
    when ``suspend_debt_disabled``; credit 2's rows are present when ``suspend_debt_emergency``;
    a twin-element ESME adds the second element's charge to credits 0 and 1."""
    debt = PREPAYMENT_DEBT_SUSPENDED if suspend_debt_disabled else CREDIT_CONFIGURATION
    rows: list[tuple[bytes, bytes, dlms.BitString]] = []
    for credit, charge, is_debt in PREPAYMENT_BASE_REFERENCES:
        rows.append((credit, charge, debt if is_debt else CREDIT_CONFIGURATION))
    if suspend_debt_emergency:
        rows += [(c, charge, CREDIT_CONFIGURATION) for c, charge in PREPAYMENT_EMERGENCY_REFERENCES]
    if twin:
        rows += [
            (credit, CREDIT_REFERENCE_TWIN, CREDIT_CONFIGURATION)
            for credit in PREPAYMENT_CREDITS[:2]
        ]
    return tuple(rows)


def _ecs02_data(context: CommandContext) -> tuple[Data, ...]:
    """Set the ESME to credit mode: the credit references to use (two, three for a twin
    element meter) and when, ``execution_date_time`` (None: now; year 3000: cancel)."""
    return (
        dlms.structure(dlms.enum(CREDIT_MODE), dlms.enum(ACCOUNT_STATUS_NEW)),
        _credit_reference_list(credit_mode_references(twin=_flag(context, "twin"))),
        dlms.octet_string(_activation_time(context)),
    )


def _ecs03_data(context: CommandContext) -> tuple[Data, ...]:
    """Set the ESME to prepayment mode: the disablement threshold (``disablement_threshold``,
    in the meter's currency units), the credit references (see
    :func:`prepayment_mode_references`) and when (``execution_date_time`` as ECS02); the
    threshold takes effect when the mode does."""
    threshold = context.parameter("disablement_threshold", int)
    assert isinstance(threshold, int)
    if not -(1 << 31) <= threshold < 1 << 31:
        raise GbcsError("command parameter 'disablement_threshold' out of range")
    activation = _activation_time(context)
    references = prepayment_mode_references(
        twin=_flag(context, "twin"),
        suspend_debt_disabled=_flag(context, "suspend_debt_disabled"),
        suspend_debt_emergency=_flag(context, "suspend_debt_emergency"),
    )
    return (
        dlms.structure(dlms.enum(PREPAYMENT_MODE), dlms.enum(ACCOUNT_STATUS_NEW)),
        Data(dlms.DataType.DOUBLE_LONG, threshold),
        _credit_reference_list(references),
        dlms.octet_string(activation),
        dlms.octet_string(activation),
    )


# ECS01a (1.1.1): the tariff, written to the passive calendar, special days, block thresholds
# and unit charges, activated together
ACTIVITY_CALENDAR_CLASS = 20
ACTIVITY_CALENDAR = bytes.fromhex("00000D0000FF")  # 0-0:13.0.0.255
SEASON_PROFILE_PASSIVE, WEEK_PROFILE_PASSIVE, DAY_PROFILE_PASSIVE = 7, 8, 9
ACTIVATE_PASSIVE_CALENDAR_TIME = 10
SPECIAL_DAYS_CLASS = 11
SPECIAL_DAYS_PASSIVE = bytes.fromhex("00010B0000FF")  # 0-1:11.0.0.255
REGISTER_MONITOR_CLASS = 21
# the block thresholds of TOU rates 1..8: 0-0:16.1.11.255 .. 0-0:16.1.18.255
BLOCK_THRESHOLDS = tuple(bytes([0, 0, 16, 1, 11 + n, 0xFF]) for n in range(8))
THRESHOLDS = 2
TARIFF_SWITCHING = bytes.fromhex("00005E2C0200")  # 0-0:94.44.2.0 (its attribute 4 is TRUE)
CURRENCY_UNITS = bytes.fromhex("00005E2C801D")  # 0-0:94.44.128.29
BLOCK_THRESHOLD_ACTIVATION = bytes.fromhex("00003F0101FF")  # 0-0:63.1.1.255
CHARGE_CLASS = 113
STANDING_CHARGE = bytes.fromhex("0000131404FF")  # 0-0:19.20.4.255
PRIMARY_ELEMENT_CHARGE = bytes.fromhex("0000131400FF")  # 0-0:19.20.0.255
UNIT_CHARGE_PASSIVE, UNIT_CHARGE_ACTIVATION_TIME = 6, 7
TARIFF_SCRIPT_TABLE = bytes.fromhex("00000A0064FF")  # 0-0:10.0.100.255: the tariff switches
BLOCK_SCRIPT_OFFSET = 100  # a day profile's BlockTariffAction n runs script 100 + n
IMPORT_ACTIVE_ENERGY = bytes.fromhex("0100010800FF")  # 1-0:1.8.0.255, what unit charges price
TOU_RATES, BLOCKS, BLOCK_RATES = 48, 4, 8  # the price matrix: 48 TOU prices, 4 x 8 blocks
UNSPECIFIED = 0xFF
NO_THRESHOLD = 0xFFFFFFFF


@dataclass(frozen=True)
class TariffDate:
    """A calendar date any of whose fields may be "not specified" (None: every year, ...)."""

    year: int | None
    month: int | None
    day: int | None
    weekday: int | None = None

    def encode(self) -> bytes:
        """The 5-byte DLMS date (FFFF / FF for an unspecified field)."""
        year = 0xFFFF if self.year is None else self.year
        rest = (self.month, self.day, self.weekday)
        return year.to_bytes(2, "big") + bytes(UNSPECIFIED if v is None else v for v in rest)

    def at_midnight(self) -> bytes:
        """The 12-byte DLMS date-time of the date's start (a season's start)."""
        return self.encode() + bytes(4) + IMMEDIATE_DATE_TIME[-3:]


@dataclass(frozen=True)
class DayProfile:
    """One day of a switching table: (start time (h, m, s), script selector) actions."""

    day_id: int
    actions: tuple[tuple[tuple[int, int, int], int], ...]


@dataclass(frozen=True)
class Tariff:
    """An ESME's import tariff as ECS01a writes it (prices in the currency's minor units
    times 10^scale, thresholds in Wh). ``tou_prices[n-1]`` is TOU rate n's price;
    ``block_prices[(rate, block)]`` a block tariff's price (rate 1..8, block 1..4)."""

    seasons: tuple[tuple[bytes, TariffDate, int], ...]  # name, start, week id
    weeks: tuple[tuple[int, tuple[int, ...]], ...]  # week id, the 7 day ids Monday first
    days: tuple[DayProfile, ...]
    special_days: tuple[tuple[TariffDate, int], ...]  # date, day id
    thresholds: tuple[tuple[int, ...], ...]  # per TOU rate 1..8
    standing_charge: int
    standing_charge_scale: int
    price_scale: int
    tou_prices: tuple[int, ...] = ()
    block_prices: tuple[tuple[tuple[int, int], int], ...] = ()


def _price_matrix(tariff: Tariff) -> Data:
    """The primary element's unit charge: 48 TOU prices (index 1..0x30), then the blocks
    (index 0xA1.. for block 1 of rates 1..8, 0xB1.. block 2, ...)."""
    prices = {n + 1: p for n, p in enumerate(tariff.tou_prices)}
    blocks = dict(tariff.block_prices)
    if len(prices) > TOU_RATES or any(
        not (1 <= r <= BLOCK_RATES and 1 <= b <= BLOCKS) for r, b in blocks
    ):
        raise GbcsError("tariff prices outside the 48 TOU rates or the 4 x 8 block matrix")
    entries = [(n, prices.get(n, 0)) for n in range(1, TOU_RATES + 1)]
    entries += [
        (0xA0 + 0x10 * (block - 1) + rate, blocks.get((rate, block), 0))
        for block in range(1, BLOCKS + 1)
        for rate in range(1, BLOCK_RATES + 1)
    ]
    return dlms.array(
        *(dlms.structure(dlms.octet_string(bytes([i])), _long(p)) for i, p in entries)
    )


def _long(value: int) -> Data:
    if not -(1 << 15) <= value < 1 << 15:
        raise GbcsError(f"price {value} does not fit a DLMS long")
    return Data(dlms.DataType.LONG, value)


def _unit_charge(commodity_scale: int, price_scale: int, reference: Data, prices: Data) -> Data:
    return dlms.structure(
        dlms.structure(dlms.integer(commodity_scale), dlms.integer(price_scale)),
        reference,
        prices,
    )


def tariff_items(tariff: Tariff) -> dict[str, Data]:
    """The DLMS values of ``tariff`` by what they hold: ``seasons``, ``weeks``, ``days``,
    ``special_days``, ``thresholds`` (one array per TOU rate), ``standing_charge`` and
    ``prices`` (unit charges). ECS01a writes them to the passive objects; ECS24 reads the
    active ones."""
    if len(tariff.thresholds) != BLOCK_RATES:
        raise GbcsError("a tariff has block thresholds for 8 TOU rates")
    seasons = dlms.array(
        *(
            dlms.structure(
                dlms.octet_string(name),
                dlms.octet_string(start.at_midnight()),
                dlms.octet_string(bytes([week])),
            )
            for name, start, week in tariff.seasons
        )
    )
    weeks = dlms.array(
        *(
            dlms.structure(dlms.octet_string(bytes([week])), *(dlms.unsigned(d) for d in days))
            for week, days in tariff.weeks
        )
    )
    days = dlms.array(
        *(
            dlms.structure(
                dlms.unsigned(day.day_id),
                dlms.array(
                    *(
                        dlms.structure(
                            dlms.octet_string(bytes([h, m, sec, 0])),
                            dlms.octet_string(TARIFF_SCRIPT_TABLE),
                            dlms.long_unsigned(selector),
                        )
                        for (h, m, sec), selector in day.actions
                    )
                ),
            )
            for day in tariff.days
        )
    )
    special = dlms.array(
        *(
            dlms.structure(
                dlms.long_unsigned(n), dlms.octet_string(date.encode()), dlms.unsigned(day)
            )
            for n, (date, day) in enumerate(tariff.special_days, start=1)
        )
    )
    return {
        "seasons": seasons,
        "weeks": weeks,
        "days": days,
        "special_days": special,
        "standing_charge": _unit_charge(
            0,
            tariff.standing_charge_scale,
            dlms.structure(dlms.long_unsigned(0), dlms.octet_string(bytes(6)), dlms.integer(0)),
            dlms.array(dlms.structure(dlms.octet_string(b""), _long(tariff.standing_charge))),
        ),
        "prices": _unit_charge(
            3,
            tariff.price_scale,
            dlms.structure(
                dlms.long_unsigned(3), dlms.octet_string(IMPORT_ACTIVE_ENERGY), dlms.integer(2)
            ),
            _price_matrix(tariff),
        ),
    }


def tariff_thresholds(tariff: Tariff, *, pad: bool = False) -> tuple[Data, ...]:
    """The block thresholds of each TOU rate (``pad``: to the 3 a 4-block rate has, with
    the "no threshold" maximum, as the ESME reports its active thresholds)."""
    rates = tariff.thresholds
    if pad:
        rates = tuple((*r, *(NO_THRESHOLD,) * (BLOCKS - 1 - len(r))) for r in rates)
    return tuple(dlms.array(*(dlms.double_long_unsigned(t) for t in r)) for r in rates)


def _ecs01a_data(context: CommandContext) -> tuple[Data, ...]:
    """Set the import tariff (``tariff``, a :class:`Tariff`) now, at ``execution_date_time``
    or (year 3000) cancel a pending one."""
    tariff = context.parameter("tariff", Tariff)
    assert isinstance(tariff, Tariff)
    items = tariff_items(tariff)
    activation = dlms.octet_string(_activation_time(context))
    return (
        items["seasons"],
        items["weeks"],
        items["days"],
        items["special_days"],
        *tariff_thresholds(tariff),
        dlms.boolean(True),
        items["standing_charge"],
        items["prices"],
        *(activation,) * 6,
    )


_ECS01A_SPECS = (
    *(
        RequestSpec(AccessKind.SET, ACTIVITY_CALENDAR_CLASS, ACTIVITY_CALENDAR, attribute)
        for attribute in (SEASON_PROFILE_PASSIVE, WEEK_PROFILE_PASSIVE, DAY_PROFILE_PASSIVE)
    ),
    RequestSpec(AccessKind.SET, SPECIAL_DAYS_CLASS, SPECIAL_DAYS_PASSIVE, VALUE),
    *(RequestSpec(AccessKind.SET, REGISTER_MONITOR_CLASS, o, THRESHOLDS) for o in BLOCK_THRESHOLDS),
    RequestSpec(AccessKind.SET, DISABLEMENT_THRESHOLD_CLASS, TARIFF_SWITCHING, THRESHOLD_VALUE),
    RequestSpec(AccessKind.SET, CHARGE_CLASS, STANDING_CHARGE, UNIT_CHARGE_PASSIVE),
    RequestSpec(AccessKind.SET, CHARGE_CLASS, PRIMARY_ELEMENT_CHARGE, UNIT_CHARGE_PASSIVE),
    RequestSpec(
        AccessKind.SET, ACTIVITY_CALENDAR_CLASS, ACTIVITY_CALENDAR, ACTIVATE_PASSIVE_CALENDAR_TIME
    ),
    *(
        RequestSpec(AccessKind.SET, DISABLEMENT_THRESHOLD_CLASS, o, THRESHOLD_ACTIVATION_TIME)
        for o in (CURRENCY_UNITS, TARIFF_SWITCHING)
    ),
    *(
        RequestSpec(AccessKind.SET, CHARGE_CLASS, o, UNIT_CHARGE_ACTIVATION_TIME)
        for o in (STANDING_CHARGE, PRIMARY_ELEMENT_CHARGE)
    ),
    RequestSpec(
        AccessKind.SET,
        DISABLEMENT_THRESHOLD_CLASS,
        BLOCK_THRESHOLD_ACTIVATION,
        THRESHOLD_ACTIVATION_TIME,
    ),
)


# ECS24 (4.11.1) reads the tariff in force: the active counterparts of what ECS01a writes
REGISTER_CLASS = 3
TARIFF_CURRENCY = bytes.fromhex("00005E2C0107")  # 0-0:94.44.1.7
SPECIAL_DAYS_ACTIVE = bytes.fromhex("00000B0000FF")  # 0-0:11.0.0.255
ACTIVE_BLOCK_THRESHOLDS = tuple(bytes([0, 0, 16, 0, 11 + n, 0xFF]) for n in range(8))
SEASON_PROFILE_ACTIVE, WEEK_PROFILE_ACTIVE, DAY_PROFILE_ACTIVE = 3, 4, 5
UNIT_CHARGE_ACTIVE = 5
SCALER_UNIT = 3
ECS24_SPECS = (
    RequestSpec(AccessKind.GET, REGISTER_CLASS, TARIFF_CURRENCY, VALUE),
    RequestSpec(AccessKind.GET, REGISTER_CLASS, TARIFF_CURRENCY, SCALER_UNIT),
    *(
        RequestSpec(AccessKind.GET, ACTIVITY_CALENDAR_CLASS, ACTIVITY_CALENDAR, attribute)
        for attribute in (SEASON_PROFILE_ACTIVE, WEEK_PROFILE_ACTIVE, DAY_PROFILE_ACTIVE)
    ),
    RequestSpec(AccessKind.GET, SPECIAL_DAYS_CLASS, SPECIAL_DAYS_ACTIVE, VALUE),
    *(
        RequestSpec(AccessKind.GET, REGISTER_MONITOR_CLASS, o, THRESHOLDS)
        for o in ACTIVE_BLOCK_THRESHOLDS
    ),
    RequestSpec(AccessKind.GET, DISABLEMENT_THRESHOLD_CLASS, TARIFF_SWITCHING, VALUE),
    RequestSpec(AccessKind.GET, CHARGE_CLASS, STANDING_CHARGE, UNIT_CHARGE_ACTIVE),
    RequestSpec(AccessKind.GET, CHARGE_CLASS, PRIMARY_ELEMENT_CHARGE, UNIT_CHARGE_ACTIVE),
)


# ECS34 (6.12): the instantaneous power thresholds (W) between low/medium and medium/high
POWER_THRESHOLDS = bytes.fromhex("0000100000FF")  # 0-0:16.0.0.255, a register monitor


def _power_thresholds(context: CommandContext) -> tuple[Data, ...]:
    low = context.parameter("low_medium_power_threshold", int)
    high = context.parameter("medium_high_power_threshold", int)
    assert isinstance(low, int) and isinstance(high, int)
    if not 0 <= low <= 0xFFFFFFFF or not 0 <= high <= 0xFFFFFFFF:
        raise GbcsError("power thresholds are double-long-unsigned watts")
    return (dlms.array(dlms.double_long_unsigned(low), dlms.double_long_unsigned(high)),)


def _execute_script(use_case: str, script: int) -> DlmsCommandLayout:
    return DlmsCommandLayout(
        USE_CASES_BY_NAME[use_case],
        (RequestSpec(AccessKind.ACTION, SCRIPT_TABLE_CLASS, DISCONNECT_SCRIPT_TABLE, EXECUTE),),
        _fixed(dlms.long_unsigned(script)),
    )


def _eui_parameter(context: CommandContext) -> bytes:
    eui = context.parameter("device_id", bytes)
    assert isinstance(eui, bytes)
    if len(eui) != 8:
        raise GbcsError("command parameter 'device_id' is not an EUI-64")
    return eui


def _ccs01_data(context: CommandContext) -> tuple[Data, ...]:
    """Add ``device_id`` (of inventory type ``device_type``, ZigBee ``install_code``) to the
    CHF device log, then open joining for ``join_time_period`` seconds."""
    device_type = context.parameter("device_type", str)
    install_code = context.parameter("install_code", bytes)
    timeout = context.parameter("join_time_period", int)
    assert isinstance(device_type, str) and isinstance(install_code, bytes)
    assert isinstance(timeout, int)
    kind = HAN_DEVICE_TYPES.get(device_type)
    if kind is None:
        raise GbcsError(f"no CHF device log device type for a {device_type}")
    if len(install_code) != INSTALL_CODE_LENGTH:
        raise GbcsError("command parameter 'install_code' is not 16 octets")
    if not 0 <= timeout <= 0xFFFF:
        raise GbcsError("command parameter 'join_time_period' out of range")
    return (
        dlms.structure(
            dlms.octet_string(_eui_parameter(context)),
            dlms.enum(kind),
            dlms.octet_string(install_code),
            dlms.enum(0),
        ),
        dlms.long_unsigned(timeout),
        dlms.boolean(True),
    )


def _ccs02_data(context: CommandContext) -> tuple[Data, ...]:
    """Remove ``device_id`` from the CHF device log."""
    return (dlms.octet_string(_eui_parameter(context)),)


_ECS17B_SPEC = ecs17b_request(0, bytes(8), bytes(8)).specs

LAYOUTS: dict[str, DlmsCommandLayout] = {
    layout.use_case.name: layout
    for layout in (
        DlmsCommandLayout(USE_CASES_BY_NAME["ECS17b"], _ECS17B_SPEC, _ecs17b_data),
        _execute_script("ECS42", SCRIPT_CLOSE_LOAD_SWITCH),
        _execute_script("ECS43", SCRIPT_OPEN_LOAD_SWITCH),
        _execute_script("ECS44", SCRIPT_ARM_LOAD_SWITCH),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS45"],
            (
                RequestSpec(
                    AccessKind.GET, DISCONNECT_CONTROL_CLASS, DISCONNECT_CONTROL, CONTROL_STATE
                ),
            ),
            _fixed(dlms.null()),
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS70"],
            (
                RequestSpec(AccessKind.SET, CLOCK_CLASS, CLOCK, CLOCK_BASE),
                RequestSpec(AccessKind.ACTION, CLOCK_CLASS, CLOCK, PRESET_ADJUSTING_TIME),
                RequestSpec(AccessKind.ACTION, CLOCK_CLASS, CLOCK, ADJUST_TO_PRESET_TIME),
                RequestSpec(AccessKind.GET, CLOCK_CLASS, CLOCK, CLOCK_TIME),
                RequestSpec(AccessKind.GET, CLOCK_CLASS, CLOCK, CLOCK_STATUS),
            ),
            _ecs70_data,
        ),
        _protected_range_read(
            "ECS21a", bytes.fromhex("00002B0205FF"), bytes.fromhex("0000620109FF")
        ),
        _protected_range_read(
            "ECS22b", bytes.fromhex("00002B0207FF"), bytes.fromhex("0000630100FF")
        ),
        _protected_range_read(
            "ECS66", bytes.fromhex("00002B0204FF"), bytes.fromhex("0000630103FF")
        ),
        _log_range_read("ECS35a", bytes.fromhex("0000636200FF")),  # ESME event log
        _log_range_read("ECS35b", bytes.fromhex("0000636201FF")),  # ESME security log
        _log_range_read("ECS35c", bytes.fromhex("0000636200FF")),  # CHF event log
        _log_range_read("ECS35d", bytes.fromhex("0000636201FF")),  # CHF security log
        _log_range_read("ECS35e", bytes.fromhex("0000636204FF")),  # power event log
        _log_range_read("ECS35f", bytes.fromhex("0011636202FF")),  # ALCS event log
        _log_range_read("ECS35g", bytes.fromhex("0011636202FF")),  # auxiliary controller
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS52"],
            (RequestSpec(AccessKind.GET, DATA_CLASS, FIRMWARE_VERSION, VALUE),),
            _fixed(dlms.null()),
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS10"],
            (RequestSpec(AccessKind.SET, DATA_CLASS, SUPPLIER_MESSAGE, VALUE),),
            _octets_parameter("supplier_message"),
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["CS01a"],
            (RequestSpec(AccessKind.ACTION, TOKEN_GATEWAY_CLASS, TOKEN_GATEWAY, ENTER_TOKEN),),
            _octets_parameter("utrn"),
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["CCS01"],
            (
                RequestSpec(
                    AccessKind.ACTION,
                    ZIGBEE_NETWORK_CONTROL_CLASS,
                    ZIGBEE_NETWORK_CONTROL,
                    REGISTER_DEVICE,
                ),
                RequestSpec(
                    AccessKind.SET,
                    ZIGBEE_NETWORK_CONTROL_CLASS,
                    ZIGBEE_NETWORK_CONTROL,
                    JOIN_TIMEOUT,
                ),
                RequestSpec(
                    AccessKind.SET,
                    ZIGBEE_NETWORK_CONTROL_CLASS,
                    ZIGBEE_NETWORK_CONTROL,
                    ENABLE_DISABLE_JOINING,
                ),
            ),
            _ccs01_data,
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["CCS02"],
            (
                RequestSpec(
                    AccessKind.ACTION,
                    ZIGBEE_NETWORK_CONTROL_CLASS,
                    ZIGBEE_NETWORK_CONTROL,
                    UNREGISTER_DEVICE,
                ),
            ),
            _ccs02_data,
        ),
        DlmsCommandLayout(USE_CASES_BY_NAME["ECS01a"], _ECS01A_SPECS, _ecs01a_data),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS24"], ECS24_SPECS, lambda _c: (dlms.null(),) * len(ECS24_SPECS)
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS14"],
            (RequestSpec(AccessKind.SET, DATA_CLASS, PRIVACY_PIN, VALUE),),
            _fixed(dlms.octet_string(b"")),  # an empty PIN: protection off
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS34"],
            (RequestSpec(AccessKind.SET, REGISTER_MONITOR_CLASS, POWER_THRESHOLDS, THRESHOLDS),),
            _power_thresholds,
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS17c"],
            (RequestSpec(AccessKind.GET, DATA_CLASS, ACTIVE_POWER_IMPORT, VALUE),),
            _fixed(dlms.null()),
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS15a"],
            (RequestSpec(AccessKind.ACTION, PROFILE_GENERIC_CLASS, ESME_EVENT_LOG, RESET),),
            _fixed(dlms.integer(0)),
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS39a"],
            (RequestSpec(AccessKind.SET, DATA_CLASS, IMPORT_MPXN, VALUE),),
            _octets_parameter("import_mpxn"),
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS26j"],
            (RequestSpec(AccessKind.GET, ACCOUNT_CLASS, ACCOUNT_ACTIVE, ACCOUNT_MODE_AND_STATUS),),
            _fixed(dlms.null()),
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS03"],
            (
                RequestSpec(AccessKind.SET, ACCOUNT_CLASS, ACCOUNT, ACCOUNT_MODE_AND_STATUS),
                RequestSpec(
                    AccessKind.SET,
                    DISABLEMENT_THRESHOLD_CLASS,
                    DISABLEMENT_THRESHOLD,
                    THRESHOLD_VALUE,
                ),
                RequestSpec(AccessKind.SET, ACCOUNT_CLASS, ACCOUNT, CREDIT_REFERENCE_LIST),
                RequestSpec(
                    AccessKind.SET,
                    DISABLEMENT_THRESHOLD_CLASS,
                    DISABLEMENT_THRESHOLD,
                    THRESHOLD_ACTIVATION_TIME,
                ),
                RequestSpec(AccessKind.SET, ACCOUNT_CLASS, ACCOUNT, ACCOUNT_ACTIVATION_TIME),
            ),
            _ecs03_data,
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS02"],
            tuple(
                RequestSpec(AccessKind.SET, ACCOUNT_CLASS, ACCOUNT, attribute)
                for attribute in (
                    ACCOUNT_MODE_AND_STATUS,
                    CREDIT_REFERENCE_LIST,
                    ACCOUNT_ACTIVATION_TIME,
                )
            ),
            _ecs02_data,
        ),
    )
}


# -- ESME prepayment: ECS07 (2.3) debt, ECS08a (2.1) configuration, ECS09 (2.5) emergency
# credit, ECS26a (4.13) their read. Charges 0-0:19.20.1/2.255 are the time debt registers,
# 0-0:19.20.3.255 the payment-based debt register; 0-0:19.10.1.255 the emergency credit.
TIME_DEBT_CHARGES = (_CHARGE[1], _CHARGE[2])
PAYMENT_DEBT_CHARGE = _CHARGE[3]
UNIT_CHARGE_PASSIVE, CHARGE_PERIOD, CHARGE_PROPORTION = 6, 8, 13  # charge attributes
ACTIVATE_PASSIVE_UNIT_CHARGE, UPDATE_TOTAL_AMOUNT_REMAINING = 2, 4  # charge methods
CREDIT_CLASS = 112
EMERGENCY_CREDIT = PREPAYMENT_CREDITS[1]  # 0-0:19.10.1.255
INVOKE_CREDIT = 3  # credit method
PRESET_CREDIT_AMOUNT, CREDIT_AVAILABLE_THRESHOLD = 9, 10  # credit attributes
LOW_CREDIT_THRESHOLD_ATTRIBUTE, MAX_PROVISION, MAX_PROVISION_PERIOD = 16, 18, 19  # account
DEBT_RECOVERY_PERIODS = {"HOURLY": 3600, "DAILY": 86400}  # a debt recovery rate's period (s)
# the object a time debt's unit charge prices: none (an amount per period, not per unit)
NO_COMMODITY = dlms.structure(dlms.long_unsigned(0), dlms.octet_string(bytes(6)), dlms.integer(0))
MAX_DOUBLE_LONG = (1 << 31) - 1


def debt_recovery_rate(price_scale: int, rate: int) -> Data:
    """A time debt register's unit charge: ``rate`` (times 10^``price_scale``) per period."""
    return _unit_charge(
        0,
        price_scale,
        NO_COMMODITY,
        dlms.array(dlms.structure(dlms.octet_string(b""), _long(rate))),
    )


def _int_parameter(context: CommandContext, name: str, low: int, high: int) -> int:
    value = context.parameter(name, int)
    assert isinstance(value, int)
    if not low <= value <= high:
        raise GbcsError(f"command parameter {name!r} out of range: {value}")
    return value


def _ecs07_data(context: CommandContext) -> tuple[Data, ...]:
    """Manage debt: for time debt registers 1 and 2 their recovery rate
    (``debt_recovery_rate_<n>`` times 10^``debt_recovery_price_scale_<n>`` per
    ``debt_recovery_period_<n>`` seconds) and an adjustment (``time_debt_register_<n>``), the
    payment-based debt's share of each payment (``debt_recovery_per_payment``, in hundredths
    of a percent) and adjustment (``payment_debt_register``); amounts in the meter's
    currency units."""
    rates, periods, adjustments = [], [], []
    for n in (1, 2):
        price_scale = _int_parameter(context, f"debt_recovery_price_scale_{n}", -128, 127)
        rate = _int_parameter(context, f"debt_recovery_rate_{n}", -(1 << 15), (1 << 15) - 1)
        rates.append(debt_recovery_rate(price_scale, rate))
        period = _int_parameter(context, f"debt_recovery_period_{n}", 1, (1 << 32) - 1)
        periods.append(dlms.double_long_unsigned(period))
        amount = _int_parameter(context, f"time_debt_register_{n}", -(1 << 31), MAX_DOUBLE_LONG)
        adjustments.append(dlms.double_long(amount))
    proportion = _int_parameter(context, "debt_recovery_per_payment", 0, 10_000)
    payment = _int_parameter(context, "payment_debt_register", -(1 << 31), MAX_DOUBLE_LONG)
    return (
        *rates,
        dlms.long_unsigned(proportion),
        *periods,
        dlms.integer(0),  # activate the passive unit charges: their parameter is unused
        dlms.integer(0),
        dlms.double_long(payment),
        *adjustments,
    )


_ECS07_SPECS = (
    *(
        RequestSpec(AccessKind.SET, CHARGE_CLASS, charge, UNIT_CHARGE_PASSIVE)
        for charge in TIME_DEBT_CHARGES
    ),
    RequestSpec(AccessKind.SET, CHARGE_CLASS, PAYMENT_DEBT_CHARGE, CHARGE_PROPORTION),
    *(RequestSpec(AccessKind.SET, CHARGE_CLASS, c, CHARGE_PERIOD) for c in TIME_DEBT_CHARGES),
    *(
        RequestSpec(AccessKind.ACTION, CHARGE_CLASS, charge, ACTIVATE_PASSIVE_UNIT_CHARGE)
        for charge in TIME_DEBT_CHARGES
    ),
    *(
        RequestSpec(AccessKind.ACTION, CHARGE_CLASS, charge, UPDATE_TOTAL_AMOUNT_REMAINING)
        for charge in (PAYMENT_DEBT_CHARGE, *TIME_DEBT_CHARGES)
    ),
)

# ECS08a's GBCS registers (class 9000: attribute 4 the value, 6 its activation date-time)
MAX_METER_BALANCE = bytes.fromhex("00005E2C0214")  # 0-0:94.44.2.20
MAX_CREDIT_THRESHOLD = bytes.fromhex("00005E2C020A")  # 0-0:94.44.2.10
DEBT_RECOVERY_RATE_CAP = bytes.fromhex("00005E2C800C")  # 0-0:94.44.128.12
DEBT_RECOVERY_RATE_CAP_PERIOD = bytes.fromhex("00005E2C800D")  # 0-0:94.44.128.13
LOW_CREDIT_THRESHOLD = bytes.fromhex("00005E2C8009")  # 0-0:94.44.128.9
EMERGENCY_CREDIT_LIMIT = bytes.fromhex("00005E2C8002")  # 0-0:94.44.128.2
EMERGENCY_CREDIT_THRESHOLD = bytes.fromhex("00005E2C8003")  # 0-0:94.44.128.3
NON_DISABLEMENT_SPECIAL_DAYS = bytes.fromhex("00005E2C801F")  # 0-0:94.44.128.31 (activation)
NON_DISABLEMENT_CALENDAR = bytes.fromhex("00005E2C801C")  # 0-0:94.44.128.28 (activation)
SPECIAL_DAYS_NON_DISABLEMENT_PASSIVE = bytes.fromhex("00010B0002FF")  # 0-1:11.0.2.255
SPECIAL_DAYS_NON_DISABLEMENT = bytes.fromhex("00000B0002FF")  # 0-0:11.0.2.255 (in force)
SCHEDULE_CLASS = 10
NON_DISABLEMENT_SCHEDULE_PASSIVE = bytes.fromhex("00010C0001FF")  # 0-1:12.0.1.255
NON_DISABLEMENT_SCHEDULE = bytes.fromhex("00000C0001FF")  # 0-0:12.0.1.255 (in force)
ENTRIES = 2  # special days table / schedule attribute
DEBT_RECOVERY_CAP_PERIOD_SECONDS = 604800  # the rate cap applies per week
# a non-disablement schedule entry runs the disconnect script table's START or STOP script
NON_DISABLEMENT_SCRIPTS = {"START": 32, "STOP": 33}
SCHEDULE_ANY_TIME = 0xFFFF  # validity window: the entry runs whenever it was missed
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class NonDisablementEntry:
    """One non-disablement schedule entry: START or STOP (``script``) at ``switch_time``
    (h, m, s) on the ``weekdays`` (0 Monday .. 6 Sunday) and the ``special_days`` (indexes
    1.. of the non-disablement special days) between ``start`` and ``end``."""

    script: str
    switch_time: tuple[int, int, int]
    start: TariffDate
    end: TariffDate
    weekdays: tuple[int, ...] = ()
    special_days: tuple[int, ...] = ()


def _bits(count: int, set_bits: tuple[int, ...]) -> Data:
    """A bit-string of ``count`` bits, bit i (most significant first) set for i in
    ``set_bits``."""
    value = 0
    for bit in set_bits:
        if not 0 <= bit < count:
            raise GbcsError(f"bit {bit} outside a {count}-bit string")
        value |= 1 << (8 * ((count + 7) // 8) - 1 - bit)
    return dlms.bit_string(count, value.to_bytes((count + 7) // 8, "big"))


def non_disablement_calendar(
    special_days: tuple[TariffDate, ...], entries: tuple[NonDisablementEntry, ...]
) -> tuple[Data, Data]:
    """The non-disablement special days table entries and schedule entries ECS08a writes
    (and ECS26a reads)."""
    days = dlms.array(
        *(
            dlms.structure(dlms.long_unsigned(n), dlms.octet_string(d.encode()), dlms.unsigned(n))
            for n, d in enumerate(special_days, 1)
        )
    )
    schedule = []
    for n, entry in enumerate(entries, 1):
        script = NON_DISABLEMENT_SCRIPTS.get(entry.script)
        if script is None:
            raise GbcsError(f"non-disablement script {entry.script!r} is neither START nor STOP")
        schedule.append(
            dlms.structure(
                dlms.long_unsigned(n),
                dlms.boolean(True),
                dlms.octet_string(DISCONNECT_SCRIPT_TABLE),
                dlms.long_unsigned(script),
                dlms.octet_string(bytes([*entry.switch_time, 0])),
                dlms.long_unsigned(SCHEDULE_ANY_TIME),
                _bits(len(WEEKDAYS), entry.weekdays),
                _bits(len(special_days), tuple(d - 1 for d in entry.special_days)),
                dlms.octet_string(entry.start.encode()),
                dlms.octet_string(entry.end.encode()),
            )
        )
    return days, dlms.array(*schedule)


# ECS08a's registers with an activation date-time, in the order the command sets them
_ECS08A_REGISTERS = (
    MAX_METER_BALANCE,
    MAX_CREDIT_THRESHOLD,
    DEBT_RECOVERY_RATE_CAP,
    DEBT_RECOVERY_RATE_CAP_PERIOD,
    LOW_CREDIT_THRESHOLD,
    EMERGENCY_CREDIT_LIMIT,
    EMERGENCY_CREDIT_THRESHOLD,
)


def _register(instance: bytes, attribute: int) -> RequestSpec:
    return RequestSpec(AccessKind.SET, DISABLEMENT_THRESHOLD_CLASS, instance, attribute)


ECS08A_SPECS = (
    RequestSpec(AccessKind.SET, SPECIAL_DAYS_CLASS, SPECIAL_DAYS_NON_DISABLEMENT_PASSIVE, ENTRIES),
    _register(MAX_METER_BALANCE, THRESHOLD_VALUE),
    _register(MAX_CREDIT_THRESHOLD, THRESHOLD_VALUE),
    RequestSpec(AccessKind.SET, SCHEDULE_CLASS, NON_DISABLEMENT_SCHEDULE_PASSIVE, ENTRIES),
    _register(DEBT_RECOVERY_RATE_CAP, THRESHOLD_VALUE),
    _register(DEBT_RECOVERY_RATE_CAP_PERIOD, THRESHOLD_VALUE),
    _register(LOW_CREDIT_THRESHOLD, THRESHOLD_VALUE),
    _register(EMERGENCY_CREDIT_LIMIT, THRESHOLD_VALUE),
    _register(NON_DISABLEMENT_SPECIAL_DAYS, THRESHOLD_ACTIVATION_TIME),
    _register(EMERGENCY_CREDIT_THRESHOLD, THRESHOLD_VALUE),
    *(_register(r, THRESHOLD_ACTIVATION_TIME) for r in _ECS08A_REGISTERS),
    _register(NON_DISABLEMENT_CALENDAR, THRESHOLD_ACTIVATION_TIME),
)


def _ecs08a_data(context: CommandContext) -> tuple[Data, ...]:
    """Update the prepayment configuration: ``max_meter_balance``, ``max_credit_threshold``,
    ``debt_recovery_rate_cap`` (per week), ``low_credit_threshold``,
    ``emergency_credit_limit``, ``emergency_credit_threshold`` (currency units), the
    non-disablement calendar (``non_disablement_special_days``, TariffDates, and
    ``non_disablement_schedule``, NonDisablementEntry) and when (``execution_date_time``
    as ECS02)."""
    value = functools.partial(_int_parameter, context, low=-(1 << 31), high=MAX_DOUBLE_LONG)
    special_days = context.parameters.get("non_disablement_special_days", ())
    entries = context.parameters.get("non_disablement_schedule", ())
    if not isinstance(special_days, tuple | list) or not all(
        isinstance(d, TariffDate) for d in special_days
    ):
        raise GbcsError("command parameter 'non_disablement_special_days' is not dates")
    if not isinstance(entries, tuple | list) or not all(
        isinstance(e, NonDisablementEntry) for e in entries
    ):
        raise GbcsError("command parameter 'non_disablement_schedule' is not schedule entries")
    days, schedule = non_disablement_calendar(tuple(special_days), tuple(entries))
    activation = dlms.octet_string(_activation_time(context))
    return (
        days,
        dlms.double_long(value("max_meter_balance")),
        dlms.double_long(value("max_credit_threshold")),
        schedule,
        dlms.long_unsigned(_int_parameter(context, "debt_recovery_rate_cap", 0, 0xFFFF)),
        dlms.double_long(DEBT_RECOVERY_CAP_PERIOD_SECONDS),
        dlms.double_long(value("low_credit_threshold")),
        dlms.double_long(value("emergency_credit_limit")),
        activation,
        dlms.double_long(value("emergency_credit_threshold")),
        *(activation for _ in _ECS08A_REGISTERS),
        activation,
    )


def _get(class_id: int, instance: bytes, attribute: int) -> RequestSpec:
    return RequestSpec(AccessKind.GET, class_id, instance, attribute)


# ECS26a reads the prepayment configuration in force, in the RTDS command's order (it asks
# each time debt register's unit charge twice: once for the rate, once for its scale)
ECS26A_SPECS = (
    _get(CHARGE_CLASS, TIME_DEBT_CHARGES[0], UNIT_CHARGE_ACTIVE),
    _get(SPECIAL_DAYS_CLASS, SPECIAL_DAYS_NON_DISABLEMENT, ENTRIES),
    _get(CHARGE_CLASS, TIME_DEBT_CHARGES[0], CHARGE_PERIOD),
    _get(CHARGE_CLASS, TIME_DEBT_CHARGES[0], UNIT_CHARGE_ACTIVE),
    _get(CHARGE_CLASS, TIME_DEBT_CHARGES[1], UNIT_CHARGE_ACTIVE),
    _get(CHARGE_CLASS, TIME_DEBT_CHARGES[1], CHARGE_PERIOD),
    _get(CHARGE_CLASS, TIME_DEBT_CHARGES[1], UNIT_CHARGE_ACTIVE),
    _get(CHARGE_CLASS, PAYMENT_DEBT_CHARGE, CHARGE_PROPORTION),
    _get(DISABLEMENT_THRESHOLD_CLASS, MAX_CREDIT_THRESHOLD, VALUE),
    _get(REGISTER_MONITOR_CLASS, bytes.fromhex("0000100001FF"), THRESHOLDS),
    _get(DISABLEMENT_THRESHOLD_CLASS, MAX_METER_BALANCE, VALUE),
    _get(ACCOUNT_CLASS, ACCOUNT_ACTIVE, LOW_CREDIT_THRESHOLD_ATTRIBUTE),
    _get(ACCOUNT_CLASS, ACCOUNT_ACTIVE, MAX_PROVISION),
    _get(ACCOUNT_CLASS, ACCOUNT_ACTIVE, MAX_PROVISION_PERIOD),
    _get(CREDIT_CLASS, EMERGENCY_CREDIT, PRESET_CREDIT_AMOUNT),
    _get(CREDIT_CLASS, EMERGENCY_CREDIT, CREDIT_AVAILABLE_THRESHOLD),
    _get(SCHEDULE_CLASS, NON_DISABLEMENT_SCHEDULE, ENTRIES),
    _get(ACCOUNT_CLASS, ACCOUNT_ACTIVE, CREDIT_REFERENCE_LIST),
)

LAYOUTS |= {
    layout.use_case.name: layout
    for layout in (
        DlmsCommandLayout(USE_CASES_BY_NAME["ECS07"], _ECS07_SPECS, _ecs07_data),
        DlmsCommandLayout(USE_CASES_BY_NAME["ECS08a"], ECS08A_SPECS, _ecs08a_data),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS09"],
            (RequestSpec(AccessKind.ACTION, CREDIT_CLASS, EMERGENCY_CREDIT, INVOKE_CREDIT),),
            _fixed(dlms.integer(0)),
        ),
        DlmsCommandLayout(
            USE_CASES_BY_NAME["ECS26a"], ECS26A_SPECS, lambda _c: (dlms.null(),) * len(ECS26A_SPECS)
        ),
        # the prepayment daily read log 0-0:98.1.8.255, through data protection 0-0:43.2.6.255
        _protected_range_read(
            "ECS21b", bytes.fromhex("00002B0206FF"), bytes.fromhex("0000620108FF")
        ),
    )
}


@dataclass(frozen=True)
class Asn1CommandLayout:
    """One use case's DER command: the schema :mod:`dccsim.gbcs.der` holds for its message
    code, and its fields computed from the context."""

    use_case: UseCase
    fields: Callable[[CommandContext], Mapping[str, object]]

    @property
    def schema(self) -> der.Asn1Field:
        schema = der.ASN1_SCHEMAS.get((self.use_case.message_code, self.use_case.cra_flag))
        if schema is None:
            raise GbcsError(f"no ASN.1 schema for {self.use_case.name}")
        return schema

    def encode(self, context: CommandContext) -> bytes:
        return der.encode_with(self.schema, self.fields(context))


# GBCS GeneralizedTime: UTC to the second; 9999-12-31T23:59:59 cancels a future-dated command
ASN1_CANCELLATION_TIME = "99991231235959Z"
MANUFACTURER_IMAGE_HASH_LENGTH = 32  # SHA-256


def asn1_time(value: dt.datetime) -> str:
    return f"{_utc(value):%Y%m%d%H%M%S}Z"


def parse_asn1_time(text: str) -> dt.datetime:
    """A GBCS GeneralizedTime (``YYYYMMDDhhmmssZ``) as an aware UTC datetime."""
    try:
        return dt.datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise GbcsError(f"bad GeneralizedTime {text!r}") from exc


def _asn1_execution_time(context: CommandContext) -> dict[str, object]:
    """The optional execution_date_time of a future-datable DER command (absent: now)."""
    when = context.parameters.get("execution_date_time")
    if when is None:
        return {}
    if not isinstance(when, dt.datetime):
        raise GbcsError("command parameter 'execution_date_time' must be a datetime")
    if _utc(when).year >= CANCELLATION_YEAR:
        return {"execution_date_time": ASN1_CANCELLATION_TIME}
    return {"execution_date_time": asn1_time(when)}


def _cs06_fields(context: CommandContext) -> Mapping[str, object]:
    """Activate the firmware image whose SHA-256 is ``firmware_hash``, now or at
    ``execution_date_time``; the originator counter is repeated inside the payload."""
    image_hash = context.parameter("firmware_hash", bytes)
    assert isinstance(image_hash, bytes)
    if len(image_hash) != MANUFACTURER_IMAGE_HASH_LENGTH:
        raise GbcsError("command parameter 'firmware_hash' is not 32 octets")
    return {
        "manufacturer_image_hash": image_hash,
        "originator_counter": context.counter,
        **_asn1_execution_time(context),
    }


def _gcs28_fields(context: CommandContext) -> Mapping[str, object]:
    """GCS28 (6.11, 8.1.1 to a GSME): the time is valid from ``current_date_time`` for
    ``tolerance_period`` seconds; the GSME sets its clock only within that window."""
    start = _datetime(context, "current_date_time")
    tolerance = context.parameter("tolerance_period", int)
    assert isinstance(tolerance, int)
    if tolerance < 0:
        raise GbcsError("a negative tolerance period")
    end = start + dt.timedelta(seconds=tolerance)
    return {"validity_start": asn1_time(start), "validity_end": asn1_time(end)}


# CS02b/CS02g (6.15.1): trust anchor cells are (remote party role, key usage, cell usage)
ROLE_SUPPLIER, ROLE_NETWORK_OPERATOR, ROLE_LOAD_CONTROLLER = 2, 3, 8
KEY_USAGE_DIGITAL_SIGNATURE = b"\x07\x80"  # BIT STRING content: digitalSignature
KEY_USAGE_KEY_AGREEMENT = b"\x03\x08"  # BIT STRING content: keyAgreement
CELL_USAGE_PREPAYMENT_TOP_UP = 1  # absent: management (the DEFAULT)
SEQ_NUMBER_USAGE_PREPAYMENT_TOP_UP = 0
TRUST_ANCHOR_CELL = der.sequence(
    "trust_anchor_cell",
    der.integer("remote_party_role"),
    der.bits("key_usage"),
    der.integer("cell_usage", optional=True),
)
REPLACEMENTS = der.sequence_of(
    "replacements",
    der.sequence("replacement", der.CERTIFICATE, TRUST_ANCHOR_CELL),
)
SPECIALIST_FLOOR_SEQ_NUMBERS = der.sequence_of(
    "new_remote_party_specialist_floor_seq_numbers",
    der.sequence("specialist", der.integer("usage"), der.integer("seq_number")),
    tag=0xA5,
)
SEQ_NUMBER_CHANGE = der.sequence(
    "change",
    der.integer("remote_party_role"),
    der.integer("floor_seq_number"),
    der.sequence_of(
        "specialist_floor_seq_numbers",
        der.sequence("specialist", der.integer("usage"), der.integer("seq_number")),
        optional=True,
    ),
)
OTHER_SEQ_NUMBER_CHANGES = der.sequence_of(
    "other_remote_party_seq_number_changes", SEQ_NUMBER_CHANGE, tag=0xA6
)
# in a CS02b/CS02g response (the execution outcome)
SEQ_NUMBER_CHANGES = der.sequence_of("remote_party_seq_number_changes", SEQ_NUMBER_CHANGE)
REPLACEMENT_OUTCOME = der.sequence(
    "replacement_outcome",
    TRUST_ANCHOR_CELL,
    der.Asn1Field("status", "integer", der.ENUMERATED),
    der.octets("existing_subject_unique_id"),
    der.octets("existing_subject_key_id"),
    der.octets("replacing_subject_unique_id"),
    der.octets("replacing_subject_key_id"),
)
# the parts of a credentials update that the generic DER schema leaves as DER, and how to
# read them (for describing a message)
CREDENTIALS_PARTS: dict[str, der.Asn1Field] = {
    "replacements": REPLACEMENTS,
    "new_remote_party_seq_numbers": SPECIALIST_FLOOR_SEQ_NUMBERS,
    "new_seq_numbers": OTHER_SEQ_NUMBER_CHANGES,
    "seq_numbers": SEQ_NUMBER_CHANGES,
}


@dataclass(frozen=True)
class CredentialsReplacement:
    """One 6.15.1 credentials replacement mode: the DUIS RemotePartyRole whose certificates
    are replaced, the GBCS mode number, who authorises it (the originator's role) and where
    the new party's floor seq number goes (its own field, or an "other remote party" change)."""

    use_case: str
    mode: int
    authorising_role: int
    target_role: int
    floor_in_other_changes: bool = False
    # the Transitional CoS's cancellation carries no seq numbers (the RTDS 6.23 vector)
    seq_numbers_when_cancelling: bool = True


KRP_REPLACEMENTS: dict[str, CredentialsReplacement] = {
    "Supplier": CredentialsReplacement("CS02bSupplierBySupplier", 2, ROLE_SUPPLIER, ROLE_SUPPLIER),
    "NetworkOperator": CredentialsReplacement(
        "CS02bNOByNO", 3, ROLE_NETWORK_OPERATOR, ROLE_NETWORK_OPERATOR
    ),
    "LoadController": CredentialsReplacement(
        "CS02gLoadControllerBySupplier",
        11,
        ROLE_SUPPLIER,
        ROLE_LOAD_CONTROLLER,
        floor_in_other_changes=True,
    ),
}
ROLE_TRANSITIONAL_COS = 5
# 6.23: the Transitional CoS Party replaces the Supplier's credentials (the DCC signs)
COS_REPLACEMENT = CredentialsReplacement(
    "CS02bSupplierByTransCoS",
    7,
    ROLE_TRANSITIONAL_COS,
    ROLE_SUPPLIER,
    floor_in_other_changes=True,
    seq_numbers_when_cancelling=False,
)
KRP_BY_USE_CASE = {r.use_case: r for r in (*KRP_REPLACEMENTS.values(), COS_REPLACEMENT)}


def _certificate(context: CommandContext, name: str) -> bytes | None:
    value = context.parameters.get(name)
    if value is not None and not isinstance(value, bytes):
        raise GbcsError(f"command parameter {name!r} must be DER bytes")
    return value


def _optional_int(context: CommandContext, name: str) -> int | None:
    value = context.parameters.get(name)
    if value is not None and not isinstance(value, int):
        raise GbcsError(f"command parameter {name!r} must be an int")
    return value


def _cs02b_fields(use_case: str) -> Callable[[CommandContext], Mapping[str, object]]:
    """Update the credentials of ``use_case``'s remote party: the replacement certificates
    (``digital_signing_certificate``, ``key_agreement_certificate``,
    ``key_agreement_top_up_certificate``, DER), the ``certification_path_certificates``, the
    ``floor_seq_number`` and ``prepayment_top_up_floor_seq_number``,
    ``apply_time_based_cpv_checks`` and the optional ``execution_date_time``."""
    replacement = KRP_BY_USE_CASE[use_case]

    def fields(context: CommandContext) -> Mapping[str, object]:
        control: dict[str, object] = {"authorising_remote_party_role": replacement.mode}
        if not _flag(context, "apply_time_based_cpv_checks"):
            control["authorising_ta_cell_identifier"] = 1  # [1] applyTimeBasedCPVChecks: disapply
        control["ta_cell_identifier"] = {
            "remote_party_role": replacement.authorising_role,
            "key_usage": KEY_USAGE_DIGITAL_SIGNATURE,
        }
        control["originator_counter"] = context.counter
        floor = _optional_int(context, "floor_seq_number")
        top_up_floor = _optional_int(context, "prepayment_top_up_floor_seq_number")
        timing = _asn1_execution_time(context)
        cancelling = timing.get("execution_date_time") == ASN1_CANCELLATION_TIME
        if cancelling and not replacement.seq_numbers_when_cancelling:
            floor = top_up_floor = None
        if replacement.floor_in_other_changes:
            if floor is not None:
                change: dict[str, object] = {
                    "remote_party_role": replacement.target_role,
                    "floor_seq_number": floor,
                }
                if top_up_floor is not None:
                    change["specialist_floor_seq_numbers"] = [
                        {"usage": SEQ_NUMBER_USAGE_PREPAYMENT_TOP_UP, "seq_number": top_up_floor}
                    ]
                control["new_seq_numbers"] = der.encode_with(OTHER_SEQ_NUMBER_CHANGES, [change])
        else:
            if floor is not None:
                control["floor_seq_number"] = floor
            if top_up_floor is not None:
                control["new_remote_party_seq_numbers"] = der.encode_with(
                    SPECIALIST_FLOOR_SEQ_NUMBERS,
                    [{"usage": SEQ_NUMBER_USAGE_PREPAYMENT_TOP_UP, "seq_number": top_up_floor}],
                )
        cells = (
            ("digital_signing_certificate", KEY_USAGE_DIGITAL_SIGNATURE, None),
            ("key_agreement_certificate", KEY_USAGE_KEY_AGREEMENT, None),
            (
                "key_agreement_top_up_certificate",
                KEY_USAGE_KEY_AGREEMENT,
                CELL_USAGE_PREPAYMENT_TOP_UP,
            ),
        )
        replacements = []
        for name, key_usage, cell_usage in cells:
            certificate = _certificate(context, name)
            if certificate is None:
                continue
            cell: dict[str, object] = {
                "remote_party_role": replacement.target_role,
                "key_usage": key_usage,
            }
            if cell_usage is not None:
                cell["cell_usage"] = cell_usage
            replacements.append({"certificate": certificate, "trust_anchor_cell": cell})
        if not replacements:
            raise GbcsError("a credentials update needs at least one replacement certificate")
        path = context.parameters.get("certification_path_certificates", [])
        if not isinstance(path, list) or not all(isinstance(c, bytes) for c in path):
            raise GbcsError("command parameter 'certification_path_certificates' must be DER")
        return {
            "authorising_remote_party_control": control,
            "replacements": der.encode_with(REPLACEMENTS, replacements),
            "certification_path_certificates": path,
            **timing,
        }

    return fields


ASN1_LAYOUTS: dict[str, Asn1CommandLayout] = {
    layout.use_case.name: layout
    for layout in (
        Asn1CommandLayout(USE_CASES_BY_NAME["CS06"], _cs06_fields),
        Asn1CommandLayout(USE_CASES_BY_NAME["GCS28"], _gcs28_fields),
        *(
            Asn1CommandLayout(USE_CASES_BY_NAME[name], _cs02b_fields(name))
            for name in KRP_BY_USE_CASE
        ),
    )
}

# CS03 Join (8.7.1, 8.7.2): the target joins ``other_device_id``, of inventory type
# ``other_device_type``; Method C also carries ``other_device_certificate`` (its KA, DER).
JOIN_METHOD_AND_ROLE: dict[str, int] = {"CS03A1": 0, "CS03A2": 1, "CS03B": 2, "CS03C": 3}
# GBCS DeviceType of the join command (IHD and CAD are Type 2 devices)
JOIN_DEVICE_TYPES: dict[str, int] = {
    **{"GSME": 0, "ESME": 1, "CHF": 2, "GPF": 3, "HCALCS": 4, "PPMID": 5},
    **{"IHD": 6, "CAD": 6},
}


def _join_fields(use_case: str) -> Callable[[CommandContext], Mapping[str, object]]:
    def fields(context: CommandContext) -> Mapping[str, object]:
        other = context.parameter("other_device_id", bytes)
        kind = JOIN_DEVICE_TYPES.get(str(context.parameters.get("other_device_type")))
        if not isinstance(other, bytes) or len(other) != 8 or kind is None:
            raise GbcsError(f"{use_case} needs the other device's EUI-64 and GBCS device type")
        values: dict[str, object] = {
            "join_method_and_role": JOIN_METHOD_AND_ROLE[use_case],
            "other_device_entity_identifier": other,
            "other_device_type": kind,
        }
        if use_case == "CS03C":
            values["other_device_certificate"] = context.parameter(
                "other_device_certificate", bytes
            )
        return values

    return fields


ASN1_LAYOUTS |= {
    name: Asn1CommandLayout(USE_CASES_BY_NAME[name], _join_fields(name))
    for name in JOIN_METHOD_AND_ROLE
}


# -- GBZ (ZigBee) commands: the GSME and GPF use cases -------------------------------------------

READ_ATTRIBUTES = 0x00  # ZCL profile-wide command
GET_SAMPLED_DATA = 0x08  # metering cluster, client to server
FRAME_PROFILE_WIDE, FRAME_CLUSTER_COMMAND = 0x00, zigbee.FRAME_CLUSTER_SPECIFIC
# metering cluster attributes (ZSE 1.2) the gas reads name, in the order the RTDS commands do
GAS_UNIT_MULTIPLIER_DIVISOR = (0x0302, 0x0301, 0x0300)  # divisor, multiplier, unit of measure
CURRENT_SUMMATION_DELIVERED = 0x0000
CURRENT_TIER_SUMMATIONS = (0x0100, 0x0102, 0x0104, 0x0106)  # tiers 1-4 delivered
METER_BALANCE = 0x0A00
SUPPLY_STATUS, VALVE_STATUS_DETAIL = 0x0014, 0x0205  # GCS33 reads detail then status
GAS_FIRMWARE_VERSION = 0x0206
PREPAYMENT_CREDIT_REMAINING = 0x0001  # prepayment cluster
PAYMENT_CONTROL_CONFIGURATION = 0x0000  # prepayment cluster: the payment mode (GCS21j)
# GetSampledData sample ids and their intervals: the half-hourly profile (GCS17) and the GPF's
# daily consumption log (GCS61)
SAMPLE_HALF_HOURLY, SAMPLE_DAILY = 0, 1
SAMPLE_INTERVALS = {
    SAMPLE_HALF_HOURLY: dt.timedelta(minutes=30),
    SAMPLE_DAILY: dt.timedelta(days=1),
}
SAMPLE_TYPE_CONSUMPTION_DELIVERED = 0


@dataclass(frozen=True)
class ZclCommandSpec:
    """One GBZ component of a command: a ZCL command to one cluster, its payload computed
    from the context (a ZCL payload as :mod:`dccsim.gbcs.zigbee`'s layouts read it)."""

    cluster: int
    frame_control: int
    command: int
    payload: Callable[[CommandContext], zigbee.ZclPayload]


@dataclass(frozen=True)
class GbzCommandLayout:
    """One use case's GBZ command: its components in order. The ZCL sequence number is the
    component's index and the last component carries the "last" control bit, as the RTDS
    commands do (GCS60a's second component is sequence 1)."""

    use_case: UseCase
    components: tuple[ZclCommandSpec, ...] = ()
    # components that depend on the Service Request (GCS01a: one per day and week profile)
    build: Callable[[CommandContext], tuple[ZclCommandSpec, ...]] | None = None

    def specs(self, context: CommandContext) -> tuple[ZclCommandSpec, ...]:
        """The components of this use case's command for ``context``."""
        return self.components if self.build is None else self.build(context)

    def encode(self, context: CommandContext) -> bytes:
        specs = self.specs(context)
        last = len(specs) - 1
        components = tuple(
            zigbee.GbzComponent(
                zigbee.CONTROL_LAST if index == last else 0,
                spec.cluster,
                zigbee.ZclHeader(spec.frame_control, index, spec.command),
                spec.payload(context),
            )
            for index, spec in enumerate(specs)
        )
        return zigbee.GbzPayload(len(components), components).encode()


def read_attributes(cluster: int, *attributes: int) -> ZclCommandSpec:
    """A ZCL Read Attributes of ``attributes`` (in that order) on ``cluster``."""
    payload = zigbee.ZclPayload(
        "read-attributes", records=tuple({"attribute_id": a} for a in attributes)
    )
    return ZclCommandSpec(cluster, FRAME_PROFILE_WIDE, READ_ATTRIBUTES, lambda _c: payload)


def get_sampled_data(sample_id: int) -> ZclCommandSpec:
    """A ZCL GetSampledData of log ``sample_id`` over the Service Request's ReadLogPeriod:
    from ``start_date_time``, one sample per interval up to and including the one starting at
    ``end_date_time`` (the RTDS GCS17 command asks 97 half hours for two days)."""
    interval = SAMPLE_INTERVALS[sample_id]

    def payload(context: CommandContext) -> zigbee.ZclPayload:
        start, end = _datetime(context, "start_date_time"), _datetime(context, "end_date_time")
        if end < start:
            raise GbcsError("the log period ends before it starts")
        samples = (_utc(end) - _utc(start)) // interval + 1
        if samples > 0xFFFF:
            raise GbcsError(f"a log period of {samples} samples does not fit GetSampledData")
        return zigbee.ZclPayload(
            "get-sampled-data",
            {
                "sample_id": sample_id,
                "earliest_sample_time": _seconds_since_2000(start),
                "sample_type": SAMPLE_TYPE_CONSUMPTION_DELIVERED,
                "number_of_samples": samples,
            },
        )

    return ZclCommandSpec(zigbee.METERING, FRAME_CLUSTER_COMMAND, GET_SAMPLED_DATA, payload)


CHANGE_SUPPLY = 0x0B  # metering cluster, client to server (GCS32, GCS39)
# ZSE supply status, what Change Supply proposes and the GSME's supply status attribute holds
SUPPLY_OFF, SUPPLY_OFF_ARMED, SUPPLY_ON = 0, 1, 2
SUPPLY_CONTROL_ACKNOWLEDGE = 0x01  # supply control bits: acknowledge the change (the RTDS ones)
IMMEDIATE_ZCL_TIME = 0x00000000  # a ZCL UTC time of 0: now
PROVIDER_ID_UNUSED = 0  # the RTDS GBZ commands carry no provider id


def issuer_event_id(context: CommandContext) -> int:
    """The ZCL Issuer Event ID of a GBZ command: the time the DCC issued it (``issued_at``),
    as a ZCL UTC time (seconds since 2000). GBCS leaves the value to the Remote Party; every
    RTDS gas command carries 473385600, 2015-01-01T00:00:00Z, the date they were issued."""
    return _seconds_since_2000(_datetime(context, "issued_at"))


def change_supply(proposed_status: int) -> ZclCommandSpec:
    """A ZCL Change Supply proposing ``proposed_status`` now, with acknowledgement."""

    def payload(context: CommandContext) -> zigbee.ZclPayload:
        return zigbee.ZclPayload(
            "change-supply",
            {
                "provider_id": PROVIDER_ID_UNUSED,
                "issuer_event_id": issuer_event_id(context),
                "request_date_time": IMMEDIATE_ZCL_TIME,
                "implementation_date_time": IMMEDIATE_ZCL_TIME,
                "proposed_supply_status": proposed_status,
                "supply_control_bits": SUPPLY_CONTROL_ACKNOWLEDGE,
            },
        )

    return ZclCommandSpec(zigbee.METERING, FRAME_CLUSTER_COMMAND, CHANGE_SUPPLY, payload)


CHANGE_PAYMENT_MODE = 0x06  # prepayment cluster, client to server (GCS02, GCS03)
ZCL_CANCEL_TIME = 0xFFFFFFFF  # an implementation date-time that cancels a pending change
# the payment control configuration (ZSE bitmap16) GCS02 and GCS03 propose. The RTDS commands
# attest these: credit 0x0C94; prepayment 0x0097, with bit 10 set when debt is suspended while
# the supply is disabled and bit 11 set unless it is suspended in emergency credit.
CREDIT_PAYMENT_CONFIGURATION = 0x0C94
PREPAYMENT_PAYMENT_CONFIGURATION = 0x0097
SUSPEND_DEBT_DISABLED = 0x0400
COLLECT_DEBT_IN_EMERGENCY = 0x0800
NO_CUT_OFF = -1  # a credit-mode command's cut-off value (INT32 all ones)


def zcl_execution_time(context: CommandContext) -> int:
    """A future-datable GBZ command's implementation date-time as a ZCL UTC time:
    ``execution_date_time`` None is now (0), year 3000 or later cancels a pending change
    (0xFFFFFFFF, as the CANCELLATION vectors), else its seconds since 2000."""
    when = context.parameters.get("execution_date_time")
    if when is None:
        return IMMEDIATE_ZCL_TIME
    if not isinstance(when, dt.datetime):
        raise GbcsError("command parameter 'execution_date_time' must be a datetime")
    if _utc(when).year >= CANCELLATION_YEAR:
        return ZCL_CANCEL_TIME
    return _seconds_since_2000(when)


def change_payment_mode(*, prepayment: bool) -> ZclCommandSpec:
    """A ZCL Change Payment Mode to credit or prepayment (with its debt suspension flags and
    ``disablement_threshold`` as the cut-off value), now or at the execution date-time."""

    def payload(context: CommandContext) -> zigbee.ZclPayload:
        if prepayment:
            configuration = PREPAYMENT_PAYMENT_CONFIGURATION
            if _flag(context, "suspend_debt_disabled"):
                configuration |= SUSPEND_DEBT_DISABLED
            if not _flag(context, "suspend_debt_emergency"):
                configuration |= COLLECT_DEBT_IN_EMERGENCY
            cut_off = context.parameter("disablement_threshold", int)
            assert isinstance(cut_off, int)
        else:
            configuration, cut_off = CREDIT_PAYMENT_CONFIGURATION, NO_CUT_OFF
        return zigbee.ZclPayload(
            "change-payment-mode",
            {
                "provider_id": PROVIDER_ID_UNUSED,
                "issuer_event_id": issuer_event_id(context),
                "implementation_date_time": zcl_execution_time(context),
                "proposed_payment_control_configuration": configuration,
                "cut_off_value": cut_off,
            },
        )

    return ZclCommandSpec(zigbee.PREPAYMENT, FRAME_CLUSTER_COMMAND, CHANGE_PAYMENT_MODE, payload)


DISPLAY_MESSAGE = 0x00  # messaging cluster, server to client (GCS07)
MESSAGE_CONTROL_NORMAL = 0x00  # normal transmission, low importance, no confirmation
UNTIL_CHANGED = 0xFFFF  # a message duration in minutes: until replaced


def display_message() -> ZclCommandSpec:
    """A ZCL Display Message of the Service Request's ``supplier_message``, from now until
    replaced. Its Message ID is the Issuer Event ID rule (the time of issue): the RTDS GCS07
    command's Message ID is 473385600, the same 2015-01-01T00:00:00Z as every RTDS gas
    command's Issuer Event ID; the DUIS request carries none (a reading, not attested)."""

    def payload(context: CommandContext) -> zigbee.ZclPayload:
        message = context.parameter("supplier_message", str)
        assert isinstance(message, str)
        return zigbee.ZclPayload(
            "display-message",
            {
                "message_id": issuer_event_id(context),
                "message_control": MESSAGE_CONTROL_NORMAL,
                "start_time": IMMEDIATE_ZCL_TIME,
                "duration_in_minutes": UNTIL_CHANGED,
                "message": message,
            },
        )

    # the messaging cluster's server (the DCC, for the Supplier) sends it to the client
    return ZclCommandSpec(
        zigbee.MESSAGING,
        FRAME_CLUSTER_COMMAND | zigbee.FRAME_SERVER_TO_CLIENT,
        DISPLAY_MESSAGE,
        payload,
    )


GET_EVENT_LOG = 0x00  # events cluster, client to server (CS10a, CS10b)
ALL_MATCHING_EVENTS = 0  # Get Event Log's number of events: every one in the range
# Get Event Log's Event Control / Log ID byte (event control high nibble, log id low), as the
# RTDS commands carry it: the GBCS event log (3) with full details, the security log (4)
EVENT_LOG_CONTROL = {"CS10a": 0x13, "CS10b": 0x04}


def get_event_log(use_case: str) -> ZclCommandSpec:
    """A ZCL Get Event Log of every event logged in the Service Request's ReadLogPeriod."""
    control = EVENT_LOG_CONTROL[use_case]

    def payload(context: CommandContext) -> zigbee.ZclPayload:
        start, end = _datetime(context, "start_date_time"), _datetime(context, "end_date_time")
        if end < start:
            raise GbcsError("the log period ends before it starts")
        return zigbee.ZclPayload(
            "get-event-log",
            {
                "event_control_log_id": control,
                "event_id": 0,  # any event
                "start_time": _seconds_since_2000(start),
                "end_time": _seconds_since_2000(end),
                "number_of_events": ALL_MATCHING_EVENTS,
                "event_offset": 0,
            },
        )

    return ZclCommandSpec(zigbee.EVENTS, FRAME_CLUSTER_COMMAND, GET_EVENT_LOG, payload)


GET_SNAPSHOT = 0x06  # metering cluster, client to server (GCS16a)
DAILY_READ_LOG_DEPTH = 31  # a GSME's daily read log: GCS16a asks each of its 31 snapshots
SNAPSHOT_CAUSE_GENERAL = 0x00000001  # the daily (general) snapshot


def get_snapshot(offset: int) -> ZclCommandSpec:
    """A ZCL Get Snapshot of the ``offset``-th daily snapshot taken in the Service Request's
    ReadLogPeriod (the RTDS GCS16a asks offsets 0 to 30, one component each)."""

    def payload(context: CommandContext) -> zigbee.ZclPayload:
        start, end = _datetime(context, "start_date_time"), _datetime(context, "end_date_time")
        if end < start:
            raise GbcsError("the log period ends before it starts")
        return zigbee.ZclPayload(
            "get-snapshot",
            {
                "earliest_start_time": _seconds_since_2000(start),
                "latest_end_time": _seconds_since_2000(end),
                "snapshot_offset": offset,
                "snapshot_cause": SNAPSHOT_CAUSE_GENERAL,
            },
        )

    return ZclCommandSpec(zigbee.METERING, FRAME_CLUSTER_COMMAND, GET_SNAPSHOT, payload)


GBZ_LAYOUTS: dict[str, GbzCommandLayout] = {
    layout.use_case.name: layout
    for layout in (
        GbzCommandLayout(
            USE_CASES_BY_NAME["GCS13a"],
            (
                read_attributes(
                    zigbee.METERING, *GAS_UNIT_MULTIPLIER_DIVISOR, CURRENT_SUMMATION_DELIVERED
                ),
            ),
        ),
        GbzCommandLayout(
            USE_CASES_BY_NAME["GCS13c"],
            (
                read_attributes(
                    zigbee.METERING, *GAS_UNIT_MULTIPLIER_DIVISOR, *CURRENT_TIER_SUMMATIONS
                ),
            ),
        ),
        GbzCommandLayout(
            USE_CASES_BY_NAME["GCS60a"],
            (
                read_attributes(zigbee.METERING, METER_BALANCE),
                read_attributes(zigbee.PREPAYMENT, PREPAYMENT_CREDIT_REMAINING),
            ),
        ),
        GbzCommandLayout(USE_CASES_BY_NAME["GCS17"], (get_sampled_data(SAMPLE_HALF_HOURLY),)),
        GbzCommandLayout(USE_CASES_BY_NAME["GCS61"], (get_sampled_data(SAMPLE_DAILY),)),
        GbzCommandLayout(
            USE_CASES_BY_NAME["GCS38"], (read_attributes(zigbee.METERING, GAS_FIRMWARE_VERSION),)
        ),
        GbzCommandLayout(
            USE_CASES_BY_NAME["GCS21j"],
            (read_attributes(zigbee.PREPAYMENT, PAYMENT_CONTROL_CONFIGURATION),),
        ),
        GbzCommandLayout(
            USE_CASES_BY_NAME["GCS33"],
            (read_attributes(zigbee.METERING, VALVE_STATUS_DETAIL, SUPPLY_STATUS),),
        ),
        GbzCommandLayout(USE_CASES_BY_NAME["GCS32"], (change_supply(SUPPLY_OFF),)),
        GbzCommandLayout(USE_CASES_BY_NAME["GCS39"], (change_supply(SUPPLY_OFF_ARMED),)),
        GbzCommandLayout(USE_CASES_BY_NAME["GCS02"], (change_payment_mode(prepayment=False),)),
        GbzCommandLayout(USE_CASES_BY_NAME["GCS07"], (display_message(),)),
        GbzCommandLayout(
            USE_CASES_BY_NAME["GCS16a"],
            tuple(get_snapshot(offset) for offset in range(DAILY_READ_LOG_DEPTH)),
        ),
        *(
            GbzCommandLayout(USE_CASES_BY_NAME[name], (get_event_log(name),))
            for name in EVENT_LOG_CONTROL
        ),
        GbzCommandLayout(USE_CASES_BY_NAME["GCS03"], (change_payment_mode(prepayment=True),)),
    )
}


# -- GCS01a, CS01b, GCS06: the GSME's tariff, top-up and emergency credit ------------------------

PUBLISH_CALENDAR, PUBLISH_DAY_PROFILE, PUBLISH_WEEK_PROFILE = 0x00, 0x01, 0x02
PUBLISH_SEASONS, PUBLISH_SPECIAL_DAYS = 0x03, 0x04  # calendar cluster, server to client
PUBLISH_TARIFF_INFORMATION, PUBLISH_PRICE_MATRIX, PUBLISH_BLOCK_THRESHOLDS = 0x04, 0x05, 0x06
FRAME_SERVER_COMMAND = FRAME_CLUSTER_COMMAND | zigbee.FRAME_SERVER_TO_CLIENT
# What every RTDS GCS01a command carries and a DUIS gas tariff does not say: a delivered
# calendar (type 0) without a name, tariff id 1, prices per kWh (unit 0) in GBP (ISO 4217 826)
# with five decimal places (trailing digit 0x50), block thresholds in kWh/1000, no TOU tier for
# a block tariff's days, no tier-block mode (0xFF)
DELIVERED_CALENDAR = 0x00
PRIMARY_TARIFF_ID = 1
TARIFF_TYPE_TOU, TARIFF_TYPE_BLOCK = 0x00, 0x10  # tariff type/charging scheme
UNIT_KWH = 0x00
CURRENCY_GBP = 826
PRICE_TRAILING_DIGITS = 0x50
TIER_BLOCK_MODE_UNUSED = 0xFF
BLOCK_THRESHOLD_MULTIPLIER, BLOCK_THRESHOLD_DIVISOR = 1, 1000
BLOCK_PRICING_TIER = 0  # a day profile entry's price tier on a block tariff
PRICE_MATRIX_TOU, PRICE_MATRIX_BLOCK = 0x01, 0x00  # Publish Price Matrix sub-payload control
THRESHOLDS_FOR_ALL_TIERS = 0x01  # Publish Block Thresholds sub-payload control
# A cancellation's start time (ExecutionDateTime in year 3000): the RTDS CANCELLATION command
# carries 0xFFFFFFFF in Publish Tariff Information and 0xFFFFFFFE in every other start time
TARIFF_CANCEL_TIME = 0xFFFFFFFF
CALENDAR_CANCEL_TIME = 0xFFFFFFFE


def zcl_date(date: TariffDate) -> int:
    """A ZCL Date (year - 1900, month, day of month, day of week; 0xFF where not specified),
    as :mod:`dccsim.gbcs.zigbee` reads the 4 bytes: one little-endian integer."""
    year = UNSPECIFIED if date.year is None else date.year - 1900
    fields = (year, date.month, date.day, date.weekday)
    return int.from_bytes(bytes(UNSPECIFIED if v is None else v for v in fields), "little")


@dataclass(frozen=True)
class GasTariff:
    """A GSME's import tariff as GCS01a publishes it: the switching table (day profiles with
    their TOU tier, 0 on a block tariff; weeks of 7 day ids, Monday first; seasons), special
    days, the standing charge, and either TOU prices (``tou_prices[n-1]`` tier n's) or block
    prices (``block_prices[n-1]`` block n's) above ``thresholds``."""

    days: tuple[tuple[int, int], ...]  # day id, TOU tier
    weeks: tuple[tuple[int, tuple[int, ...]], ...]  # week id, the 7 day ids
    seasons: tuple[tuple[TariffDate, int], ...]  # start date, week id
    special_days: tuple[tuple[TariffDate, int], ...]  # date, day id
    standing_charge: int
    tou_prices: tuple[int, ...] = ()
    block_prices: tuple[int, ...] = ()
    thresholds: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if bool(self.tou_prices) == bool(self.block_prices):
            raise ValueError("a gas tariff has TOU prices or block prices, not both or neither")
        if self.block_prices and len(self.block_prices) != len(self.thresholds) + 1:
            raise ValueError("a block tariff has one price more than its thresholds")
        if any(len(days) != 7 for _, days in self.weeks):
            raise ValueError("a week profile names 7 days")

    @property
    def block(self) -> bool:
        return bool(self.block_prices)


def _gas_tariff(context: CommandContext) -> GasTariff:
    tariff = context.parameter("gas_tariff", GasTariff)
    assert isinstance(tariff, GasTariff)
    return tariff


def _tariff_start(context: CommandContext, cancel: int) -> int:
    start = zcl_execution_time(context)
    return cancel if start == ZCL_CANCEL_TIME else start


def _calendar_ids(context: CommandContext) -> dict[str, zigbee.ZclValue]:
    # the RTDS commands' Issuer Calendar ID is their Issuer Event ID: the time of issue
    event = issuer_event_id(context)
    return {
        "provider_id": PROVIDER_ID_UNUSED,
        "issuer_event_id": event,
        "issuer_calendar_id": event,
    }


def _price_ids(context: CommandContext) -> dict[str, zigbee.ZclValue]:
    return {
        "provider_id": PROVIDER_ID_UNUSED,
        "issuer_event_id": issuer_event_id(context),
        "start_time": _tariff_start(context, CALENDAR_CANCEL_TIME),
        "issuer_tariff_id": PRIMARY_TARIFF_ID,
        "command_index": 0,
        "total_number_of_commands": 1,
    }


def _server_command(
    cluster: int, command: int, payload: Callable[[CommandContext], zigbee.ZclPayload]
) -> ZclCommandSpec:
    return ZclCommandSpec(cluster, FRAME_SERVER_COMMAND, command, payload)


def _publish_calendar(context: CommandContext) -> zigbee.ZclPayload:
    tariff = _gas_tariff(context)
    return zigbee.ZclPayload(
        "publish-calendar",
        {
            **_calendar_ids(context),
            "start_time": _tariff_start(context, CALENDAR_CANCEL_TIME),
            "calendar_type": DELIVERED_CALENDAR,
            "calendar_time_reference": 0,
            "calendar_name": b"",
            "number_of_seasons": len(tariff.seasons),
            "number_of_week_profiles": len(tariff.weeks),
            "number_of_day_profiles": len(tariff.days),
        },
    )


def _publish_day_profile(index: int) -> Callable[[CommandContext], zigbee.ZclPayload]:
    def payload(context: CommandContext) -> zigbee.ZclPayload:
        day_id, tier = _gas_tariff(context).days[index]
        return zigbee.ZclPayload(
            "publish-day-profile",
            {
                **_calendar_ids(context),
                "day_id": day_id,
                "total_number_of_schedule_entries": 1,  # a gas day has one tier all day
                "command_index": 0,
                "total_number_of_commands": 1,
                "calendar_type": DELIVERED_CALENDAR,
            },
            ({"start_time": 0, "price_tier": tier},),
        )

    return payload


def _publish_week_profile(index: int) -> Callable[[CommandContext], zigbee.ZclPayload]:
    def payload(context: CommandContext) -> zigbee.ZclPayload:
        week_id, days = _gas_tariff(context).weeks[index]
        values: dict[str, zigbee.ZclValue] = {**_calendar_ids(context), "week_id": week_id}
        for weekday, day_id in zip(zigbee.WEEKDAYS, days, strict=True):
            values[f"day_id_ref_{weekday}"] = day_id
        return zigbee.ZclPayload("publish-week-profile", values)

    return payload


def _publish_seasons(context: CommandContext) -> zigbee.ZclPayload:
    return zigbee.ZclPayload(
        "publish-seasons",
        {**_calendar_ids(context), "command_index": 0, "total_number_of_commands": 1},
        tuple(
            {"season_start_date": zcl_date(start), "week_id_ref": week}
            for start, week in _gas_tariff(context).seasons
        ),
    )


def _publish_special_days(context: CommandContext) -> zigbee.ZclPayload:
    special_days = _gas_tariff(context).special_days
    return zigbee.ZclPayload(
        "publish-special-days",
        {
            **_calendar_ids(context),
            "start_time": _tariff_start(context, CALENDAR_CANCEL_TIME),
            "calendar_type": DELIVERED_CALENDAR,
            "total_number_of_special_days": len(special_days),
            "command_index": 0,
            "total_number_of_commands": 1,
        },
        tuple({"special_day_date": zcl_date(d), "day_id_ref": day} for d, day in special_days),
    )


def _publish_tariff_information(context: CommandContext) -> zigbee.ZclPayload:
    tariff = _gas_tariff(context)
    return zigbee.ZclPayload(
        "publish-tariff-information",
        {
            "provider_id": PROVIDER_ID_UNUSED,
            "issuer_event_id": issuer_event_id(context),
            "issuer_tariff_id": PRIMARY_TARIFF_ID,
            "start_time": _tariff_start(context, TARIFF_CANCEL_TIME),
            "tariff_type_charging_scheme": TARIFF_TYPE_BLOCK if tariff.block else TARIFF_TYPE_TOU,
            "tariff_label": b"",
            "number_of_price_tiers_in_use": len(tariff.tou_prices),
            "number_of_block_thresholds_in_use": len(tariff.thresholds) if tariff.block else 0,
            "unit_of_measure": UNIT_KWH,
            "currency": CURRENCY_GBP,
            "price_trailing_digit": PRICE_TRAILING_DIGITS,
            "standing_charge": tariff.standing_charge,
            "tier_block_mode": TIER_BLOCK_MODE_UNUSED,
            "block_threshold_multiplier": BLOCK_THRESHOLD_MULTIPLIER,
            "block_threshold_divisor": BLOCK_THRESHOLD_DIVISOR,
        },
    )


def _publish_block_thresholds(context: CommandContext) -> zigbee.ZclPayload:
    thresholds = _gas_tariff(context).thresholds
    return zigbee.ZclPayload(
        "publish-block-thresholds",
        {
            **_price_ids(context),
            "sub_payload_control": THRESHOLDS_FOR_ALL_TIERS,
            "tier_number_of_block_thresholds": len(thresholds),  # tier 0 (high nibble): all
        },
        tuple({"block_threshold": t} for t in thresholds),
    )


def _publish_price_matrix(context: CommandContext) -> zigbee.ZclPayload:
    tariff = _gas_tariff(context)
    if tariff.block:  # tier 0 (high nibble), block n - 1 (low nibble)
        control, entries = PRICE_MATRIX_BLOCK, enumerate(tariff.block_prices)
    else:
        control, entries = PRICE_MATRIX_TOU, enumerate(tariff.tou_prices, start=1)
    return zigbee.ZclPayload(
        "publish-price-matrix",
        {**_price_ids(context), "sub_payload_control": control},
        tuple({"tier_block_id": n, "price": price} for n, price in entries),
    )


def gas_tariff_components(context: CommandContext) -> tuple[ZclCommandSpec, ...]:
    """GCS01a's ZCL commands for the ``gas_tariff`` parameter, in the RTDS commands' order:
    the calendar, each day and week profile, the seasons, the special days, the tariff
    information, the block thresholds (a block tariff only) and the price matrix; each start
    time is the ``execution_date_time`` (see :func:`zcl_execution_time`)."""
    tariff = _gas_tariff(context)
    calendar = zigbee.CALENDAR
    return (
        _server_command(calendar, PUBLISH_CALENDAR, _publish_calendar),
        *(
            _server_command(calendar, PUBLISH_DAY_PROFILE, _publish_day_profile(i))
            for i in range(len(tariff.days))
        ),
        *(
            _server_command(calendar, PUBLISH_WEEK_PROFILE, _publish_week_profile(i))
            for i in range(len(tariff.weeks))
        ),
        _server_command(calendar, PUBLISH_SEASONS, _publish_seasons),
        _server_command(calendar, PUBLISH_SPECIAL_DAYS, _publish_special_days),
        _server_command(zigbee.PRICE, PUBLISH_TARIFF_INFORMATION, _publish_tariff_information),
        *(
            (_server_command(zigbee.PRICE, PUBLISH_BLOCK_THRESHOLDS, _publish_block_thresholds),)
            if tariff.block
            else ()
        ),
        _server_command(zigbee.PRICE, PUBLISH_PRICE_MATRIX, _publish_price_matrix),
    )


CONSUMER_TOP_UP = 0x04  # prepayment cluster, client to server (CS01b)
SELECT_AVAILABLE_EMERGENCY_CREDIT = 0x00  # prepayment cluster, client to server (GCS06)
ORIGINATING_DEVICE_ESI = 0x00  # the RTDS CS01b/GCS06: sent from the energy service interface


def _consumer_top_up(context: CommandContext) -> zigbee.ZclPayload:
    """CS01b: the UTRN, its 20 ASCII digits as the ZCL top-up code (as the RTDS command)."""
    utrn = context.parameter("utrn", str)
    assert isinstance(utrn, str)
    return zigbee.ZclPayload(
        "consumer-top-up",
        {"originating_device": ORIGINATING_DEVICE_ESI, "top_up_code": utrn.encode("ascii")},
    )


GBZ_LAYOUTS.update(
    {
        layout.use_case.name: layout
        for layout in (
            GbzCommandLayout(USE_CASES_BY_NAME["GCS01a"], build=gas_tariff_components),
            GbzCommandLayout(
                USE_CASES_BY_NAME["CS01b"],
                (
                    ZclCommandSpec(
                        zigbee.PREPAYMENT, FRAME_CLUSTER_COMMAND, CONSUMER_TOP_UP, _consumer_top_up
                    ),
                ),
            ),
            GbzCommandLayout(
                USE_CASES_BY_NAME["GCS06"],
                (
                    ZclCommandSpec(
                        zigbee.PREPAYMENT,
                        FRAME_CLUSTER_COMMAND,
                        SELECT_AVAILABLE_EMERGENCY_CREDIT,
                        # issued "now" (0) from the ESI, as the RTDS command
                        lambda _c: zigbee.ZclPayload(
                            "select-available-emergency-credit",
                            {
                                "command_issue_date_time": IMMEDIATE_ZCL_TIME,
                                "originating_device": ORIGINATING_DEVICE_ESI,
                            },
                        ),
                    ),
                ),
            ),
        )
    }
)


def command_payload(use_case: str, context: CommandContext) -> bytes:
    """The command payload of ``use_case`` (e.g. ``"ECS42"``) for ``context``: a DLMS Access
    Request, the DER of an ASN.1 use case or the GBZ payload of a GSME/GPF one.

    Raises :class:`GbcsError` for a use case without a layout or a missing parameter.
    """
    layout = LAYOUTS.get(use_case)
    if layout is not None:
        return layout.request(context).encode()
    asn1 = ASN1_LAYOUTS.get(use_case)
    if asn1 is not None:
        return asn1.encode(context)
    gbz = GBZ_LAYOUTS.get(use_case)
    if gbz is not None:
        return gbz.encode(context)
    raise GbcsError(f"no command layout for {use_case}")
