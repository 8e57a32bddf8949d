"""An emulated electricity smart meter (ESME): its registers and its GBCS use-case handlers."""

from __future__ import annotations

import dataclasses
import functools
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, Unpack

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import dlms
from dccsim.gbcs.alerts import (
    ALERT_FUTURE_DATED_EXECUTED,
    ALERT_FUTURE_DATED_FAILED,
    MESSAGE_CODE_FUTURE_DATED_DLMS,
    DlmsFutureDatedTarget,
    future_dated_notification,
)
from dccsim.gbcs.commands import (
    ACCOUNT_STATUS_ACTIVE,
    ACCOUNT_STATUS_NEW,
    ACTIVATE_PASSIVE_UNIT_CHARGE,
    BLOCK_RATES,
    BLOCK_SCRIPT_OFFSET,
    BLOCKS,
    CHARGE_PERIOD,
    CHARGE_PROPORTION,
    CREDIT_MODE,
    CREDIT_REFERENCE_TWIN,
    DEBT_RECOVERY_CAP_PERIOD_SECONDS,
    DEBT_RECOVERY_RATE_CAP,
    ECS08A_SPECS,
    EMERGENCY_CREDIT_LIMIT,
    EMERGENCY_CREDIT_THRESHOLD,
    ENTRIES,
    IMMEDIATE_DATE_TIME,
    LAYOUTS,
    LOW_CREDIT_THRESHOLD,
    MAX_CREDIT_THRESHOLD,
    MAX_METER_BALANCE,
    NON_DISABLEMENT_SCHEDULE_PASSIVE,
    PREPAYMENT_CREDITS,
    PREPAYMENT_MODE,
    SPECIAL_DAYS_NON_DISABLEMENT_PASSIVE,
    THRESHOLD_ACTIVATION_TIME,
    THRESHOLD_VALUE,
    TIME_DEBT_CHARGES,
    TOU_RATES,
    UNIT_CHARGE_PASSIVE,
    UNSPECIFIED_DATE_TIME,
    UPDATE_TOTAL_AMOUNT_REMAINING,
    DayProfile,
    Tariff,
    TariffDate,
    credit_mode_references,
    debt_recovery_rate,
    tariff_items,
    tariff_thresholds,
)
from dccsim.gbcs.dlms import (
    AccessKind,
    AccessRequest,
    CompactArray,
    Data,
    DataType,
    encode_date_time,
)
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralCiphering
from dccsim.gbcs.usecases import (
    ACTION_OTHER_REASON,
    ACTION_SUCCESS,
    ECS17B,
    USE_CASES_BY_NAME,
    ImportRegisters,
    build_access_response,
    build_ecs17b_response,
    build_protected_read_response,
    build_signed_access_response,
)

# the outcome codes below (``X as X``) are re-exported: callers of the ESME name them from here
from emulators.credentials import (
    STATUS_BAD_CERTIFICATE as STATUS_BAD_CERTIFICATE,
)
from emulators.credentials import (
    STATUS_NO_TRUST_ANCHOR as STATUS_NO_TRUST_ANCHOR,
)
from emulators.credentials import (
    STATUS_SUCCESS as STATUS_SUCCESS,
)
from emulators.credentials import (
    LoadControllerCredentials,
    TrustAnchor,
)
from emulators.device import (
    DeviceFault,
    DeviceKeys,
    GbcsDevice,
    RemoteParty,
    on,
)
from emulators.firmware import (
    ACTIVATION_FAILURE as ACTIVATION_FAILURE,
)
from emulators.firmware import (
    ACTIVATION_SUCCESS as ACTIVATION_SUCCESS,
)
from emulators.firmware import FirmwareImages
from emulators.han import MeterJoins, MethodAMeterJoins

EVENT_LOG = bytes.fromhex("0000636200FF")  # 0-0:99.98.0.255
SECURITY_LOG = bytes.fromhex("0000636201FF")  # 0-0:99.98.1.255
POWER_EVENT_LOG = bytes.fromhex("0000636204FF")  # 0-0:99.98.4.255

MPAN_LENGTH = 13  # digits
UNIT_W = 27  # DLMS unit: watt
DEFAULT_POWER_THRESHOLDS = (2300, 4600)  # W: what a new meter shows as low/medium/high
REGISTER_MODULUS = 1 << 32  # double-long-unsigned registers roll over
GBCS_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # event log times: seconds since 2000
# an event log entry as ECS35 returns it, in a compact array:
# structure { double-long-unsigned time, long-unsigned event code, octet-string data }
EVENT_TYPE_DESCRIPTION = bytes.fromhex("0203061209")
DEFAULT_FIRMWARE_VERSION = bytes.fromhex("0123ABCD")  # as the RTDS ECS52 response carries

HALF_HOUR = timedelta(minutes=30)
DAY = timedelta(days=1)
TOU_REGISTERS = 48  # the tariff TOU register matrix of a daily read
SECONDARY_TOU_REGISTERS = 4  # a twin-element ESME's secondary element TOU registers
BLOCK_COUNTER_ROWS, BLOCK_COUNTER_COLUMNS = 4, 8  # the tariff block counter matrix


@dataclass(frozen=True)
class ProtectedLog:
    """One log a protected range read (ECS21a, ECS22b, ECS66) returns, as data.

    ``interval`` spaces its entries (each time-stamped on a multiple of it since 2000, UTC);
    ``depth`` is how far back the emulated meter keeps them. An entry's ``shape`` lists its
    members: None for one double-long-unsigned, n for an array of n of them, as the RTDS
    responses' compact arrays describe them (single element first, then twin element).
    """

    interval: timedelta
    depth: timedelta
    shape: tuple[int | None, ...]
    twin_shape: tuple[int | None, ...]

    def type_description(self, twin: bool) -> bytes:
        members = self.twin_shape if twin else self.shape
        out = bytes([DataType.STRUCTURE, len(members)])
        for member in members:
            if member is not None:
                out += bytes([DataType.ARRAY]) + member.to_bytes(2, "big")
            out += bytes([DataType.DOUBLE_LONG_UNSIGNED])
        return out

    def stamps(self, start: datetime, end: datetime, device_now: datetime) -> list[datetime]:
        """The entry times in [start, end] the meter holds at ``device_now``."""
        first = max(start, device_now - self.depth)
        last = min(end, device_now)
        step = int(self.interval.total_seconds())
        offset = -(-int((first - GBCS_EPOCH).total_seconds()) // step) * step
        at = GBCS_EPOCH + timedelta(seconds=offset)
        out = []
        while at <= last:
            out.append(at)
            at += self.interval
        return out


# The emulated meter's capacities: 13 months of half-hour profile data, 731 daily entries.
DAILY_READ_LOG = ProtectedLog(
    DAY,
    timedelta(days=731),
    (None, None, TOU_REGISTERS, *(BLOCK_COUNTER_COLUMNS,) * BLOCK_COUNTER_ROWS),
    (
        None,
        None,
        None,
        TOU_REGISTERS,
        SECONDARY_TOU_REGISTERS,
        *(BLOCK_COUNTER_COLUMNS,) * BLOCK_COUNTER_ROWS,
    ),
)
PREPAYMENT_DAILY_READ_LOG = ProtectedLog(DAY, timedelta(days=731), (None,) * 6, (None,) * 6)
# a prepayment daily read log entry: its time, then the six registers (double-long)
PREPAYMENT_DAILY_READ_TYPE = bytes([DataType.STRUCTURE, 7, DataType.DOUBLE_LONG_UNSIGNED]) + bytes(
    [DataType.DOUBLE_LONG] * 6
)
PROFILE_DATA_LOG = ProtectedLog(HALF_HOUR, timedelta(days=396), (None, None), (None, None, None))
DAILY_CONSUMPTION_LOG = ProtectedLog(DAY, timedelta(days=731), (None, None), (None, None))


@dataclass(frozen=True)
class LogEntry:
    """One event or security log entry: when, the GBCS event/alert code, its data."""

    at: datetime
    code: int
    data: bytes = b""

    def packed(self) -> bytes:
        seconds = int((self.at - GBCS_EPOCH).total_seconds())
        return (
            seconds.to_bytes(4, "big")
            + self.code.to_bytes(2, "big")
            + bytes([len(self.data)])
            + self.data
        )


@dataclass(frozen=True)
class LoadProfile:
    """How the meter's registers move: start values and a constant mean demand.

    ``from_seed`` picks a plausible household demand deterministically, so an estate of meters
    differs from meter to meter yet every run is reproducible.
    """

    start_import_wh: int = 0
    start_reactive_varh: int = 0
    mean_power_w: float = 500.0
    reactive_ratio: float = 0.1  # varh per Wh
    twin_element: bool = False  # a twin-element ESME reports its second element's register
    secondary_share: float = 0.5  # share of the demand on the second element

    @classmethod
    def from_seed(cls, seed: int, *, twin_element: bool = False) -> LoadProfile:
        rng = random.Random(seed)
        return cls(
            start_import_wh=rng.randrange(0, 20_000_000),
            start_reactive_varh=rng.randrange(0, 2_000_000),
            mean_power_w=rng.uniform(150.0, 1_500.0),
            reactive_ratio=rng.uniform(0.02, 0.2),
            twin_element=twin_element,
        )


# What the future-dated outcome alerts (0x8F66/0x8F67) of a held DLMS command name: the COSEM
# (class, instance, member) of each part it changed, one alert each, in the order the RTDS
# ESME raises them (reference/gbcs/rtds 1.1.1_ECS01a, 1.6_ECS02, 1.6_ECS03 alert vectors).
_ACCOUNT_ACTIVATION = (111, bytes.fromhex("0001130000FF"), 13)
FUTURE_DATED_TARGETS: dict[str, tuple[tuple[int, bytes, int], ...]] = {
    "ECS02": (_ACCOUNT_ACTIVATION,),
    "ECS03": ((9000, bytes.fromhex("00005E2C8016"), 6), _ACCOUNT_ACTIVATION),
    "ECS01a": (
        (20, bytes.fromhex("00000D0000FF"), 10),  # switching table (activity calendar)
        (9000, bytes.fromhex("00005E2C801D"), 6),  # special days
        (9000, bytes.fromhex("00005E2C0200"), 6),  # currency unit
        (113, bytes.fromhex("0000131404FF"), 7),  # standing charge
        (113, bytes.fromhex("0000131400FF"), 7),  # price matrix
        (9000, bytes.fromhex("00003F0101FF"), 6),  # threshold matrix
    ),
    # each register's activation date-time, in the command's order (2.1_ECS08a alerts)
    "ECS08a": tuple(
        (s.class_id, s.instance_id, s.member_id)
        for s in ECS08A_SPECS
        if s.member_id == THRESHOLD_ACTIVATION_TIME
    ),
}
# DLMS data-access-result for a set naming an object this meter does not have
OBJECT_UNDEFINED = 4
# the charges (0-0:19.20.x.255) an ESME has: standing charge, the element charges, debts;
# a twin-element ESME adds its second element's charge
SINGLE_ELEMENT_CHARGES = frozenset(bytes.fromhex(f"000013140{n}FF") for n in range(5))
PAYMENT_MODES = {"ECS02": CREDIT_MODE, "ECS03": PREPAYMENT_MODE}

CreditReference = tuple[bytes, bytes, bytes, int]  # credit, charge, configuration octets, bits


@dataclass(frozen=True)
class Account:
    """The ESME's account (DLMS class 111): payment mode, which credits pay which charges,
    and (prepayment) the disablement threshold."""

    payment_mode: int = CREDIT_MODE
    credit_references: tuple[CreditReference, ...] = ()
    disablement_threshold: int | None = None

    def to_state(self) -> dict[str, Any]:
        return {
            "payment_mode": self.payment_mode,
            "credit_references": [list(r) for r in self.credit_references],
            "disablement_threshold": self.disablement_threshold,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Account:
        return cls(
            int(state["payment_mode"]),
            tuple(
                (bytes(c), bytes(g), bytes(o), int(b)) for c, g, o, b in state["credit_references"]
            ),
            None if state["disablement_threshold"] is None else int(state["disablement_threshold"]),
        )


def _default_account(twin: bool) -> Account:
    return Account(
        CREDIT_MODE,
        tuple((c, g, bits.octets, bits.bits) for c, g, bits in credit_mode_references(twin=twin)),
    )


# -- prepayment: the debt registers (ECS07), the prepayment configuration (ECS08a) and the
# emergency credit (ECS09) of the ESME, as ECS26a reads them. Amounts are in the meter's
# currency units (as the DUIS values), signed 32-bit as DLMS double-long holds them.
MAX_AMOUNT = (1 << 31) - 1
MAX_DEBT_RECOVERY_PER_PAYMENT = 10_000  # hundredths of a percent: 100 %
_EMPTY_ARRAY = dlms.array().encode()


@dataclass(frozen=True)
class TimeDebt:
    """A time debt register: what remains to recover, and its recovery rate (``rate`` times
    10^``price_scale`` every ``period`` seconds)."""

    remaining: int = 0
    rate: int = 0
    price_scale: int = 0
    period: int = 86400


@dataclass(frozen=True)
class PrepaymentConfiguration:
    """What ECS08a sets: credit thresholds and limits, the debt recovery rate cap (per week)
    and the non-disablement calendar (its special days and schedule entries, kept as the
    encoded DLMS arrays the command wrote: the meter only ever reads them back)."""

    debt_recovery_rate_cap: int = 0
    emergency_credit_limit: int = 0
    emergency_credit_threshold: int = 0
    low_credit_threshold: int = 0
    max_meter_balance: int = 0
    max_credit_threshold: int = 0
    special_days: bytes = _EMPTY_ARRAY
    schedule: bytes = _EMPTY_ARRAY

    def to_state(self) -> dict[str, Any]:
        return self._state

    @functools.cached_property
    def _state(self) -> dict[str, Any]:
        # Built once (the record is frozen; callers only read it): a host asks for a meter's
        # non-volatile state after every command, and dataclasses.asdict deep-copies.
        return {name: getattr(self, name) for name in _PREPAYMENT_CONFIGURATION_FIELDS}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> PrepaymentConfiguration:
        return cls(
            debt_recovery_rate_cap=int(state["debt_recovery_rate_cap"]),
            emergency_credit_limit=int(state["emergency_credit_limit"]),
            emergency_credit_threshold=int(state["emergency_credit_threshold"]),
            low_credit_threshold=int(state["low_credit_threshold"]),
            max_meter_balance=int(state["max_meter_balance"]),
            max_credit_threshold=int(state["max_credit_threshold"]),
            special_days=bytes(state["special_days"]),
            schedule=bytes(state["schedule"]),
        )


@dataclass(frozen=True)
class Prepayment:
    """The ESME's prepayment registers: the meter balance (credit), the emergency credit
    (``emergency_credit`` remaining while ``emergency_credit_active``), the two time debt
    registers, the payment-based debt register and the share of each payment that recovers
    it (``debt_recovery_per_payment``, hundredths of a percent), and the configuration."""

    meter_balance: int = 0
    emergency_credit: int = 0
    emergency_credit_active: bool = False
    time_debts: tuple[TimeDebt, TimeDebt] = (TimeDebt(), TimeDebt())
    payment_debt: int = 0
    debt_recovery_per_payment: int = 0
    configuration: PrepaymentConfiguration = PrepaymentConfiguration()
    accumulated_debt: int = 0  # the debt collected so far

    def daily_read(self) -> tuple[int, int, int, int, int, int]:
        """What the prepayment daily read log (ECS21b) keeps each midnight, in its order:
        meter balance, emergency credit balance, accumulated debt, payment-based debt, time
        debt registers 1 and 2."""
        first, second = self.time_debts
        return (
            self.meter_balance,
            self.emergency_credit,
            self.accumulated_debt,
            self.payment_debt,
            first.remaining,
            second.remaining,
        )

    def to_state(self) -> dict[str, Any]:
        return self._state

    @functools.cached_property
    def _state(self) -> dict[str, Any]:
        # Built once, as PrepaymentConfiguration's (the daily history holds many of these).
        state = {name: getattr(self, name) for name in _PREPAYMENT_FIELDS}
        state["time_debts"] = [
            {name: getattr(d, name) for name in _TIME_DEBT_FIELDS} for d in self.time_debts
        ]
        state["configuration"] = self.configuration.to_state()
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Prepayment:
        first, second = (TimeDebt(**{k: int(v) for k, v in d.items()}) for d in state["time_debts"])
        return cls(
            meter_balance=int(state["meter_balance"]),
            emergency_credit=int(state["emergency_credit"]),
            emergency_credit_active=bool(state["emergency_credit_active"]),
            time_debts=(first, second),
            payment_debt=int(state["payment_debt"]),
            debt_recovery_per_payment=int(state["debt_recovery_per_payment"]),
            accumulated_debt=int(state.get("accumulated_debt", 0)),
            configuration=PrepaymentConfiguration.from_state(state["configuration"]),
        )

    @property
    def debt(self) -> int:
        """The debt the meter holds: both time debt registers and the payment-based one."""
        return sum(d.remaining for d in self.time_debts) + self.payment_debt


_TIME_DEBT_FIELDS = tuple(f.name for f in dataclasses.fields(TimeDebt))
_PREPAYMENT_CONFIGURATION_FIELDS = tuple(
    f.name for f in dataclasses.fields(PrepaymentConfiguration)
)
_PREPAYMENT_FIELDS = tuple(f.name for f in dataclasses.fields(Prepayment))


def _debt_recovery_rate(value: Data) -> tuple[int, int]:
    """(price scale, rate) of a time debt register's unit charge (one charge table entry)."""
    try:
        scaler, _commodity, table = value.items
        entries = table.items
        if len(entries) != 1:
            raise GbcsError("a time debt recovery rate has one charge table entry")
        return scaler.items[1].integer, entries[0].items[1].integer
    except (IndexError, ValueError) as exc:
        raise GbcsError(f"bad time debt unit charge: {exc}") from exc


def _prepayment_configuration(values: Mapping[tuple[bytes, int], Data]) -> PrepaymentConfiguration:
    """ECS08a's values (by instance and attribute) as the configuration they set;
    :class:`ValueError` for a negative limit, threshold or maximum."""
    amounts = {
        name: values[(instance, THRESHOLD_VALUE)].integer
        for name, instance in (
            ("emergency_credit_limit", EMERGENCY_CREDIT_LIMIT),
            ("emergency_credit_threshold", EMERGENCY_CREDIT_THRESHOLD),
            ("low_credit_threshold", LOW_CREDIT_THRESHOLD),
            ("max_meter_balance", MAX_METER_BALANCE),
            ("max_credit_threshold", MAX_CREDIT_THRESHOLD),
        )
    }
    negative = [name for name, amount in amounts.items() if amount < 0]
    if negative:
        raise ValueError(f"negative {', '.join(negative)}")
    return PrepaymentConfiguration(
        debt_recovery_rate_cap=values[(DEBT_RECOVERY_RATE_CAP, THRESHOLD_VALUE)].integer,
        special_days=values[(SPECIAL_DAYS_NON_DISABLEMENT_PASSIVE, ENTRIES)].encode(),
        schedule=values[(NON_DISABLEMENT_SCHEDULE_PASSIVE, ENTRIES)].encode(),
        **amounts,
    )


CURRENCY_GBP = 1
CURRENCY_UNIT = 254
ECS01A_TARIFF_ITEMS = 15  # the data items of ECS01a that hold the tariff (then activation)
# a new meter's tariff: one season, every day one TOU rate, no prices yet
DEFAULT_TARIFF = Tariff(
    seasons=((b"all", TariffDate(None, 1, 1), 1),),
    weeks=((1, (1,) * 7),),
    days=(DayProfile(1, (((0, 0, 0), 1),)),),
    special_days=(),
    thresholds=((0xFFFFFFFF,),) * 8,
    standing_charge=0,
    standing_charge_scale=-5,
    price_scale=-5,
)


def _tariff_date(raw: bytes) -> TariffDate:
    if len(raw) < 5:
        raise GbcsError("bad tariff date")
    year = int.from_bytes(raw[:2], "big")
    month, day, weekday = (None if v == 0xFF else v for v in raw[2:5])
    return TariffDate(None if year == 0xFFFF else year, month, day, weekday)


def tariff_from_data(items: tuple[Data, ...]) -> Tariff:
    """The tariff ECS01a's first 15 data items hold (seasons, weeks, days, special days, the
    8 block threshold arrays, TRUE, standing charge, prices); :class:`GbcsError` when they
    are not that layout or refer to a week, day or rate the tariff does not have."""
    if len(items) < ECS01A_TARIFF_ITEMS:
        raise GbcsError("ECS01a command does not carry a tariff")
    seasons, weeks, days, special, *rest = items
    thresholds, standing, energy = rest[:8], rest[9], rest[10]
    try:
        tariff = Tariff(
            seasons=tuple(
                (s.items[0].octets, _tariff_date(s.items[1].octets), s.items[2].octets[0])
                for s in seasons.items
            ),
            weeks=tuple(
                (w.items[0].octets[0], tuple(d.integer for d in w.items[1:])) for w in weeks.items
            ),
            days=tuple(
                DayProfile(
                    d.items[0].integer,
                    tuple((_hms(a.items[0].octets), a.items[2].integer) for a in d.items[1].items),
                )
                for d in days.items
            ),
            special_days=tuple(
                (_tariff_date(d.items[1].octets), d.items[2].integer) for d in special.items
            ),
            thresholds=tuple(tuple(t.integer for t in rate.items) for rate in thresholds),
            standing_charge=standing.items[2].items[0].items[1].integer,
            standing_charge_scale=standing.items[0].items[1].integer,
            price_scale=energy.items[0].items[1].integer,
            tou_prices=_trimmed(
                tuple(e.items[1].integer for e in energy.items[2].items[:TOU_RATES])
            ),
            block_prices=tuple(
                (_block_cell(e.items[0].octets[0]), e.items[1].integer)
                for e in energy.items[2].items[TOU_RATES:]
                if e.items[1].integer
            ),
        )
    except (IndexError, ValueError) as exc:
        raise GbcsError(f"ECS01a tariff layout: {exc}") from exc
    _check_references(tariff)
    return tariff


def _hms(raw: bytes) -> tuple[int, int, int]:
    if len(raw) != 4:
        raise GbcsError("bad day profile start time")
    return raw[0], raw[1], raw[2]


def _block_cell(index: int) -> tuple[int, int]:
    """(rate, block) of a price matrix block index: 0xA1 is rate 1 block 1, 0xB2 rate 2
    block 2 ..."""
    return index & 0x0F, (index >> 4) - 0x9


def _tariff_items(tariff: Tariff) -> tuple[Data, ...]:
    """``tariff`` as ECS01a's first data items (what :func:`tariff_from_data` reads)."""
    items = tariff_items(tariff)
    return (
        items["seasons"],
        items["weeks"],
        items["days"],
        items["special_days"],
        *tariff_thresholds(tariff),
        dlms.boolean(True),
        items["standing_charge"],
        items["prices"],
    )


@functools.lru_cache(maxsize=4096)
def _tariff_state(tariff: Tariff) -> tuple[bytes, ...]:
    """``tariff`` as ECS01a's encoded data items; cached, as a host asks for a meter's
    non-volatile state after every command and meters share few tariffs."""
    return tuple(item.encode() for item in _tariff_items(tariff))


def _tariff_restored(state: list[bytes] | tuple[bytes, ...]) -> Tariff:
    return _tariff_decoded(tuple(bytes(item) for item in state))


@functools.lru_cache(maxsize=4096)
def _tariff_decoded(state: tuple[bytes, ...]) -> Tariff:
    """The tariff of ``_tariff_state``'s items (cached like it: a rebuilt meter restores one)."""
    return tariff_from_data(tuple(Data.decode(item) for item in state))


def _trimmed(prices: tuple[int, ...]) -> tuple[int, ...]:
    end = len(prices)
    while end and not prices[end - 1]:
        end -= 1
    return prices[:end]


def _check_references(tariff: Tariff) -> None:
    weeks = {w for w, _ in tariff.weeks}
    days = {d.day_id for d in tariff.days}
    selectors = set(range(1, TOU_RATES + 1)) | {
        BLOCK_SCRIPT_OFFSET + n for n in range(1, BLOCK_RATES + 1)
    }
    if (
        not tariff.seasons
        or any(week not in weeks for _, _, week in tariff.seasons)
        or any(d not in days for _, ds in tariff.weeks for d in ds)
        or any(len(ds) != 7 for _, ds in tariff.weeks)
        or any(day not in days for _, day in tariff.special_days)
        or any(sel not in selectors for d in tariff.days for _, sel in d.actions)
        or len(tariff.thresholds) != BLOCK_RATES
        or any(len(rate) > BLOCKS - 1 for rate in tariff.thresholds)
    ):
        raise ValueError("tariff refers to a season week, day or rate it does not define")


def _tariff_fits(tariff: Tariff) -> bool:
    """Whether the meter can run ``tariff``: it refers only to what it defines."""
    try:
        _check_references(tariff)
    except ValueError:
        return False
    return True


class SupplyState(IntEnum):
    """The load switch, as the disconnect control object's control_state reports it."""

    DISCONNECTED = 0
    CONNECTED = 1
    ARMED = 2  # ready_for_reconnection: the consumer closes it


class Esme(MethodAMeterJoins, LoadControllerCredentials, FirmwareImages, GbcsDevice):
    """An ESME: import registers derived from the injected clock and its load profile; its
    HAN joins (CS03A1, CS03B, CS03C, CS07) from ``emulators.han``, its trust anchor cells
    (CS02b, CS02g) from ``emulators.credentials`` and its firmware (CS06) from
    ``emulators.firmware``, the code the GSME shares."""

    def __init__(
        self,
        *,
        load_profile: LoadProfile | None = None,
        epoch: datetime | None = None,
        trust_anchors: tuple[TrustAnchor, ...] = (),
        root_public_key: ec.EllipticCurvePublicKey | None = None,
        **device: Unpack[DeviceKeys],
    ) -> None:
        """``epoch`` is when the registers held the profile's start values (default: now).
        ``trust_anchors`` are the meter's remote party cells and ``root_public_key`` its Root
        cell: a credentials update (6.15.1) replaces a cell when the new certificate's path
        leads to the Root; without them it has no cell to replace."""
        super().__init__(**device)
        self.load_profile = load_profile or LoadProfile()
        self.epoch = epoch if epoch is not None else self.clock()
        self.supply = SupplyState.CONNECTED
        self.clock_offset = timedelta()  # device clock minus the injected clock (set by ECS70)
        self.firmware_version = DEFAULT_FIRMWARE_VERSION
        self.supplier_message: bytes | None = None  # what ECS10 last put on the display
        self.applied_utrns: list[bytes] = []  # top-ups accepted by CS01a, oldest first
        self.account = _default_account(self.load_profile.twin_element)  # the account in force
        # the passive account ECS02/ECS03 set for a future date-time, and that date-time
        self.pending_account: tuple[Account, datetime] | None = None
        # the prepayment registers in force, and since when (device time) each value held, for
        # the prepayment daily read log: oldest first, pruned to the log's depth
        self.prepayment_history: list[tuple[datetime, Prepayment]] = []
        self.prepayment = Prepayment()  # debts, emergency credit, prepayment configuration
        # a future-dated ECS08a's configuration and its execution date-time
        self.pending_prepayment_configuration: tuple[PrepaymentConfiguration, datetime] | None = (
            None
        )
        # held future-dated changes ("account", "tariff", "prepayment_configuration") the
        # estate has scripted to fail when they fall due (a meter unable to execute them)
        self.failing_future_dated: set[str] = set()
        self.import_mpxn = b""  # the MPAN(s) ECS39a set, ASCII (primary, then secondary)
        self.privacy_pin_protected = True  # until ECS14 disables the PIN
        # ECS34's instantaneous power thresholds (W): low/medium, medium/high
        self.power_thresholds = DEFAULT_POWER_THRESHOLDS
        self.tariff = DEFAULT_TARIFF  # the tariff in force (ECS24 reads it)
        self.pending_tariff: tuple[Tariff, datetime] | None = None  # a future-dated ECS01a
        self.hold_trust_anchors(trust_anchors, root_public_key)
        # ``future_dated`` (GbcsDevice) holds who sent the held changes, for their outcome
        # alerts: "account", "tariff", "prepayment_configuration", "activation"
        # logs ECS35a/b/e read (log instance id -> entries); tests and the estate append
        self.logs: dict[bytes, list[LogEntry]] = {
            EVENT_LOG: [],
            SECURITY_LOG: [],
            POWER_EVENT_LOG: [],
        }

    def device_time(self, now: datetime) -> datetime:
        return now + self.clock_offset

    @property
    def prepayment(self) -> Prepayment:
        """The prepayment registers in force (setting them records the change, with the
        device time, for the prepayment daily read log)."""
        return self._prepayment

    @prepayment.setter
    def prepayment(self, value: Prepayment) -> None:
        self._prepayment = value
        at = self.device_time(self.clock())
        history = self.prepayment_history
        # a value no midnight saw is never in the log: the next value replaces it, so the
        # history holds at most one value a day
        while history and _midnight_at_or_after(history[-1][0]) >= at:
            history.pop()
        history.append((at, value))
        cutoff = at - PREPAYMENT_DAILY_READ_LOG.depth
        while len(history) > 1 and history[1][0] <= cutoff:
            history.pop(0)  # the value in force at the cutoff stays

    def prepayment_at(self, device_at: datetime) -> Prepayment:
        """The prepayment registers as they were when the device clock read ``device_at``."""
        held = self.prepayment_history[0][1]
        for at, value in self.prepayment_history:
            if at > device_at:
                break
            held = value
        return held

    def nonvolatile_state(self) -> dict[str, Any]:
        """What the meter keeps across a power cycle, as msgpack-able values: the load switch,
        the clock offset, the accounts (active and pending), the firmware (running version,
        received images, a pending activation), the MPAN, the privacy PIN, the power
        thresholds, the tariffs (in force and pending), the trust anchor cells, a pending
        credentials update, who sent each held future-dated command (for its outcome alert),
        the top-ups applied, the supplier's message, the prepayment registers (and their
        daily history), a pending prepayment configuration and the held changes scripted to
        fail."""
        pending = None
        if self.pending_account is not None:
            account, at = self.pending_account
            pending = {"account": account.to_state(), "at": at.isoformat()}
        return {
            "supply": int(self.supply),
            "clock_offset_us": self.clock_offset // timedelta(microseconds=1),
            "account": self.account.to_state(),
            "pending_account": pending,
            **self.firmware_state(),
            "import_mpxn": self.import_mpxn,
            "privacy_pin_protected": self.privacy_pin_protected,
            "power_thresholds": list(self.power_thresholds),
            "tariff": _tariff_state(self.tariff),
            "pending_tariff": None
            if self.pending_tariff is None
            else {
                "tariff": _tariff_state(self.pending_tariff[0]),
                "at": self.pending_tariff[1].isoformat(),
            },
            **self.credentials_state(),
            "future_dated": self.future_dated_state(),
            "prepayment": self.prepayment.to_state(),
            "prepayment_history": [
                [at.isoformat(), value.to_state()] for at, value in self.prepayment_history
            ],
            "pending_prepayment_configuration": None
            if self.pending_prepayment_configuration is None
            else {
                "configuration": self.pending_prepayment_configuration[0].to_state(),
                "at": self.pending_prepayment_configuration[1].isoformat(),
            },
            "failing_future_dated": sorted(self.failing_future_dated),
            "utrns": list(self.applied_utrns),
            "supplier_message": self.supplier_message,
            **MeterJoins.nonvolatile_state(self),  # the join table
        }

    def restore_nonvolatile_state(self, state: Mapping[str, Any]) -> None:
        """Undo ``nonvolatile_state``: each key present is restored, an absent one keeps what
        the model was built with (a host may keep only what changed)."""
        if "supply" in state:
            self.supply = SupplyState(int(state["supply"]))
        if "joined" in state:
            MeterJoins.restore_nonvolatile_state(self, state)
        if "clock_offset_us" in state:
            self.clock_offset = timedelta(microseconds=int(state["clock_offset_us"]))
        if "account" in state:
            self.account = Account.from_state(state["account"])
        if "pending_account" in state:
            pending = state["pending_account"]
            self.pending_account = (
                None
                if pending is None
                else (Account.from_state(pending["account"]), datetime.fromisoformat(pending["at"]))
            )
        self.restore_firmware_state(state)
        if "import_mpxn" in state:
            self.import_mpxn = bytes(state["import_mpxn"])
        if "privacy_pin_protected" in state:
            self.privacy_pin_protected = bool(state["privacy_pin_protected"])
        if "power_thresholds" in state:
            low, high = (int(v) for v in state["power_thresholds"])
            self.power_thresholds = (low, high)
        if "tariff" in state:
            self.tariff = _tariff_restored(state["tariff"])
        if "pending_tariff" in state:
            pending_tariff = state["pending_tariff"]
            self.pending_tariff = (
                None
                if pending_tariff is None
                else (
                    _tariff_restored(pending_tariff["tariff"]),
                    datetime.fromisoformat(pending_tariff["at"]),
                )
            )
        self.restore_credentials_state(state)
        if "future_dated" in state:
            self.restore_future_dated_state(state["future_dated"])
        if "utrns" in state:
            self.applied_utrns = [bytes(u) for u in state["utrns"]]
        if "prepayment" in state:
            self.prepayment = Prepayment.from_state(state["prepayment"])
        if state.get("prepayment_history"):
            self.prepayment_history = [
                (datetime.fromisoformat(at), Prepayment.from_state(value))
                for at, value in state["prepayment_history"]
            ]
        if "pending_prepayment_configuration" in state:
            held = state["pending_prepayment_configuration"]
            self.pending_prepayment_configuration = (
                None
                if held is None
                else (
                    PrepaymentConfiguration.from_state(held["configuration"]),
                    datetime.fromisoformat(held["at"]),
                )
            )
        if "failing_future_dated" in state:
            self.failing_future_dated = {str(kind) for kind in state["failing_future_dated"]}
        if "supplier_message" in state:
            message = state["supplier_message"]
            self.supplier_message = None if message is None else bytes(message)

    def handle(self, command_bytes: bytes) -> bytes:
        """As :meth:`GbcsDevice.handle`, once the future-dated changes now due are made."""
        self.run_due(self.clock())
        return super().handle(command_bytes)

    def next_due(self) -> datetime | None:
        """When (on the injected clock) the earliest held future-dated change falls due."""
        times = [
            held[1]
            for held in (
                self.pending_account,
                self.pending_tariff,
                self.pending_activation,
                self.pending_credentials,
                self.pending_prepayment_configuration,
            )
            if held is not None
        ]
        return min(times) - self.clock_offset if times else None

    def run_due(self, now: datetime) -> None:
        """Carry out the future-dated commands whose execution date-time the device clock has
        reached (a 1.6 payment mode change, a 1.1.1 tariff, an 11.3 firmware activation, a
        6.15.1 credentials update), each raising its future-dated outcome alert (0x8F66, or
        0x8F67 when it failed) for the remote party that sent it."""
        self.activate_due(now)
        device_now = self.device_time(now)
        self.run_due_firmware(now)
        if self.pending_tariff is not None and device_now >= self.pending_tariff[1]:
            tariff, when = self.pending_tariff
            self.pending_tariff = None
            executed = self._executable("tariff", lambda: _tariff_fits(tariff))
            if executed:
                self.tariff = tariff
            self._dlms_outcomes("tariff", when, now, executed=executed)
        held = self.pending_prepayment_configuration
        if held is not None and device_now >= held[1]:
            configuration, when = held
            self.pending_prepayment_configuration = None
            executed = self._executable("prepayment_configuration", lambda: True)
            if executed:
                self.prepayment = dataclasses.replace(self.prepayment, configuration=configuration)
            self._dlms_outcomes("prepayment_configuration", when, now, executed=executed)
        self.run_due_credentials(now)

    def script_future_dated_failure(self, kind: str) -> None:
        """Make the held DLMS change ``kind`` ("account", "tariff" or
        "prepayment_configuration") fail when it falls due, as a meter unable to execute it
        (once): it changes nothing and raises 0x8F67."""
        if kind not in ("account", "tariff", "prepayment_configuration"):
            raise ValueError(f"no held DLMS change {kind!r}")
        self.failing_future_dated.add(kind)

    def _executable(self, kind: str, fits: Callable[[], bool]) -> bool:
        """Whether the held change ``kind`` can execute now: not scripted to fail, and
        ``fits`` the meter as it is at its execution time."""
        if kind in self.failing_future_dated:
            self.failing_future_dated.discard(kind)
            return False
        return fits()

    def _dlms_outcomes(
        self, kind: str, when: datetime, now: datetime, *, executed: bool = True
    ) -> None:
        """The outcome alerts of the held DLMS command ``kind`` that has just fallen due: one
        per part it changes, 0x8F66 when it ``executed``, 0x8F67 when it failed."""
        held = self.future_dated.pop(kind, None)
        if held is None:
            return
        recipient, command_counter, use_case = held
        message_code = USE_CASES_BY_NAME[use_case].message_code
        for class_id, instance, member in FUTURE_DATED_TARGETS[use_case]:
            counter = self.next_alert_counter(now)
            target = DlmsFutureDatedTarget(
                message_code, command_counter, class_id, instance, member
            )
            payload = future_dated_notification(counter, executed, encode_date_time(when), target)
            self._raise_alert(
                ALERT_FUTURE_DATED_EXECUTED if executed else ALERT_FUTURE_DATED_FAILED,
                recipient,
                counter,
                MESSAGE_CODE_FUTURE_DATED_DLMS,
                payload,
                now=now,
            )

    def activate_due(self, now: datetime) -> bool:
        """Make a pending account the one in force once the device clock reaches its
        activation date-time (a future-dated 1.6 executing); True if it did. A held account
        that no longer fits the meter (a credit or charge it lacks) or that the estate
        scripted to fail is dropped instead, with 0x8F67."""
        if self.pending_account is None or self.device_time(now) < self.pending_account[1]:
            return False
        account, when = self.pending_account
        self.pending_account = None
        executed = self._executable("account", lambda: self._account_fits(account))
        if executed:
            self.account = account
        self._dlms_outcomes("account", when, now, executed=executed)
        return executed

    def _account_fits(self, account: Account) -> bool:
        """Whether every credit reference of ``account`` names a credit and a charge this
        meter has."""
        charges = self._charges()
        return all(
            c in PREPAYMENT_CREDITS and g in charges for c, g, *_ in account.credit_references
        )

    def registers(self, now: datetime) -> ImportRegisters:
        """The import registers at ``now`` (never below their start values)."""
        profile = self.load_profile
        hours = max((now - self.epoch).total_seconds(), 0.0) / 3600.0
        consumed_wh = profile.mean_power_w * hours
        secondary = None
        if profile.twin_element:
            secondary = int(consumed_wh * profile.secondary_share) % REGISTER_MODULUS
        return ImportRegisters(
            active_import=(profile.start_import_wh + int(consumed_wh)) % REGISTER_MODULUS,
            reactive_import=(
                profile.start_reactive_varh + int(consumed_wh * profile.reactive_ratio)
            )
            % REGISTER_MODULUS,
            secondary_active_import=secondary,
        )

    @on(ECS17B)
    def read_import_registers(
        self,
        *,
        command: GeneralCiphering,
        remote_party: RemoteParty,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """ECS17b: the import registers, encrypted for the requesting remote party."""
        return build_ecs17b_response(
            command=command,
            registers=self.registers(now),
            date_time=encode_date_time(now),
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )

    def _signed_success(self, command: GeneralCiphering, request: AccessRequest | None) -> bytes:
        if request is None:
            raise GbcsError("critical command payload is not an Access Request")
        return build_signed_access_response(
            command=command,
            data=tuple(dlms.null() for _ in request.specs),
            results=tuple(ACTION_SUCCESS for _ in request.specs),
            device_ds_private=self.ds_private_key,
        )

    def _signed_results(
        self, command: GeneralCiphering, request: AccessRequest, results: list[int], now: datetime
    ) -> bytes:
        """A critical set's response (ECS01a, ECS02/ECS03, ECS08a): a null and ``results`` for
        the request's specifications, signed, with the meter's date-time."""
        return build_signed_access_response(
            command=command,
            data=tuple(dlms.null() for _ in request.specs),
            results=tuple(results),
            device_ds_private=self.ds_private_key,
            date_time=encode_date_time(self.device_time(now)),
        )

    @on(USE_CASES_BY_NAME["ECS42"])
    def enable_supply(
        self, *, command: GeneralCiphering, request: AccessRequest | None, **_: Any
    ) -> bytes:
        """ECS42 (7.1): close the load switch."""
        self.supply = SupplyState.CONNECTED
        return self._signed_success(command, request)

    @on(USE_CASES_BY_NAME["ECS43"])
    def disable_supply(
        self, *, command: GeneralCiphering, request: AccessRequest | None, **_: Any
    ) -> bytes:
        """ECS43 (7.2): open the load switch."""
        self.supply = SupplyState.DISCONNECTED
        return self._signed_success(command, request)

    @on(USE_CASES_BY_NAME["ECS44"])
    def arm_supply(
        self, *, command: GeneralCiphering, request: AccessRequest | None, **_: Any
    ) -> bytes:
        """ECS44 (7.3): arm the load switch; an open switch becomes ready for the consumer to
        close (a closed one stays closed)."""
        if self.supply == SupplyState.DISCONNECTED:
            self.supply = SupplyState.ARMED
        return self._signed_success(command, request)

    @on(USE_CASES_BY_NAME["ECS45"])
    def read_supply_status(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """ECS45 (7.4): the load switch state, MAC'd (no date-time, as the RTDS response)."""
        return self._maced(command, remote_party, dlms.enum(int(self.supply)))

    def _maced(
        self,
        command: GeneralCiphering,
        remote_party: RemoteParty,
        data: Data,
        date_time: datetime | None = None,
    ) -> bytes:
        return self._read_response(command, remote_party, (data,), date_time)

    def _read_response(
        self,
        command: GeneralCiphering,
        remote_party: RemoteParty,
        data: tuple[Data, ...],
        date_time: datetime | None = None,
    ) -> bytes:
        """A read's MAC'd response: every attribute read successfully, in order."""
        return build_access_response(
            command=command,
            data=data,
            results=tuple(ACTION_SUCCESS for _ in data),
            date_time=None if date_time is None else encode_date_time(date_time),
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )

    @on(USE_CASES_BY_NAME["ECS52"])
    def read_firmware_version(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """ECS52 (11.2): the firmware version, an octet string (no header date-time)."""
        return self._maced(command, remote_party, dlms.octet_string(self.firmware_version))

    @on(USE_CASES_BY_NAME["ECS10"])
    def display_message(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        **_: Any,
    ) -> bytes:
        """ECS10 (3.1): show the supplier's message; answer the set with success."""
        if request is None or len(request.data) != 1:
            raise GbcsError("ECS10 command does not carry one message")
        self.supplier_message = request.data[0].octets
        return self._maced(command, remote_party, dlms.null())

    @on(USE_CASES_BY_NAME["CS01a"])
    def top_up(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """CS01a (2.2): accept a UTRN once; a repeated UTRN is refused with other-reason."""
        if request is None or len(request.data) != 1:
            raise GbcsError("CS01a command does not carry one UTRN")
        utrn = request.data[0].octets
        if utrn in self.applied_utrns:
            raise DeviceFault(ACTION_OTHER_REASON)
        self.applied_utrns.append(utrn)
        return self._maced(command, remote_party, dlms.null(), self.device_time(now))

    def _read_log(
        self, command: GeneralCiphering, request: AccessRequest | None, remote_party: RemoteParty
    ) -> bytes:
        if request is None or len(request.specs) != 1 or request.specs[0].selection is None:
            raise GbcsError("ECS35 command is not a selective log read")
        spec = request.specs[0]
        assert spec.selection is not None
        bounds = spec.selection.parameters.items
        if len(bounds) != 4:
            raise GbcsError("ECS35 range descriptor is not (column, from, to, columns)")
        start = GBCS_EPOCH + timedelta(seconds=bounds[1].integer)
        end = GBCS_EPOCH + timedelta(seconds=bounds[2].integer)
        entries = self.logs.get(spec.instance_id)
        if entries is None:
            raise DeviceFault(ACTION_OTHER_REASON)
        contents = b"".join(e.packed() for e in entries if start <= e.at <= end)
        data = Data(DataType.COMPACT_ARRAY, CompactArray(EVENT_TYPE_DESCRIPTION, contents))
        return self._maced(command, remote_party, data)

    @on(USE_CASES_BY_NAME["ECS35a"], USE_CASES_BY_NAME["ECS35b"], USE_CASES_BY_NAME["ECS35e"])
    def read_log(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        **_: Any,
    ) -> bytes:
        """ECS35a / ECS35b / ECS35e (6.13): the event, security or power event log entries in
        the requested range, a compact array (the request names the log's object)."""
        return self._read_log(command, request, remote_party)

    def _log_registers(self, device_at: datetime) -> ImportRegisters:
        """The import registers when the device clock read ``device_at``."""
        return self.registers(device_at - self.clock_offset)

    def _daily_read(self, at: datetime) -> list[int]:
        """A daily read log entry: the registers at midnight. The emulated tariff is single
        rate and not a block tariff: all import is on TOU register 1, the block counters 0."""
        registers = self._log_registers(at)
        tou = [registers.active_import] + [0] * (TOU_REGISTERS - 1)
        blocks = [0] * (BLOCK_COUNTER_ROWS * BLOCK_COUNTER_COLUMNS)
        if registers.secondary_active_import is None:
            return [registers.active_import, *tou, *blocks]
        secondary = registers.secondary_active_import
        secondary_tou = [secondary] + [0] * (SECONDARY_TOU_REGISTERS - 1)
        return [registers.active_import, secondary, *tou, *secondary_tou, *blocks]

    def _consumption(self, at: datetime, period: timedelta) -> list[int]:
        """Import in the ``period`` ending at ``at`` (and the second element's, twin)."""
        before, after = self._log_registers(at - period), self._log_registers(at)
        values = [(after.active_import - before.active_import) % REGISTER_MODULUS]
        if after.secondary_active_import is not None:
            previous = before.secondary_active_import or 0
            values.append((after.secondary_active_import - previous) % REGISTER_MODULUS)
        return values

    def _protected_log_read(
        self,
        log: ProtectedLog,
        entry: Callable[[datetime], list[int]],
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        now: datetime,
    ) -> bytes:
        start, end = _protected_read_range(request)
        """``log``'s entries in the command's range, each ``entry(time)``, encrypted."""
        twin = self.load_profile.twin_element
        contents = b"".join(
            _pack(int((at - GBCS_EPOCH).total_seconds()), *entry(at))
            for at in log.stamps(start, end, self.device_time(now))
        )
        content = dlms.structure(
            Data(DataType.COMPACT_ARRAY, CompactArray(log.type_description(twin), contents))
        )
        return build_protected_read_response(
            command=command,
            content=content,
            date_time=None,  # the RTDS responses carry no date-time
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )

    @on(USE_CASES_BY_NAME["ECS21a"])
    def read_daily_read_log(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """ECS21a (4.6.1): the daily read log (registers at each midnight) in the range."""
        return self._protected_log_read(
            DAILY_READ_LOG, self._daily_read, command, request, remote_party, now
        )

    @on(USE_CASES_BY_NAME["ECS22b"])
    def read_profile_data(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """ECS22b (4.8.1): the half-hourly active import profile in the range."""
        return self._protected_log_read(
            PROFILE_DATA_LOG,
            lambda at: self._consumption(at, HALF_HOUR),
            command,
            request,
            remote_party,
            now,
        )

    @on(USE_CASES_BY_NAME["ECS66"])
    def read_daily_consumption_log(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """ECS66 (4.17): each day's import (to midnight) in the range; primary element only."""
        return self._protected_log_read(
            DAILY_CONSUMPTION_LOG,
            lambda at: self._consumption(at, DAY)[:1],
            command,
            request,
            remote_party,
            now,
        )

    def _charges(self) -> frozenset[bytes]:
        if self.load_profile.twin_element:
            return SINGLE_ELEMENT_CHARGES | {CREDIT_REFERENCE_TWIN}
        return SINGLE_ELEMENT_CHARGES

    @on(USE_CASES_BY_NAME["ECS02"], USE_CASES_BY_NAME["ECS03"])
    def update_payment_mode(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """ECS02 / ECS03 (1.6): set the passive account (payment mode, credit references, for
        ECS03 the disablement threshold) and activate it now, at the execution date-time, or
        (every field unspecified) cancel a pending one. A credit reference naming a credit or
        charge this meter lacks (a twin-element charge on a single-element ESME) fails that
        set with object-undefined, the later ones with other-reason, and changes nothing."""
        header = command.general_signing
        use_case = USE_CASES_BY_NAME["ECS02"]
        if header.message_code != use_case.message_code:
            use_case = USE_CASES_BY_NAME["ECS03"]
        if request is None or request.specs != LAYOUTS[use_case.name].specs:
            raise GbcsError(f"{use_case.name} command does not carry the payment mode layout")
        values = dict(
            zip(((s.class_id, s.member_id) for s in request.specs), request.data, strict=True)
        )
        mode = values[(111, 2)].items
        if len(mode) != 2 or (mode[0].integer, mode[1].integer) != (
            PAYMENT_MODES[use_case.name],
            ACCOUNT_STATUS_NEW,
        ):
            raise GbcsError(f"{use_case.name} sets another payment mode")
        references = tuple(_credit_reference(r) for r in values[(111, 11)].items)
        threshold = values[(9000, 4)].integer if (9000, 4) in values else None
        activation = values[(111, 13)].octets
        results = [ACTION_SUCCESS] * len(request.specs)
        account = Account(PAYMENT_MODES[use_case.name], references, threshold)
        if not self._account_fits(account):
            failed = [s.member_id for s in request.specs].index(11)
            results[failed] = OBJECT_UNDEFINED
            results[failed + 1 :] = [ACTION_OTHER_REASON] * (len(results) - failed - 1)
        else:
            if activation == UNSPECIFIED_DATE_TIME:
                self.pending_account = None  # the cancellation of a future-dated change
                self.future_dated.pop("account", None)
            elif activation == IMMEDIATE_DATE_TIME:
                self.account, self.pending_account = account, None
                self.future_dated.pop("account", None)
            else:
                self.pending_account = (account, _parse_date_time(activation))
                self.future_dated["account"] = (
                    header.originator_title,
                    header.originator_counter,
                    use_case.name,
                )
                self.activate_due(now)
        return self._signed_results(command, request, results, now)

    @on(USE_CASES_BY_NAME["ECS26j"])
    def read_payment_mode(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """ECS26j (6.2.9): the account in force's mode and status (no header date-time)."""
        self.activate_due(now)
        mode = dlms.structure(
            dlms.enum(self.account.payment_mode), dlms.enum(ACCOUNT_STATUS_ACTIVE)
        )
        return self._maced(command, remote_party, mode)

    @on(USE_CASES_BY_NAME["ECS15a"])
    def clear_event_log(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        **_: Any,
    ) -> bytes:
        """ECS15a (3.3): empty the event log (reset its buffer); no header date-time."""
        if request is None or [s.instance_id for s in request.specs] != [EVENT_LOG]:
            raise GbcsError("ECS15a command does not reset the event log")
        self.logs[EVENT_LOG].clear()
        return self._maced(command, remote_party, dlms.null())

    @on(USE_CASES_BY_NAME["ECS39a"])
    def set_import_mpxn(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        **_: Any,
    ) -> bytes:
        """ECS39a (6.20.1): keep the MPAN (two, one after the other, on a twin-element ESME);
        a value that is not one 13-digit MPAN per element is refused with other-reason."""
        if request is None or len(request.data) != 1:
            raise GbcsError("ECS39a command does not carry one MPxN")
        value = request.data[0].octets
        elements = 2 if self.load_profile.twin_element else 1
        if len(value) != MPAN_LENGTH * elements or not value.isdigit():
            raise DeviceFault(ACTION_OTHER_REASON)
        self.import_mpxn = value
        return self._maced(command, remote_party, dlms.null())

    @on(USE_CASES_BY_NAME["ECS01a"])
    def update_import_tariff(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """ECS01a (1.1.1): take the tariff into the passive objects and activate it now, at
        the execution date-time, or (every field unspecified) cancel a pending one. A tariff
        naming a week, day or rate it does not define changes nothing: every set fails with
        other-reason."""
        if request is None or request.specs != LAYOUTS["ECS01a"].specs:
            raise GbcsError("ECS01a command does not carry the tariff layout")
        activation = request.data[ECS01A_TARIFF_ITEMS].octets
        if any(d.octets != activation for d in request.data[ECS01A_TARIFF_ITEMS:]):
            raise GbcsError("ECS01a activation date-times differ")
        results = [ACTION_SUCCESS] * len(request.specs)
        try:
            tariff = tariff_from_data(request.data)
        except ValueError:
            results = [ACTION_OTHER_REASON] * len(request.specs)
        else:
            header = command.general_signing
            if activation == UNSPECIFIED_DATE_TIME:
                self.pending_tariff = None
                self.future_dated.pop("tariff", None)
            elif activation == IMMEDIATE_DATE_TIME:
                self.tariff, self.pending_tariff = tariff, None
                self.future_dated.pop("tariff", None)
            else:
                self.pending_tariff = (tariff, _parse_date_time(activation))
                self.future_dated["tariff"] = (
                    header.originator_title,
                    header.originator_counter,
                    "ECS01a",
                )
                self.run_due(now)
        return self._signed_results(command, request, results, now)

    @on(USE_CASES_BY_NAME["ECS24"])
    def read_tariff(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """ECS24 (4.11.1): the tariff in force (the active calendar, special days, block
        thresholds, unit charges), MAC'd, no header date-time."""
        tariff = self.tariff
        items = tariff_items(tariff)
        data = (
            dlms.double_long_unsigned(CURRENCY_GBP),
            dlms.structure(dlms.integer(tariff.price_scale), dlms.enum(CURRENCY_UNIT)),
            items["seasons"],
            items["weeks"],
            items["days"],
            items["special_days"],
            *tariff_thresholds(tariff, pad=True),
            dlms.boolean(True),
            items["standing_charge"],
            items["prices"],
        )
        return self._read_response(command, remote_party, data)

    @on(USE_CASES_BY_NAME["ECS14"])
    def disable_privacy_pin(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        **_: Any,
    ) -> bytes:
        """ECS14 (3.5): the privacy PIN is set empty, so the display no longer asks for it."""
        if request is None or len(request.data) != 1 or request.data[0].octets != b"":
            raise GbcsError("ECS14 command does not set an empty privacy PIN")
        self.privacy_pin_protected = False
        return self._maced(command, remote_party, dlms.null())

    @on(USE_CASES_BY_NAME["ECS17c"])
    def read_active_power(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """ECS17c (4.16): the active import power in W (the load profile's demand): the
        meter's, its unit, and the primary element's (the same on a single-element ESME)."""
        profile = self.load_profile
        total = int(profile.mean_power_w)
        primary = total
        if profile.twin_element:
            primary = int(profile.mean_power_w * (1 - profile.secondary_share))
        power = dlms.structure(
            dlms.double_long_unsigned(total),
            dlms.structure(dlms.integer(0), dlms.enum(UNIT_W)),
            dlms.double_long_unsigned(primary),
        )
        return self._maced(command, remote_party, power, self.device_time(now))

    @on(USE_CASES_BY_NAME["ECS34"])
    def set_power_thresholds(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        **_: Any,
    ) -> bytes:
        """ECS34 (6.12): keep the low/medium and medium/high power thresholds; thresholds
        that are not two, rising, are refused with other-reason."""
        if request is None or len(request.data) != 1:
            raise GbcsError("ECS34 command does not carry the thresholds")
        values = [item.integer for item in request.data[0].items]
        if len(values) != 2 or values[0] >= values[1]:
            raise DeviceFault(ACTION_OTHER_REASON)
        self.power_thresholds = (values[0], values[1])
        return self._maced(command, remote_party, dlms.null())

    def consumer_closes_switch(self) -> None:
        """The consumer pressing the button on an armed meter."""
        if self.supply == SupplyState.ARMED:
            self.supply = SupplyState.CONNECTED

    @on(USE_CASES_BY_NAME["ECS70"])
    def set_clock(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """ECS70 (6.11, 8.1.1): adjust the clock to the validity interval's start when the
        command arrives within it; answer with the clock's time and status."""
        if request is None or len(request.data) != 5 or len(request.data[1].items) != 3:
            raise GbcsError("ECS70 command does not carry the set-clock layout")
        start = _parse_date_time(request.data[1].items[1].octets)
        end = _parse_date_time(request.data[1].items[2].octets)
        device_now = self.device_time(now)
        results = [ACTION_SUCCESS] * 5
        if start <= device_now <= end or start <= now <= end:
            self.clock_offset = start - now
        else:
            results[2] = ACTION_OTHER_REASON  # outside the tolerance: not adjusted
        data = (
            dlms.null(),
            dlms.null(),
            dlms.null(),
            dlms.octet_string(encode_date_time(self.device_time(now))),
            dlms.unsigned(0),  # clock status: all bits clear
        )
        return build_signed_access_response(
            command=command,
            data=data,
            results=tuple(results),
            device_ds_private=self.ds_private_key,
        )

    # -- prepayment (2.1, 2.3, 2.5, 4.13) ----------------------------------------------------

    @on(USE_CASES_BY_NAME["ECS07"])
    def manage_debt(
        self, *, command: GeneralCiphering, request: AccessRequest | None, **_: Any
    ) -> bytes:
        """ECS07 (2.3): set the time debt registers' recovery rates and periods and the
        payment-based debt's share of each payment, then adjust the three debt registers by
        the command's amounts. Each part stands alone: a recovery rate that is not one
        charge, a zero period, a share above 100 % or an adjustment that would take a
        register below zero (or past its range) fails with other-reason and changes
        nothing, the other parts still apply."""
        if request is None or request.specs != LAYOUTS["ECS07"].specs:
            raise GbcsError("ECS07 command does not carry the debt layout")
        prepayment = self.prepayment
        debts = list(prepayment.time_debts)
        passive: dict[bytes, tuple[int, int]] = {}
        results = []
        for spec, value in zip(request.specs, request.data, strict=True):
            ok = True
            n = (
                TIME_DEBT_CHARGES.index(spec.instance_id)
                if spec.instance_id in TIME_DEBT_CHARGES
                else None
            )
            if spec.member_id == UNIT_CHARGE_PASSIVE and spec.kind == AccessKind.SET:
                try:
                    passive[spec.instance_id] = _debt_recovery_rate(value)
                except GbcsError:
                    ok = False
            elif spec.member_id == CHARGE_PERIOD and n is not None:
                ok = value.integer > 0
                if ok:
                    debts[n] = dataclasses.replace(debts[n], period=value.integer)
            elif spec.member_id == CHARGE_PROPORTION:
                ok = value.integer <= MAX_DEBT_RECOVERY_PER_PAYMENT
                if ok:
                    prepayment = dataclasses.replace(
                        prepayment, debt_recovery_per_payment=value.integer
                    )
            elif spec.member_id == ACTIVATE_PASSIVE_UNIT_CHARGE and n is not None:
                rate = passive.get(spec.instance_id)
                ok = rate is not None
                if rate is not None:
                    debts[n] = dataclasses.replace(debts[n], price_scale=rate[0], rate=rate[1])
            elif spec.member_id == UPDATE_TOTAL_AMOUNT_REMAINING:
                before = prepayment.payment_debt if n is None else debts[n].remaining
                after = before + value.integer
                ok = 0 <= after <= MAX_AMOUNT
                if ok and n is None:
                    prepayment = dataclasses.replace(prepayment, payment_debt=after)
                elif ok and n is not None:
                    debts[n] = dataclasses.replace(debts[n], remaining=after)
            results.append(ACTION_SUCCESS if ok else ACTION_OTHER_REASON)
        self.prepayment = dataclasses.replace(prepayment, time_debts=(debts[0], debts[1]))
        return build_signed_access_response(
            command=command,
            data=tuple(dlms.null() for _ in request.specs),
            results=tuple(results),
            device_ds_private=self.ds_private_key,
        )

    @on(USE_CASES_BY_NAME["ECS08a"])
    def update_prepayment_configuration(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """ECS08a (2.1): take the prepayment configuration (credit thresholds and limits, the
        debt recovery rate cap, the non-disablement calendar) and activate it now, at the
        execution date-time, or (every field unspecified) cancel a pending one. A negative
        limit, threshold or maximum changes nothing: its set and the later ones fail with
        other-reason."""
        if request is None or request.specs != ECS08A_SPECS:
            raise GbcsError("ECS08a command does not carry the prepayment configuration layout")
        pairs = list(zip(request.specs, request.data, strict=True))
        values = {(s.instance_id, s.member_id): d for s, d in pairs}
        times = {d.octets for s, d in pairs if s.member_id == THRESHOLD_ACTIVATION_TIME}
        if len(times) != 1:
            raise GbcsError("ECS08a activation date-times differ")
        (activation,) = times
        results = [ACTION_SUCCESS] * len(request.specs)
        try:
            configuration = _prepayment_configuration(values)
        except ValueError:
            failed = next(
                i
                for i, (s, d) in enumerate(pairs)
                if s.member_id == THRESHOLD_VALUE and d.integer < 0
            )
            results[failed:] = [ACTION_OTHER_REASON] * (len(results) - failed)
        else:
            self._hold_or_apply(
                "prepayment_configuration", configuration, activation, command, "ECS08a", now
            )
        return self._signed_results(command, request, results, now)

    def _hold_or_apply(
        self,
        kind: str,
        configuration: PrepaymentConfiguration,
        activation: bytes,
        command: GeneralCiphering,
        use_case: str,
        now: datetime,
    ) -> None:
        header = command.general_signing
        if activation == UNSPECIFIED_DATE_TIME:
            self.pending_prepayment_configuration = None
            self.future_dated.pop(kind, None)
        elif activation == IMMEDIATE_DATE_TIME:
            self.prepayment = dataclasses.replace(self.prepayment, configuration=configuration)
            self.pending_prepayment_configuration = None
            self.future_dated.pop(kind, None)
        else:
            self.pending_prepayment_configuration = (configuration, _parse_date_time(activation))
            self.future_dated[kind] = (header.originator_title, header.originator_counter, use_case)
            self.run_due(now)

    def emergency_credit_available(self) -> bool:
        """Whether the consumer (or ECS09) may take emergency credit now: the meter is in
        prepayment mode, it has an emergency credit limit and its balance is at or below
        the emergency credit threshold."""
        prepayment = self.prepayment
        configuration = prepayment.configuration
        return (
            self.account.payment_mode == PREPAYMENT_MODE
            and configuration.emergency_credit_limit > 0
            and prepayment.meter_balance <= configuration.emergency_credit_threshold
        )

    @on(USE_CASES_BY_NAME["ECS09"])
    def activate_emergency_credit(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """ECS09 (2.5): invoke the emergency credit: its limit becomes available. Success also
        when it already was in use; when emergency credit is not available (see
        :meth:`emergency_credit_available`) other-reason, as GBCS specifies."""
        if request is None or request.specs != LAYOUTS["ECS09"].specs:
            raise GbcsError("ECS09 command does not invoke the emergency credit")
        self.activate_due(now)
        if not self.prepayment.emergency_credit_active:
            if not self.emergency_credit_available():
                raise DeviceFault(ACTION_OTHER_REASON)
            self.prepayment = dataclasses.replace(
                self.prepayment,
                emergency_credit=self.prepayment.configuration.emergency_credit_limit,
                emergency_credit_active=True,
            )
        return self._signed_success(command, request)

    def add_credit(self, amount: int) -> None:
        """A payment of ``amount`` reaching the meter (a top-up's value; the emulated meter
        cannot value a UTRN itself): the payment-based debt recovers its share
        (``debt_recovery_per_payment``, counted as accumulated debt), emergency credit in use
        is repaid and ends, the rest goes to the meter balance (which may go below zero when
        the payment is less than the emergency credit used)."""
        if amount <= 0:
            raise ValueError("a payment adds a positive amount")
        prepayment = self.prepayment
        recovered = min(
            prepayment.payment_debt,
            amount * prepayment.debt_recovery_per_payment // MAX_DEBT_RECOVERY_PER_PAYMENT,
        )
        credit = amount - recovered
        if prepayment.emergency_credit_active:
            used = prepayment.configuration.emergency_credit_limit - prepayment.emergency_credit
            credit -= max(used, 0)
            prepayment = dataclasses.replace(
                prepayment, emergency_credit=0, emergency_credit_active=False
            )
        self.prepayment = dataclasses.replace(
            prepayment,
            payment_debt=prepayment.payment_debt - recovered,
            accumulated_debt=min(prepayment.accumulated_debt + recovered, MAX_AMOUNT),
            meter_balance=max(min(prepayment.meter_balance + credit, MAX_AMOUNT), -MAX_AMOUNT),
        )

    @on(USE_CASES_BY_NAME["ECS26a"])
    def read_prepayment_configuration(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """ECS26a (4.13): the prepayment configuration in force (the time debt recovery rates
        and periods, the payment-based debt share, the thresholds, limits and calendar, the
        disablement threshold, the credit/charge configuration), MAC'd, no header date-time."""
        self.run_due(now)
        prepayment = self.prepayment
        configuration = prepayment.configuration
        rates = [debt_recovery_rate(d.price_scale, d.rate) for d in prepayment.time_debts]
        periods = [dlms.double_long_unsigned(d.period) for d in prepayment.time_debts]
        references = dlms.array(
            *(
                dlms.structure(
                    dlms.octet_string(credit),
                    dlms.octet_string(charge),
                    dlms.bit_string(bits, octets),
                )
                for credit, charge, octets, bits in self.account.credit_references
            )
        )
        data = (
            rates[0],
            Data.decode(configuration.special_days),
            periods[0],
            rates[0],
            rates[1],
            periods[1],
            rates[1],
            dlms.long_unsigned(prepayment.debt_recovery_per_payment),
            dlms.double_long(configuration.max_credit_threshold),
            dlms.array(dlms.double_long(self.account.disablement_threshold or 0)),
            dlms.double_long(configuration.max_meter_balance),
            dlms.double_long(configuration.low_credit_threshold),
            dlms.long_unsigned(configuration.debt_recovery_rate_cap),
            dlms.double_long(DEBT_RECOVERY_CAP_PERIOD_SECONDS),
            dlms.double_long(configuration.emergency_credit_limit),
            dlms.double_long(configuration.emergency_credit_threshold),
            Data.decode(configuration.schedule),
            references,
        )
        return self._read_response(command, remote_party, data)

    @on(USE_CASES_BY_NAME["ECS21b"])
    def read_prepayment_daily_read_log(
        self,
        *,
        command: GeneralCiphering,
        request: AccessRequest | None,
        remote_party: RemoteParty,
        now: datetime,
        **_: Any,
    ) -> bytes:
        """ECS21b (4.14): the prepayment daily read log in the range: at each midnight the
        registers of :meth:`Prepayment.daily_read` as they were then, encrypted."""
        start, end = _protected_read_range(request)
        contents = b"".join(
            int((at - GBCS_EPOCH).total_seconds()).to_bytes(4, "big")
            + b"".join(
                v.to_bytes(4, "big", signed=True) for v in self.prepayment_at(at).daily_read()
            )
            for at in PREPAYMENT_DAILY_READ_LOG.stamps(start, end, self.device_time(now))
        )
        content = dlms.structure(
            Data(DataType.COMPACT_ARRAY, CompactArray(PREPAYMENT_DAILY_READ_TYPE, contents))
        )
        return build_protected_read_response(
            command=command,
            content=content,
            date_time=None,  # as the RTDS response
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )


def _midnight_at_or_after(at: datetime) -> datetime:
    """The first midnight (UTC) at or after ``at``."""
    days = -(-(at - GBCS_EPOCH) // DAY)
    return GBCS_EPOCH + days * DAY


def _parse_date_time(raw: bytes) -> datetime:
    """A fully specified 12-byte DLMS date-time (UTC) as an aware datetime."""
    if len(raw) != 12:
        raise GbcsError("bad DLMS date-time length")
    try:
        return datetime(
            int.from_bytes(raw[:2], "big"), raw[2], raw[3], raw[5], raw[6], raw[7], tzinfo=UTC
        )
    except ValueError as exc:
        raise GbcsError(f"unspecified or bad DLMS date-time {raw.hex()}") from exc


def _credit_reference(entry: Data) -> CreditReference:
    """One credit_charge_configuration entry: (credit, charge, collection configuration)."""
    items = entry.items
    if len(items) != 3 or not isinstance(items[2].value, dlms.BitString):
        raise GbcsError("credit reference is not (credit, charge, bit-string)")
    return (items[0].octets, items[1].octets, items[2].value.octets, items[2].value.bits)


def _pack(*values: int) -> bytes:
    """Double-long-unsigned values as a compact array's contents pack them."""
    return b"".join(value.to_bytes(4, "big") for value in values)


def _protected_read_range(request: AccessRequest | None) -> tuple[datetime, datetime]:
    """The [from, to] restriction of a protected range read (ECS21a, ECS22b, ECS66)."""
    if request is None or len(request.data) != 1:
        raise GbcsError("command is not a protected range read")
    try:
        object_list, _parameters = request.data[0].items
        restriction = object_list.items[0].items[4].items
        kind, bounds = restriction[0].integer, restriction[1].items
    except (ValueError, IndexError, GbcsError) as exc:
        raise GbcsError("command is not a protected range read") from exc
    if kind != 1 or len(bounds) != 2:
        raise GbcsError("protected read is not restricted by a date-time range")
    return _parse_date_time(bounds[0].octets), _parse_date_time(bounds[1].octets)
