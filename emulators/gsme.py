"""An emulated gas smart meter (GSME): a ZCL attribute map, a seeded gas load profile and its GBZ
use-case handlers.

GBCS facts this model follows (PROTOCOL.md, the RTDS vectors in reference/gbcs/rtds):

- The GSME is battery-powered: it sleeps and talks to the Communications Hub only from time to
  time, so most gas reads are answered by the GPF from its *GSME mirror* (``emulators.gpf``).
  The RTDS vectors address GCS13a/GCS13c/GCS60a to either device, GCS16a, GCS17, GCS33, GCS38 and
  GCS07 to the GSME, GCS61 to the GPF. How long a sleeping GSME takes to answer is the
  network's business (gateway/network.py), not this model's.
- Its readable state is data: ``attributes`` maps (cluster, attribute id) to a ZCL type and
  value; every GBZ Read Attributes command (GCS38 firmware version, GCS33 valve status, ...) is
  answered from it, attribute by attribute, ``unsupported attribute`` for the rest.
- The consumption registers (GCS13a current summation delivered, GCS13c the TOU registers) are
  derived from a :class:`GasLoadProfile` and the injected clock, never stored, and answered
  encrypted for the remote party, as the RTDS responses are. Half-hourly consumption (GCS17)
  is the difference of the register at the interval's ends.
- A GBZ command the model has no handler for is answered with a ZCL Default Response
  ``unsupported cluster command``, as a ZigBee device answers one, rather than dropped.

Responses are GBZ payloads in General Ciphering, MAC'd by the device for the remote party.

- The critical commands (GCS01a tariff, GCS02/GCS03 payment mode, GCS06 emergency credit,
  GCS32/GCS39 valve, GCS28 clock) carry the User's signature, which the base class checks;
  the GSME answers them signed with its DS key, refusals included, and keeps what they change
  (``nonvolatile_state``). A closed (or armed) valve stops the register:
  :class:`GasRegisters` subtracts the closed periods.
- The daily read log (GCS16a) is the register at each midnight, derived, never stored; the
  event and security logs (CS10a/CS10b) hold what the device logged.
- The tariff (GCS01a) is kept as the GBZ commands that published it, in force now or held
  until its start time (then one 0x8F66 alert per component with a start time, as the RTDS);
  under a TOU tariff the TOU registers (GCS13c) follow its calendar (:class:`TouCalendar`).
- A top-up (CS01b) credits a new, well-formed UTRN once at the meter's ``top_up_value``: the
  GBCS UTRN's value and MAC (under the Supplier's prepayment KA key) are not checked (see
  :data:`UTRN_FLOOR`). The credit is the prepayment cluster's credit remaining (GCS60a).

- The GBCS "CS" use cases, DER rather than GBZ, are the ESME's code, shared: the joins CS03B
  and CS03C (``emulators.han.MeterJoins``; a GSME takes no Method A CS03A1), the trust anchor
  cells and CS02b (6.15.1, 6.23; ``emulators.credentials``) and the firmware images and CS06
  (11.3; ``emulators.firmware``; the running version is the GCS38 attribute). Their held
  future-dated work runs with the GSME's and its DER outcome alerts go in its event log too.

Not modelled yet (answered ``unsupported cluster command``): billing data (GCS15d). Prices do
not yet move the meter balance or the credit (no gas is charged).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Unpack

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.alerts import (
    ALERT_FUTURE_DATED_EXECUTED,
    MESSAGE_CODE_FUTURE_DATED_GBZ,
)
from dccsim.gbcs.commands import (
    CALENDAR_CANCEL_TIME,
    PUBLISH_CALENDAR,
    PUBLISH_DAY_PROFILE,
    PUBLISH_SEASONS,
    PUBLISH_SPECIAL_DAYS,
    PUBLISH_WEEK_PROFILE,
    TARIFF_CANCEL_TIME,
    asn1_time,
    parse_asn1_time,
)
from dccsim.gbcs.crypto import content_context, encrypt_content
from dccsim.gbcs.der import ASN1_SCHEMAS, decode_with, encode_with
from dccsim.gbcs.dlms import encode_date_time
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralCiphering
from dccsim.gbcs.usecases import (
    USE_CASES_BY_CODE,
    USE_CASES_BY_NAME,
    build_maced_response,
    build_signed_response,
)
from dccsim.gbcs.zigbee import (
    BITMAP16,
    CALENDAR,
    CONTROL_ENCRYPTED,
    CONTROL_LAST,
    ENUM8,
    EVENTS,
    FRAME_CLUSTER_SPECIFIC,
    INT32,
    MESSAGING,
    METERING,
    OCTET_STRING,
    PREPAYMENT,
    PRICE,
    U16,
    U32,
    WEEKDAYS,
    FutureDatedOutcome,
    GbzAlert,
    GbzComponent,
    GbzPayload,
    ZclHeader,
    ZclPayload,
    ZclValue,
    decode_gbz,
    encode_zcl_payload,
    encode_zcl_value,
)
from emulators.credentials import TrustAnchor, TrustAnchorCells
from emulators.device import (
    ALERT_SOURCE_NOT_AUTHORISED,
    DeviceKeys,
    DeviceRefusal,
    GbcsDevice,
    RemoteParty,
    on,
)
from emulators.firmware import FirmwareImages
from emulators.han import JoiningDevice, MeterJoins

U24, U48, ZCL_UTC = 0x22, 0x25, 0xE2  # ZCL data types the gas registers use
ZCL_SUCCESS = 0x00
ZCL_UNSUPPORTED_CLUSTER_COMMAND = 0x81
ZCL_UNSUPPORTED_ATTRIBUTE = 0x86
ZCL_NOT_FOUND = 0x8B
ZCL_FAILURE = 0x01
ZCL_HARDWARE_FAILURE = 0xC0
READ_ATTRIBUTES, READ_ATTRIBUTES_RESPONSE, DEFAULT_RESPONSE = 0x00, 0x01, 0x0B
GET_SAMPLED_DATA, GET_SAMPLED_DATA_RESPONSE = 0x08, 0x07  # metering cluster commands
FRAME_SERVER_TO_CLIENT = 0x08
FRAME_DISABLE_DEFAULT_RESPONSE = 0x10  # set on the RTDS encrypted responses
GBZ_PROFILE_PREFIX = b"\x01\x09"

# metering cluster attributes (ZSE 1.2) the consumption reads name
CURRENT_SUMMATION_DELIVERED = 0x0000
CURRENT_TIER_SUMMATIONS = (0x0100, 0x0102, 0x0104, 0x0106)  # tiers 1-4 delivered (GCS13c)
UNIT_OF_MEASURE, MULTIPLIER, DIVISOR = 0x0300, 0x0301, 0x0302
SUPPLY_STATUS = 0x0014
# ZSE supply status (the attribute, Change Supply's proposal and Supply Status Response)
SUPPLY_OFF, SUPPLY_OFF_ARMED, SUPPLY_ON = 0, 1, 2
SUPPLY_STATUS_RESPONSE = 0x0C  # metering cluster, server to client
IMMEDIATE = 0  # a ZCL UTC time of 0: now
ZCL_INVALID_FIELD = 0x85
ZCL_CANCEL_TIME = 0xFFFFFFFF  # Change Payment Mode's implementation time that cancels
CHANGE_PAYMENT_MODE, CHANGE_PAYMENT_MODE_RESPONSE = 0x06, 0x02  # prepayment cluster
# what Change Payment Mode Response reports: the RTDS GSME's emergency and friendly credit
# settings, which no GBCS use case here changes
PAYMENT_MODE_RESPONSE_SETTINGS: dict[str, ZclValue] = {
    "friendly_credit": 1,
    "friendly_credit_calendar_id": 2,
    "emergency_credit_limit": 1_000_000,
    "emergency_credit_threshold": 200_000,
}
UNIT_CUBIC_METRES = 0x01
LITRES_PER_CUBIC_METRE = 1000  # the divisor: registers count litres, as the RTDS's 1000
REGISTER_MODULUS = 1 << 48  # U48 summations roll over
SAMPLE_MODULUS = 1 << 24  # U24 samples
GBCS_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # ZCL UTC time: seconds since 2000

HALF_HOUR = timedelta(minutes=30)
DAY = timedelta(days=1)

GCS13C = USE_CASES_BY_NAME["GCS13c"]
GCS60A = USE_CASES_BY_NAME["GCS60a"]
METER_BALANCE = 0x0A00  # metering cluster: the credit-mode meter balance (GCS60a)
PREPAYMENT_CREDIT_REMAINING = 0x0001  # prepayment cluster (GCS60a)
PAYMENT_CONTROL_CONFIGURATION = 0x0000  # prepayment cluster: the payment mode (GCS21j)

# what a freshly installed RTDS-like GSME reports (values as the RTDS responses carry them);
# the balances stay as installed but for top-ups: the model charges no gas against a tariff
FIRMWARE_VERSION = 0x0206  # metering cluster attribute: the running firmware version
DEFAULT_ATTRIBUTES: dict[tuple[int, int], tuple[int, ZclValue]] = {
    (METERING, FIRMWARE_VERSION): (OCTET_STRING, bytes.fromhex("0123ABCD")),  # GCS38 reads it
    (METERING, 0x0205): (U16, 100),  # read by GCS33 with the valve status
    (METERING, SUPPLY_STATUS): (ENUM8, SUPPLY_ON),  # the valve open
    (METERING, UNIT_OF_MEASURE): (ENUM8, UNIT_CUBIC_METRES),
    (METERING, MULTIPLIER): (U24, 1),
    (METERING, DIVISOR): (U24, LITRES_PER_CUBIC_METRE),
    (METERING, METER_BALANCE): (U32, 3_500_000),
    (PREPAYMENT, PREPAYMENT_CREDIT_REMAINING): (INT32, 2_500_000),
    # as installed (GCS02/GCS03 change it)
    (PREPAYMENT, PAYMENT_CONTROL_CONFIGURATION): (BITMAP16, 0x0C97),
}

# A day's gas demand by half hour (relative weights, normalised below): heating and hot water
# in the morning and evening, little overnight. Data, not a GBCS figure: it makes profiles real.
DAILY_GAS_SHAPE: tuple[float, ...] = (
    (0.2,) * 11  # 00:00-05:30
    + (1.0, 2.6, 3.2, 3.0, 2.2, 1.4)  # 05:30-08:30
    + (0.6,) * 16  # 08:30-16:30
    + (1.2, 2.0, 2.6, 2.8, 2.6, 2.2, 1.8, 1.4, 1.0, 0.6)  # 16:30-21:30
    + (0.4,) * 5  # 21:30-24:00
)
_SLOTS = len(DAILY_GAS_SHAPE)
_SHAPE_SCALE = _SLOTS / sum(DAILY_GAS_SHAPE)
# cumulative share of a day's volume at the start of each half hour (0 .. 1)
_CUMULATIVE = [0.0]
for _weight in DAILY_GAS_SHAPE:
    _CUMULATIVE.append(_CUMULATIVE[-1] + _weight * _SHAPE_SCALE / _SLOTS)


@dataclass(frozen=True)
class GasLoadProfile:
    """How a gas meter's consumption register moves: a start value and a mean flow, spread over
    the day by :data:`DAILY_GAS_SHAPE`; the register is a function of time, nothing stored.

    ``from_seed`` picks a plausible household deterministically (a UK home burns about
    1,000 m3 a year: 30-250 litres an hour on average), so meters differ yet runs repeat.
    """

    start_litres: int = 0
    mean_litres_per_hour: float = 120.0

    @classmethod
    def from_seed(cls, seed: int) -> GasLoadProfile:
        rng = random.Random(seed)
        return cls(
            start_litres=rng.randrange(0, 20_000_000),
            mean_litres_per_hour=rng.uniform(30.0, 250.0),
        )

    def consumed(self, since: datetime, until: datetime) -> int:
        """Whole litres drawn between ``since`` (the register's epoch) and ``until``."""
        if until <= since:
            return 0
        return int((self._days(until) - self._days(since)) * self.mean_litres_per_hour * 24.0)

    @staticmethod
    def _days(at: datetime) -> float:
        """Days since 2000 at ``at``, weighted by the daily shape (a monotonic clock)."""
        seconds = (at - GBCS_EPOCH).total_seconds()
        day, into = divmod(seconds, 86_400.0)
        slot, into_slot = divmod(into, 1_800.0)
        i = int(slot)
        share = _CUMULATIVE[i] + (_CUMULATIVE[i + 1] - _CUMULATIVE[i]) * into_slot / 1_800.0
        return day + share


ANY = 0xFF  # a ZCL Date field that is not specified
MINUTES_PER_DAY = 24 * 60
TOU_TIERS = 4  # the GSME's TOU registers (GCS13c reads tiers 1-4)


def _date_fields(zcl_date: int) -> tuple[int, int, int, int]:
    """A ZCL Date as (year - 1900, month, day of month, day of week)."""
    raw = zcl_date.to_bytes(4, "little")
    return raw[0], raw[1], raw[2], raw[3]


def _date_matches(zcl_date: int, day: datetime) -> bool:
    year, month, dom, dow = _date_fields(zcl_date)
    wanted = (day.year - 1900, day.month, day.day, day.isoweekday())
    return all(f in (ANY, w) for f, w in zip((year, month, dom, dow), wanted, strict=True))


@dataclass(frozen=True)
class TouCalendar:
    """The switching table of a GCS01a tariff, as the GSME's TOU registers follow it: each
    day's (start minute, tier) entries by day id, weeks of 7 day ids (Monday first), seasons
    (ZCL start date, week id) and special days (ZCL date, day id). Tier 0 (a block tariff's
    days) counts on tier 1."""

    days: Mapping[int, tuple[tuple[int, int], ...]]
    weeks: Mapping[int, tuple[int, ...]]
    seasons: tuple[tuple[int, int], ...]
    special_days: tuple[tuple[int, int], ...]

    @classmethod
    def from_components(cls, components: tuple[GbzComponent, ...]) -> TouCalendar:
        """The calendar a GCS01a command's Publish Day/Week Profile, Seasons and Special Days
        carry; :class:`GbcsError` if a day profile or week profile is missing a referent."""
        days: dict[int, tuple[tuple[int, int], ...]] = {}
        weeks: dict[int, tuple[int, ...]] = {}
        seasons: list[tuple[int, int]] = []
        special: list[tuple[int, int]] = []
        for c in components:
            if c.cluster != CALENDAR:
                continue
            values, records = c.payload.values, c.payload.records
            if c.header.command == PUBLISH_DAY_PROFILE:
                entries = sorted((int(r["start_time"]), int(r["price_tier"])) for r in records)
                days[int(values["day_id"])] = tuple(entries)
            elif c.header.command == PUBLISH_WEEK_PROFILE:
                weeks[int(values["week_id"])] = tuple(
                    int(values[f"day_id_ref_{d}"]) for d in WEEKDAYS
                )
            elif c.header.command == PUBLISH_SEASONS:
                seasons += [(int(r["season_start_date"]), int(r["week_id_ref"])) for r in records]
            elif c.header.command == PUBLISH_SPECIAL_DAYS:
                special += [(int(r["special_day_date"]), int(r["day_id_ref"])) for r in records]
        referenced = {d for week in weeks.values() for d in week} | {d for _, d in special}
        if not referenced <= days.keys() or not {w for _, w in seasons} <= weeks.keys():
            raise GbcsError("a GCS01a week or season names a profile the command lacks")
        if not all(days.values()):
            raise GbcsError("a GCS01a day profile has no schedule entry")
        return cls(days, weeks, tuple(seasons), tuple(special))

    def schedule(self, day: datetime) -> tuple[tuple[int, int], ...]:
        """The (start minute, tier) entries in force on ``day`` (UTC): its special day's
        profile, else its season's week's (the latest season started on or before the day,
        year wildcards repeating; before the first, the year's last), else tier 1 all day."""
        for date, day_id in self.special_days:
            if _date_matches(date, day):
                return self.days[day_id]
        if self.seasons:
            ordered = sorted(self.seasons, key=lambda s: _date_fields(s[0])[1:3])
            started = [s for s in ordered if _date_fields(s[0])[1:3] <= (day.month, day.day)]
            _, week_id = (started or ordered)[-1]
            day_id = self.weeks[week_id][day.isoweekday() - 1]
            return self.days[day_id]
        return ((0, 1),)


@dataclass(frozen=True)
class GasRegisters:
    """A gas meter's consumption register as a function of the clock: ``profile`` since
    ``epoch`` (when the register held the profile's start value), less the gas the profile
    would have drawn while the valve was closed (``closures``: from, until or None while it
    still is)."""

    profile: GasLoadProfile
    epoch: datetime
    closures: tuple[tuple[datetime, datetime | None], ...] = ()
    # the TOU calendars in force from each instant on (None: single rate, all on tier 1)
    calendars: tuple[tuple[datetime, TouCalendar | None], ...] = ()

    def litres(self, at: datetime) -> int:
        """The current summation delivered at ``at`` (never below its start value)."""
        days = GasLoadProfile._days
        if at <= self.epoch:
            return self.profile.start_litres % REGISTER_MODULUS
        flowing = days(at) - days(self.epoch)
        for closed, opened in self.closures:
            since, until = max(closed, self.epoch), min(opened or at, at)
            if until > since:
                flowing -= days(until) - days(since)
        drawn = int(flowing * self.profile.mean_litres_per_hour * 24.0)
        return (self.profile.start_litres + drawn) % REGISTER_MODULUS

    def valve_closed(self, at: datetime) -> GasRegisters:
        """These registers with the valve closed from ``at`` (no change if it already is)."""
        if self.closures and self.closures[-1][1] is None:
            return self
        return replace(self, closures=(*self.closures, (at, None)))

    def valve_opened(self, at: datetime) -> GasRegisters:
        """These registers with the valve open again from ``at`` (no change if it is open)."""
        if not self.closures or self.closures[-1][1] is not None:
            return self
        closed, _ = self.closures[-1]
        return replace(self, closures=(*self.closures[:-1], (closed, max(closed, at))))

    def with_calendar(self, at: datetime, calendar: TouCalendar | None) -> GasRegisters:
        """These registers with ``calendar`` allocating the gas to tiers from ``at`` on."""
        return replace(self, calendars=(*self.calendars, (at, calendar)))

    def tiers(self, at: datetime) -> tuple[int, int, int, int]:
        """The TOU registers at ``at``: tier 1 holds the start value and the gas drawn while
        no TOU calendar was in force; under a calendar each day's gas goes to the tier its
        schedule names for each part of the day."""
        totals = [self.profile.start_litres, 0, 0, 0]
        since, calendar = self.epoch, None
        for start, following in (*self.calendars, (at, None)):
            until = min(max(start, self.epoch), at)
            if until > since:
                self._allocate(totals, since, until, calendar)
            since, calendar = max(since, until), following
        t1, t2, t3, t4 = (t % REGISTER_MODULUS for t in totals)
        return (t1, t2, t3, t4)

    def _allocate(
        self, totals: list[int], since: datetime, until: datetime, calendar: TouCalendar | None
    ) -> None:
        if calendar is None:
            totals[0] += self.drawn(since, until)
            return
        day = since.replace(hour=0, minute=0, second=0, microsecond=0)
        while day < until:
            entries = calendar.schedule(day)
            for n, (minute, tier) in enumerate(entries):
                # the day's first tier from midnight (our simplification: ZSE carries the
                # previous day's last one over), each until the next entry
                minute = 0 if n == 0 else minute
                end = entries[n + 1][0] if n + 1 < len(entries) else MINUTES_PER_DAY
                begin = max(since, day + timedelta(minutes=minute))
                finish = min(until, day + timedelta(minutes=end))
                if finish > begin:
                    totals[min(max(tier, 1), TOU_TIERS) - 1] += self.drawn(begin, finish)
            day += DAY

    def metering_values(self, at: datetime) -> dict[int, tuple[int, ZclValue]]:
        """The metering cluster's clock-derived attributes at ``at``."""
        out: dict[int, tuple[int, ZclValue]] = {CURRENT_SUMMATION_DELIVERED: (U48, self.litres(at))}
        for attribute, value in zip(CURRENT_TIER_SUMMATIONS, self.tiers(at), strict=True):
            out[attribute] = (U48, value)
        return out

    def drawn(self, start: datetime, end: datetime) -> int:
        """Litres drawn in [start, end) (a profile or daily consumption sample)."""
        return (self.litres(end) - self.litres(start)) % REGISTER_MODULUS


@dataclass(frozen=True)
class SampledLog:
    """One log GetSampledData reads: its ZSE sample id, interval and how far back it goes."""

    sample_id: int
    interval: timedelta
    depth: timedelta
    # the interval as the response's U16 carries it: seconds, 0xFFFF for a day (RTDS GCS61)
    interval_field: int


# the use cases whose Read Attributes Response is encrypted (GCS13a, GCS13c)
ENCRYPTED_READS = frozenset({USE_CASES_BY_NAME["GCS13a"].message_code, GCS13C.message_code})
# the use cases whose answer, success or error, carries the device's date-time (RTDS)
DATED_ANSWERS = ENCRYPTED_READS | {
    USE_CASES_BY_NAME["GCS02"].message_code,
    USE_CASES_BY_NAME["GCS03"].message_code,
    USE_CASES_BY_NAME["GCS01a"].message_code,
    USE_CASES_BY_NAME["CS01b"].message_code,
}

HALF_HOURLY_PROFILE = SampledLog(0, HALF_HOUR, timedelta(days=396), 1800)  # GCS17, 13 months
DAILY_CONSUMPTION = SampledLog(1, DAY, timedelta(days=731), 0xFFFF)  # GCS61, 731 days


def _response_frame_control(command: ZclHeader, *, encrypted: bool = False) -> int:
    """A response goes the other way: direction bit flipped, frame type kept; encrypted
    responses set disable-default-response, as the RTDS ones do."""
    control = (command.frame_control & (FRAME_SERVER_TO_CLIENT | 0x03)) ^ FRAME_SERVER_TO_CLIENT
    return control | (FRAME_DISABLE_DEFAULT_RESPONSE if encrypted else 0)


USER_EXTRAS = 16  # the User's EUI-64 and DUIS counter, in Other Information


def _without_certificate(command: GeneralCiphering) -> GeneralCiphering:
    """The command as its response echoes it: when the ACB sends for a User, Other Information
    names the User and counter and may add the User's KA certificate, which the response
    leaves out (the RTDS GCS61 response)."""
    header = command.general_signing
    extras = header.other_info_extras
    if len(extras) <= USER_EXTRAS or extras[USER_EXTRAS] != 0x30:  # no DER certificate
        return command
    return replace(command, general_signing=replace(header, other_info_extras=extras[:USER_EXTRAS]))


def _utc_seconds(at: datetime) -> int:
    return int((at - GBCS_EPOCH).total_seconds())


def _disable_default_response(answer: GbzComponent) -> GbzComponent:
    """``answer`` with the ZCL disable-default-response bit, as the RTDS Change Payment Mode
    and Publish Event Log responses set it."""
    frame_control = answer.header.frame_control | FRAME_DISABLE_DEFAULT_RESPONSE
    return replace(answer, header=replace(answer.header, frame_control=frame_control))


def _microseconds(at: datetime) -> int:
    """A non-volatile instant: microseconds since 2000 (msgpack-able)."""
    return (at - GBCS_EPOCH) // timedelta(microseconds=1)


def _from_microseconds(value: int) -> datetime:
    return GBCS_EPOCH + timedelta(microseconds=int(value))


@dataclass(frozen=True)
class GbzLogEntry:
    """One entry of a ZigBee device's event or security log (CS10a/CS10b read them): when
    (ZCL UTC time), the GBCS event or alert code, its data."""

    at: int
    event_id: int
    data: bytes = b""


# the ZSE log ids the GSME keeps (the RTDS CS10a/CS10b responses): the GBCS event log and
# the security log; Get Event Log's low nibble names one
GENERAL_EVENT_LOG, SECURITY_LOG = 3, 4
LOG_ID_MASK = 0x0F
PUBLISH_EVENT_LOG = 0x01  # events cluster, server to client
MAX_EVENTS_PER_COMMAND = 255  # the ZCL Get Event Log's U8 count; one response command


class GbzDevice(GbcsDevice):
    """What the gas devices (GSME, GPF) share: GBZ decoding, ZCL answers, encrypted content."""

    def __init__(
        self,
        *,
        attributes: Mapping[tuple[int, int], tuple[int, ZclValue]] | None = None,
        **device: Unpack[DeviceKeys],
    ) -> None:
        super().__init__(**device)
        self.attributes = dict(DEFAULT_ATTRIBUTES if attributes is None else attributes)
        # its event and security logs, oldest first: the security log records each command
        # refused for its authentication, the event log the alerts the device raised
        self.logs: dict[int, list[GbzLogEntry]] = {GENERAL_EVENT_LOG: [], SECURITY_LOG: []}

    def _refuse(self, alert_code: int, reason: str) -> DeviceRefusal:
        self.logs[SECURITY_LOG].append(GbzLogEntry(_utc_seconds(self.clock()), alert_code))
        return super()._refuse(alert_code, reason)

    def _read_log(
        self, command: GeneralCiphering, remote_party: RemoteParty, now: datetime
    ) -> bytes:
        """CS10a/CS10b: Get Event Log of the event or security log over [start, end] (oldest
        first, as the RTDS, from the offset, up to the number asked, 0 for all), answered
        MAC'd with one Publish Event Log; a ZCL Default Response ``not found`` when none
        match, as the RTDS NOT_FOUND responses."""
        (component,) = self._components(command)
        values = component.payload.values
        if component.cluster != EVENTS or component.payload.layout != "get-event-log":
            raise GbcsError("expected a ZCL Get Event Log command")
        log_id = int(values["event_control_log_id"]) & LOG_ID_MASK
        wanted_id = int(values["event_id"])
        start, end = int(values["start_time"]), int(values["end_time"])
        matching = [
            e
            for e in self.logs.get(log_id, [])
            if start <= e.at <= end and wanted_id in (0, e.event_id)
        ]
        offset, count = int(values["event_offset"]), int(values["number_of_events"])
        chosen = matching[offset:]
        chosen = chosen[: count or MAX_EVENTS_PER_COMMAND]
        if not chosen:
            answer = self._default_response(component, 0, 1, ZCL_NOT_FOUND)
            return self._respond(command, remote_party, GbzPayload(1, (answer,)))
        answer = self._answer(
            component,
            0,
            1,
            PUBLISH_EVENT_LOG,
            ZclPayload(
                "publish-event-log",
                {
                    "total_number_of_matching_events": len(matching),
                    "command_index": 0,
                    "total_commands": 1,
                    "log_payload_control": 0,
                },
                tuple(
                    {
                        "log_id": log_id,
                        "event_id": e.event_id,
                        "event_time": e.at,
                        "event_data": e.data,
                    }
                    for e in chosen
                ),
            ),
            cluster_specific=True,
        )
        answer = _disable_default_response(answer)
        return self._respond(command, remote_party, GbzPayload(1, (answer,)))

    # -- what subclasses answer from ----------------------------------------------------------

    def gas_registers(self) -> GasRegisters:
        """The consumption register this device reports (its own, or the GSME mirror's)."""
        raise NotImplementedError

    def device_time(self, now: datetime) -> datetime:
        """What the device's own clock reads at true time ``now`` (the responses' date-time)."""
        return now

    def register_time(self, now: datetime) -> datetime:
        """The instant the reported register values belong to (now, or the last mirror update)."""
        return now

    # -- GBZ plumbing ---------------------------------------------------------------------------

    def _respond(
        self,
        command: GeneralCiphering,
        remote_party: RemoteParty,
        gbz: GbzPayload,
        date_time: datetime | None = None,
    ) -> bytes:
        """The GBZ response: signed with the device's DS key for a critical command (as the
        RTDS GCS32/GCS39 responses, refusals included), else MAC'd for the remote party."""
        use_case = USE_CASES_BY_CODE.get(command.general_signing.message_code)
        encoded_time = None if date_time is None else encode_date_time(self.device_time(date_time))
        if use_case is not None and use_case.critical:
            return build_signed_response(
                command=command,
                payload=gbz.encode(),
                date_time=encoded_time,
                device_ds_private=self.ds_private_key,
            )
        return build_maced_response(
            command=_without_certificate(command),
            payload=gbz.encode(),
            date_time=encoded_time,
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )

    @staticmethod
    def _components(command: GeneralCiphering) -> tuple[GbzComponent, ...]:
        payload = command.general_signing.payload
        if payload[:2] != GBZ_PROFILE_PREFIX:
            raise GbcsError("gas device command payload is not GBZ")
        return decode_gbz(payload).components

    def _encrypt(self, command: GeneralCiphering, plaintext: bytes) -> bytes:
        """``plaintext`` encrypted for the remote party the content is for (the User named in
        Other Information when the ACB sends for a User)."""
        context = content_context(command.general_signing)
        party = self.remote_parties.get(context.recipient_title)
        if party is None:
            raise self._refuse(ALERT_SOURCE_NOT_AUTHORISED, "content recipient not trusted")
        return encrypt_content(
            plaintext,
            device_title=self.eui,
            counter=context.counter,
            recipient_title=context.recipient_title,
            private_key=self.ka_private_key,
            peer_public_key=party.ka_public_key,
        )

    @staticmethod
    def _answer(
        request: GbzComponent,
        index: int,
        count: int,
        command_id: int,
        payload: ZclPayload,
        *,
        cluster_specific: bool = False,
        encrypted_content: bytes | None = None,
    ) -> GbzComponent:
        control = CONTROL_LAST if index == count - 1 else 0
        frame_control = _response_frame_control(
            request.header, encrypted=encrypted_content is not None
        )
        if cluster_specific:
            frame_control |= FRAME_CLUSTER_SPECIFIC
        else:
            frame_control &= ~FRAME_CLUSTER_SPECIFIC
        if encrypted_content is not None:
            control |= CONTROL_ENCRYPTED
            payload = ZclPayload(None)
        return GbzComponent(
            control,
            request.cluster,
            ZclHeader(frame_control, request.header.sequence, command_id),
            payload,
            encrypted_content=encrypted_content,
        )

    def _default_response(
        self, request: GbzComponent, index: int, count: int, status: int
    ) -> GbzComponent:
        return self._answer(
            request,
            index,
            count,
            DEFAULT_RESPONSE,
            ZclPayload(
                "default-response", {"command_id": request.header.command, "status": status}
            ),
        )

    def _attribute_records(
        self, component: GbzComponent, now: datetime
    ) -> tuple[dict[str, ZclValue], ...]:
        header = component.header
        if header.cluster_specific or header.command != READ_ATTRIBUTES:
            raise GbcsError("expected a GBZ Read Attributes command")
        dynamic = (
            self.gas_registers().metering_values(self.register_time(now))
            if component.cluster == METERING
            else {}
        )
        records: list[dict[str, ZclValue]] = []
        for requested in component.payload.records:
            attribute = int(requested["attribute_id"])
            known = dynamic.get(attribute) or self.attributes.get((component.cluster, attribute))
            if known is None:
                records.append({"attribute_id": attribute, "status": ZCL_UNSUPPORTED_ATTRIBUTE})
            else:
                zcl_type, value = known
                records.append(
                    {"attribute_id": attribute, "status": 0, "type": zcl_type, "value": value}
                )
        return tuple(records)

    def _read_attributes(
        self,
        command: GeneralCiphering,
        remote_party: RemoteParty,
        now: datetime,
        *,
        with_date_time: bool = False,
    ) -> bytes:
        """Each Read Attributes component answered in clear from the attribute map; the
        header's date-time only where the RTDS response carries one."""
        components = self._components(command)
        answers = tuple(
            self._answer(
                component,
                index,
                len(components),
                READ_ATTRIBUTES_RESPONSE,
                ZclPayload(
                    "read-attributes-response", records=self._attribute_records(component, now)
                ),
            )
            for index, component in enumerate(components)
        )
        return self._respond(
            command,
            remote_party,
            GbzPayload(len(answers), answers),
            now if with_date_time else None,
        )

    def _attributes_answer(
        self,
        command: GeneralCiphering,
        component: GbzComponent,
        index: int,
        count: int,
        records: tuple[dict[str, ZclValue], ...],
        *,
        encrypted: bool,
    ) -> GbzComponent:
        """One Read Attributes Response component, in clear or encrypted for the User."""
        payload = ZclPayload("read-attributes-response", records=records)
        content = None
        if encrypted:
            header = ZclHeader(
                _response_frame_control(component.header),
                component.header.sequence,
                READ_ATTRIBUTES_RESPONSE,
            )
            content = self._encrypt(command, encode_zcl_payload(component.cluster, header, payload))
        return self._answer(
            component, index, count, READ_ATTRIBUTES_RESPONSE, payload, encrypted_content=content
        )

    def _read_attributes_encrypted(
        self, command: GeneralCiphering, remote_party: RemoteParty, now: datetime
    ) -> bytes:
        """GCS13a/GCS13c: the Read Attributes Response encrypted for the remote party, the
        header carrying the device's date-time (as the RTDS responses)."""
        components = self._components(command)
        answers = tuple(
            self._attributes_answer(
                command,
                component,
                index,
                len(components),
                self._attribute_records(component, now),
                encrypted=True,
            )
            for index, component in enumerate(components)
        )
        return self._respond(command, remote_party, GbzPayload(len(answers), answers), now)

    def _sampled_data(
        self,
        log: SampledLog,
        command: GeneralCiphering,
        remote_party: RemoteParty,
        now: datetime,
    ) -> bytes:
        """GCS17/GCS61: GetSampledData answered with the consumption in each whole interval
        from the earliest sample time (within the log's depth) to now, encrypted; a ZCL Default
        Response ``not found`` when there is none, as the RTDS NOT_FOUND responses."""
        (component,) = self._components(command)
        values = component.payload.values
        if component.cluster != METERING or component.payload.layout != "get-sampled-data":
            raise GbcsError("expected a GBZ Get Sampled Data command")
        if int(values["sample_id"]) != log.sample_id:
            return self._respond(
                command,
                remote_party,
                GbzPayload(1, (self._default_response(component, 0, 1, ZCL_NOT_FOUND),)),
            )
        step = int(log.interval.total_seconds())
        at = self.register_time(now)
        earliest = max(_utc_seconds(at - log.depth), int(values["earliest_sample_time"]))
        first = -(-earliest // step) * step
        last_end = _utc_seconds(at) // step * step  # only intervals that have ended
        wanted = int(values["number_of_samples"])
        count = max(0, min(wanted, (last_end - first) // step))
        if count == 0:
            answer = self._default_response(component, 0, 1, ZCL_NOT_FOUND)
            return self._respond(command, remote_party, GbzPayload(1, (answer,)))
        registers = self.gas_registers()
        start = GBCS_EPOCH + timedelta(seconds=first)
        plaintext = bytearray()
        plaintext += encode_zcl_value(U16, log.sample_id)
        plaintext += encode_zcl_value(ZCL_UTC, first)
        plaintext += encode_zcl_value(ENUM8, int(values["sample_type"]))
        plaintext += encode_zcl_value(U16, log.interval_field)
        plaintext += encode_zcl_value(U16, count)
        for i in range(count):
            begin = start + i * log.interval
            plaintext += encode_zcl_value(
                U24, registers.drawn(begin, begin + log.interval) % SAMPLE_MODULUS
            )
        answer = self._answer(
            component,
            0,
            1,
            GET_SAMPLED_DATA_RESPONSE,
            ZclPayload(None),
            cluster_specific=True,
            encrypted_content=self._encrypt(command, bytes(plaintext)),
        )
        return self._respond(command, remote_party, GbzPayload(1, (answer,)))

    def _error_response(
        self, command: GeneralCiphering, result: int, now: datetime, remote_party: RemoteParty
    ) -> bytes:
        """A scripted or handler fault (any DLMS ``result``) as a GBZ device reports one, as the
        RTDS ERROR responses: each attribute read ``hardware failure`` (encrypted where the use
        case's answer is), any other command a ZCL Default Response ``hardware failure``
        (GCS07, GCS32)."""
        try:
            components = self._components(command)
        except GbcsError:
            return super()._error_response(command, result, now, remote_party)
        encrypted = command.general_signing.message_code in ENCRYPTED_READS
        answers = []
        for index, component in enumerate(components):
            header = component.header
            if header.cluster_specific or header.command != READ_ATTRIBUTES:
                answers.append(
                    self._default_response(component, index, len(components), ZCL_HARDWARE_FAILURE)
                )
                continue
            records: tuple[dict[str, ZclValue], ...] = tuple(
                {"attribute_id": int(r["attribute_id"]), "status": ZCL_HARDWARE_FAILURE}
                for r in component.payload.records
            )
            answers.append(
                self._attributes_answer(
                    command, component, index, len(components), records, encrypted=encrypted
                )
            )
        self.refusals += 1
        # the date-time only where the use case's answer carries one (the encrypted reads)
        return self._respond(
            command,
            remote_party,
            GbzPayload(len(answers), tuple(answers)),
            now if command.general_signing.message_code in DATED_ANSWERS else None,
        )

    def unsupported(
        self,
        command: GeneralCiphering,
        request: object,
        now: datetime,
        remote_party: RemoteParty,
    ) -> bytes:
        """A GBZ command this model has no handler for: ZCL Default Response ``unsupported
        cluster command`` per component (a non-GBZ one is refused as the base class does)."""
        if command.general_signing.payload[:2] != GBZ_PROFILE_PREFIX:
            return super().unsupported(command, request, now, remote_party)
        try:
            components = self._components(command)
        except GbcsError:
            return super().unsupported(command, request, now, remote_party)
        self.refusals += 1
        answers = tuple(
            self._default_response(c, i, len(components), ZCL_UNSUPPORTED_CLUSTER_COMMAND)
            for i, c in enumerate(components)
        )
        return self._respond(command, remote_party, GbzPayload(len(answers), answers))


PREPAYMENT_ENABLED = 0x0002  # payment control configuration bit 1
SECONDS_PER_DAY = 86_400
DAILY_READ_LOG_DEPTH = 31  # daily snapshots a GSME keeps (GCS16a asks 31 offsets)
PUBLISH_SNAPSHOT = 0x06  # metering cluster, server to client
SNAPSHOT_CAUSE_GENERAL = 0x00000001
SNAPSHOT_BLOCK_TIER_DELIVERED_NO_BILLING = 0x06  # the snapshot payload type of the RTDS
SNAPSHOT_TIERS = 4  # TOU tiers in the snapshot
SNAPSHOT_TIER_BLOCKS = 0x14  # one tier (high nibble) of four blocks (low), as the RTDS
GCS28 = USE_CASES_BY_NAME["GCS28"]
GCS28_COMMAND = ASN1_SCHEMAS[(GCS28.message_code, 1)]
GCS28_RESPONSE = ASN1_SCHEMAS[(GCS28.message_code, 2)]
CLOCK_SET, CLOCK_NOT_SET = 0, 2  # GCS28 results (the RTDS SUCCESS and ERROR responses)
GCS03_CODE = USE_CASES_BY_NAME["GCS03"].message_code


class GasRegisterReads(GbzDevice):
    """The register reads both gas devices answer alike, each from its own attribute values:
    the GSME from its live register, the GPF from its mirror of it as of the last half hour."""

    @on(USE_CASES_BY_NAME["GCS13a"])
    def read_consumption_register(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS13a (4.1.1): unit, multiplier, divisor and current summation delivered,
        encrypted."""
        return self._read_attributes_encrypted(command, remote_party, now)

    @on(GCS13C)
    def read_tou_registers(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS13c (4.1.2): the TOU register matrix (tiers 1-4), encrypted."""
        return self._read_attributes_encrypted(command, remote_party, now)

    @on(GCS60A)
    def read_meter_balance(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS60a (4.18): the meter balance and prepayment credit, in clear, with date-time."""
        return self._read_attributes(command, remote_party, now, with_date_time=True)


@dataclass(frozen=True)
class PendingPaymentMode:
    """A future-dated Change Payment Mode the GSME holds until ``when`` (ZCL UTC time)."""

    configuration: int
    cut_off: int
    when: int
    originator: bytes
    originator_counter: int
    message_code: int

    def to_state(self) -> list[Any]:
        return [
            self.configuration,
            self.cut_off,
            self.when,
            bytes(self.originator),
            self.originator_counter,
            self.message_code,
        ]


@dataclass(frozen=True)
class PendingTariff:
    """A future-dated GCS01a the GSME holds until ``when`` (ZCL UTC time): the GBZ payload
    it published and who sent it (for the outcome alerts)."""

    payload: bytes
    when: int
    originator: bytes
    originator_counter: int

    def to_state(self) -> list[Any]:
        return [self.payload, self.when, bytes(self.originator), self.originator_counter]


# GCS01a: the ZCL commands a tariff is published with (cluster, command id; server to client)
TARIFF_COMMANDS = frozenset(
    {(CALENDAR, command) for command in range(PUBLISH_CALENDAR, PUBLISH_SPECIAL_DAYS + 1)}
    | {(PRICE, command) for command in (0x04, 0x05, 0x06)}
)
TARIFF_CANCEL_TIMES = frozenset({TARIFF_CANCEL_TIME, CALENDAR_CANCEL_TIME})
GCS01A = USE_CASES_BY_NAME["GCS01a"]
CS01B = USE_CASES_BY_NAME["CS01b"]
GCS06 = USE_CASES_BY_NAME["GCS06"]
# ZSE Consumer Top Up Response result types
TOP_UP_ACCEPTED, TOP_UP_REJECTED_INVALID, TOP_UP_REJECTED_DUPLICATE = 0x00, 0x01, 0x02
CONSUMER_TOP_UP_RESPONSE = 0x03  # prepayment cluster, server to client
TOP_UP_NOT_APPLIED = -1  # the value and credit a rejected top-up reports (the RTDS ERROR)
UTRN_DIGITS = 20
# The GBCS UTRN carries its value under a MAC keyed with the Supplier's prepayment KA key,
# which this model does not hold (GBCS 14.3.4-5): it takes a UTRN as well-formed when it is 20
# digits and at least 2**66 - the 20-digit numbers below are the 66-bit STS token range (our
# reading; the RTDS SUCCESS UTRNs pass, the ERROR one does not) - and values each new one at
# the meter's ``top_up_value``.
UTRN_FLOOR = 1 << 66
RTDS_TOP_UP_VALUE = 1_250_000  # what the RTDS GSME credits for its UTRN
EMERGENCY_CREDIT_REMAINING = 0x0002  # prepayment cluster attribute
ZCL_FAILURE_STATUS = 0x01


def well_formed_utrn(utrn: bytes) -> bool:
    """Whether ``utrn`` reads as a GBCS UTRN (see :data:`UTRN_FLOOR`)."""
    return len(utrn) == UTRN_DIGITS and utrn.isdigit() and int(utrn) >= UTRN_FLOOR


class Gsme(GasRegisterReads, MeterJoins, TrustAnchorCells, FirmwareImages):
    """A GSME: attribute reads, its live consumption register and half-hourly profile, its
    HAN joins (CS03B, CS03C and CS07 in ``emulators.han``), its trust anchor cells (CS02b,
    ``emulators.credentials``) and firmware images (CS06, ``emulators.firmware``) — the
    GBCS "CS" use cases, one implementation shared with the ESME — the supplier's display
    message; valve state, message, joins, cells and firmware kept across power cycles."""

    def __init__(
        self,
        *,
        attributes: Mapping[tuple[int, int], tuple[int, ZclValue]] | None = None,
        load_profile: GasLoadProfile | None = None,
        epoch: datetime | None = None,
        trust_anchors: tuple[TrustAnchor, ...] = (),
        root_public_key: ec.EllipticCurvePublicKey | None = None,
        **device: Unpack[DeviceKeys],
    ) -> None:
        """``epoch`` is when the register held the profile's start value (default: now).
        ``trust_anchors`` are the meter's remote party cells and ``root_public_key`` its Root
        cell, as an ESME's: a credentials update (6.15.1, 6.23) replaces a cell when the new
        certificate's path leads to the Root."""
        super().__init__(attributes=attributes, **device)
        self.registers = GasRegisters(
            load_profile or GasLoadProfile(), epoch if epoch is not None else self.clock()
        )
        self.supplier_message: str | None = None
        self.cut_off_value: int | None = None  # the prepayment disablement threshold
        # a future-dated payment mode change held: its command (for the outcome alert), the
        # configuration and cut-off value it sets and when
        self.pending_payment_mode: PendingPaymentMode | None = None
        self.clock_offset = timedelta(0)  # the GSME's clock less the true time (GCS28 sets it)
        # the GCS01a tariff in force (its GBZ payload), and each one's start on the true clock
        self.tariff: bytes | None = None
        self.tariff_history: list[tuple[datetime, bytes]] = []
        self.pending_tariff: PendingTariff | None = None  # a future-dated GCS01a held
        self.applied_utrns: list[bytes] = []  # top-ups accepted by CS01b, oldest first
        self.top_up_value = RTDS_TOP_UP_VALUE  # what a new UTRN credits
        self.emergency_credit_active = False  # GCS06 switched it on
        self.hold_trust_anchors(trust_anchors, root_public_key)

    def device_time(self, now: datetime) -> datetime:
        return now + self.clock_offset

    @property
    def firmware_version(self) -> bytes:
        """The running firmware version: the metering cluster attribute GCS38 reads (CS06
        sets it)."""
        held = self.attributes.get((METERING, FIRMWARE_VERSION))
        return held[1] if held is not None and isinstance(held[1], bytes) else b""

    @firmware_version.setter
    def firmware_version(self, version: bytes) -> None:
        self.attributes[(METERING, FIRMWARE_VERSION)] = (OCTET_STRING, version)

    def gas_registers(self) -> GasRegisters:
        return self.registers

    # -- non-volatile state ---------------------------------------------------------------------

    def nonvolatile_state(self) -> dict[str, Any]:
        """The joins, the valve (supply status and when it was closed), the supplier's
        message, the payment mode, the clock offset, the tariffs, the top-ups, the logs, the
        trust anchor cells and a held credentials update, the firmware (running version,
        received images, a pending activation and who sent it); the register is derived from
        the clock and the valve closures."""
        state = JoiningDevice.nonvolatile_state(self)
        state |= self.credentials_state()
        state |= self.firmware_state()
        if self.future_dated:
            state["future_dated"] = self.future_dated_state()
        state["supply"] = int(self.attributes[(METERING, SUPPLY_STATUS)][1])
        if self.registers.closures:
            state["closures"] = [
                [_microseconds(closed), None if opened is None else _microseconds(opened)]
                for closed, opened in self.registers.closures
            ]
        if self.supplier_message is not None:
            state["message"] = self.supplier_message
        state["payment_mode"] = self.payment_configuration
        if self.clock_offset:
            state["clock_offset_us"] = self.clock_offset // timedelta(microseconds=1)
        if self.cut_off_value is not None:
            state["cut_off"] = self.cut_off_value
        if self.pending_payment_mode is not None:
            state["pending_payment_mode"] = self.pending_payment_mode.to_state()
        if self.tariff_history:
            state["tariffs"] = [[_microseconds(at), p] for at, p in self.tariff_history]
        if self.pending_tariff is not None:
            state["pending_tariff"] = self.pending_tariff.to_state()
        if self.applied_utrns or self.emergency_credit_active:
            state["utrns"] = list(self.applied_utrns)
            state["credit"] = self.credit_remaining
            state["emergency_credit"] = self.emergency_credit_active
        for log_id, entries in self.logs.items():
            if entries:
                state[f"log{log_id}"] = [[e.at, e.event_id, e.data] for e in entries]
        return state

    def restore_nonvolatile_state(self, state: Mapping[str, Any]) -> None:
        JoiningDevice.restore_nonvolatile_state(self, state)
        self.restore_credentials_state(state)
        self.restore_firmware_state(state)
        self.restore_future_dated_state(state.get("future_dated", []))
        if "supply" in state:
            self.attributes[(METERING, SUPPLY_STATUS)] = (ENUM8, int(state["supply"]))
        closures = tuple(
            (_from_microseconds(closed), None if opened is None else _from_microseconds(opened))
            for closed, opened in state.get("closures", ())
        )
        self.registers = replace(self.registers, closures=closures)
        message = state.get("message")
        self.supplier_message = None if message is None else str(message)
        if "payment_mode" in state:
            self.attributes[(PREPAYMENT, PAYMENT_CONTROL_CONFIGURATION)] = (
                BITMAP16,
                int(state["payment_mode"]),
            )
        self.clock_offset = timedelta(microseconds=int(state.get("clock_offset_us", 0)))
        cut_off = state.get("cut_off")
        self.cut_off_value = None if cut_off is None else int(cut_off)
        for log_id in self.logs:
            self.logs[log_id] = [
                GbzLogEntry(int(at), int(code), bytes(data))
                for at, code, data in state.get(f"log{log_id}", ())
            ]
        pending = state.get("pending_payment_mode")
        self.pending_payment_mode = None if pending is None else PendingPaymentMode(*pending)
        self.tariff, self.tariff_history = None, []
        self.registers = replace(self.registers, calendars=())
        for at, payload in state.get("tariffs", ()):
            self._apply_tariff(bytes(payload), _from_microseconds(at))
        held = state.get("pending_tariff")
        self.pending_tariff = (
            None
            if held is None
            else PendingTariff(bytes(held[0]), int(held[1]), bytes(held[2]), int(held[3]))
        )
        self.applied_utrns = [bytes(u) for u in state.get("utrns", ())]
        if "credit" in state:
            self._set_credit(int(state["credit"]))
        self.emergency_credit_active = bool(state.get("emergency_credit", False))

    # -- the payment mode -----------------------------------------------------------------------

    @property
    def payment_configuration(self) -> int:
        """The payment control configuration in force (GCS21j reads it)."""
        return int(self.attributes[(PREPAYMENT, PAYMENT_CONTROL_CONFIGURATION)][1])

    def next_due(self) -> datetime | None:
        """When the earliest held future-dated change (payment mode, tariff, credentials
        update, firmware activation) falls due."""
        held = [
            GBCS_EPOCH + timedelta(seconds=p.when)
            for p in (self.pending_payment_mode, self.pending_tariff)
            if p is not None
        ]
        held += [at for at in (self.credentials_due(), self.firmware_due()) if at is not None]
        if not held:
            return None
        # held by the GSME's clock: due when that clock reaches it
        return min(held) - self.clock_offset

    def run_due(self, now: datetime) -> None:
        """Carry out the held payment mode change and tariff whose time has come, each raising
        its 0x8F66 future-dated outcome alerts (signed, for the party that sent it, as the
        RTDS ones): one for the payment mode, one per tariff component with a start time;
        then a held firmware activation and credentials update (DER outcome alerts)."""
        self.run_due_firmware(now)
        self.run_due_credentials(now)
        device_seconds = _utc_seconds(self.device_time(now))
        pending = self.pending_payment_mode
        if pending is not None and device_seconds >= pending.when:
            self.pending_payment_mode = None
            self._set_payment_mode(pending.configuration, pending.cut_off)
            outcome = FutureDatedOutcome(
                pending.message_code,
                pending.originator_counter,
                PREPAYMENT,
                FRAME_CLUSTER_SPECIFIC,
                CHANGE_PAYMENT_MODE,
            )
            self._future_dated_executed(outcome, pending.when, bytes(pending.originator), now)
        tariff = self.pending_tariff
        if tariff is not None and device_seconds >= tariff.when:
            self.pending_tariff = None
            # in force from its start time (on the GSME's clock), on the true clock
            started = GBCS_EPOCH + timedelta(seconds=tariff.when) - self.clock_offset
            self._apply_tariff(tariff.payload, min(started, now))
            for component in decode_gbz(tariff.payload).components:
                if "start_time" not in component.payload.values:
                    continue  # the profiles and seasons start with the calendar
                outcome = FutureDatedOutcome(
                    GCS01A.message_code,
                    tariff.originator_counter,
                    component.cluster,
                    component.header.frame_control,
                    component.header.command,
                )
                self._future_dated_executed(outcome, tariff.when, bytes(tariff.originator), now)

    def _future_dated_executed(
        self, outcome: FutureDatedOutcome, when: int, recipient: bytes, now: datetime
    ) -> None:
        """Raise the GBZ 0x8F66 alert for ``outcome``, executed at ``when`` (ZCL UTC time),
        signed for ``recipient``, and log it."""
        alert = GbzPayload(1, (), GbzAlert(ALERT_FUTURE_DATED_EXECUTED, when, outcome))
        self._raise_alert(
            ALERT_FUTURE_DATED_EXECUTED,
            recipient,
            self.next_alert_counter(now),
            MESSAGE_CODE_FUTURE_DATED_GBZ,
            alert.encode(),
            now=now,
        )

    def _raise_alert(
        self,
        alert_code: int,
        recipient: bytes,
        counter: int,
        message_code: int,
        payload: bytes,
        *,
        now: datetime,
    ) -> None:
        """As every device raises one, and logged in the event log (the GSME's log of the
        alerts it raised)."""
        super()._raise_alert(alert_code, recipient, counter, message_code, payload, now=now)
        self.logs[GENERAL_EVENT_LOG].append(
            GbzLogEntry(_utc_seconds(self.device_time(now)), alert_code)
        )

    # -- the tariff (GCS01a) --------------------------------------------------------------------

    def _apply_tariff(self, payload: bytes, at: datetime) -> None:
        """Put the tariff a GCS01a published (its GBZ payload) in force from ``at``: the TOU
        registers follow its calendar from then on (a block tariff keeps them on tier 1)."""
        components = decode_gbz(payload).components
        block = any(c.payload.values.get("tariff_type_charging_scheme", 0) for c in components)
        calendar = None if block else TouCalendar.from_components(components)
        self.tariff = payload
        self.tariff_history.append((at, payload))
        self.registers = self.registers.with_calendar(at, calendar)

    def _update_tariff(
        self, command: GeneralCiphering, remote_party: RemoteParty, now: datetime
    ) -> bytes:
        """GCS01a: the Publish Calendar, Day/Week Profile, Seasons, Special Days, Tariff
        Information, Block Thresholds and Price Matrix of one tariff, in force now (start
        time 0), held until their start time (a later one replaces it), or cancelling the
        held one (the RTDS CANCELLATION's 0xFFFFFFFE/0xFFFFFFFF); each component answered
        with a Default Response, signed, with the device's date-time. Start times that
        differ, or one already past, are refused (``invalid field`` for every component)."""
        components = self._components(command)
        if any(
            (c.cluster, c.header.command) not in TARIFF_COMMANDS
            or not c.header.server_to_client
            or c.payload.layout is None
            for c in components
        ) or not any(
            c.cluster == CALENDAR and c.header.command == PUBLISH_CALENDAR for c in components
        ):
            raise GbcsError("expected the ZCL commands of a GCS01a tariff")
        starts = {
            int(c.payload.values["start_time"])
            for c in components
            if "start_time" in c.payload.values
        }
        cancel = bool(starts) and starts <= TARIFF_CANCEL_TIMES
        start = next(iter(starts)) if len(starts) == 1 else None
        payload = command.general_signing.payload
        status = ZCL_SUCCESS
        if cancel:
            self.pending_tariff = None
        elif start is None or (start != IMMEDIATE and start <= _utc_seconds(self.device_time(now))):
            self.refusals += 1
            status = ZCL_INVALID_FIELD
        else:
            TouCalendar.from_components(components)  # a calendar naming what it lacks: refused
            if start == IMMEDIATE:
                self._apply_tariff(payload, now)
            else:
                header = command.general_signing
                self.pending_tariff = PendingTariff(
                    payload, start, header.originator_title, header.originator_counter
                )
        answers = tuple(
            self._default_response(c, i, len(components), status) for i, c in enumerate(components)
        )
        return self._respond(command, remote_party, GbzPayload(len(answers), answers), now)

    # -- prepayment (CS01b, GCS06) --------------------------------------------------------------

    @property
    def credit_remaining(self) -> int:
        """The prepayment credit (GCS60a reads it), in the meter's currency units."""
        return int(self.attributes[(PREPAYMENT, PREPAYMENT_CREDIT_REMAINING)][1])

    def _set_credit(self, credit: int) -> None:
        self.attributes[(PREPAYMENT, PREPAYMENT_CREDIT_REMAINING)] = (INT32, credit)

    def _top_up(self, command: GeneralCiphering, remote_party: RemoteParty, now: datetime) -> bytes:
        """CS01b: a ZCL Consumer Top Up carrying a UTRN. A new, well-formed one
        (:func:`well_formed_utrn`) adds :attr:`top_up_value` to the credit; a malformed one is
        rejected ``invalid``, one already applied ``duplicate``, leaving the credit (value and
        credit reported as -1, as the RTDS ERROR response). Answered MAC'd with the Consumer
        Top Up Response and the device's date-time."""
        (component,) = self._components(command)
        if component.cluster != PREPAYMENT or component.payload.layout != "consumer-top-up":
            raise GbcsError("expected a ZCL Consumer Top Up command")
        values = component.payload.values
        code = values["top_up_code"]
        utrn = code if isinstance(code, bytes) else str(code).encode("latin-1")
        value = credit = TOP_UP_NOT_APPLIED
        if not well_formed_utrn(utrn):
            result = TOP_UP_REJECTED_INVALID
        elif utrn in self.applied_utrns:
            result = TOP_UP_REJECTED_DUPLICATE
        else:
            result, value = TOP_UP_ACCEPTED, self.top_up_value
            self.applied_utrns.append(utrn)
            self._set_credit(self.credit_remaining + value)
            credit = self.credit_remaining
        if result != TOP_UP_ACCEPTED:
            self.refusals += 1
        answer = self._answer(
            component,
            0,
            1,
            CONSUMER_TOP_UP_RESPONSE,
            ZclPayload(
                "consumer-top-up-response",
                {
                    "result_type": result,
                    "top_up_value": value,
                    "source_of_top_up": values["originating_device"],
                    "credit_remaining": credit,
                },
            ),
            cluster_specific=True,
        )
        return self._respond(command, remote_party, GbzPayload(1, (answer,)), now)

    def _activate_emergency_credit(
        self, command: GeneralCiphering, remote_party: RemoteParty
    ) -> bytes:
        """GCS06: Select Available Emergency Credit. Emergency credit is available to a meter
        in prepayment mode whose credit has fallen to the emergency credit threshold; once
        selected it stays active (success again, as GBCS asks). Otherwise the Default
        Response says FAILURE (0x01). Answered signed, without a date-time (the RTDS)."""
        (component,) = self._components(command)
        if (
            component.cluster != PREPAYMENT
            or component.payload.layout != "select-available-emergency-credit"
        ):
            raise GbcsError("expected a ZCL Select Available Emergency Credit command")
        available = bool(self.payment_configuration & PREPAYMENT_ENABLED) and (
            self.credit_remaining
            <= int(PAYMENT_MODE_RESPONSE_SETTINGS["emergency_credit_threshold"])
        )
        if available and not self.emergency_credit_active:
            self.emergency_credit_active = True
            limit = int(PAYMENT_MODE_RESPONSE_SETTINGS["emergency_credit_limit"])
            self.attributes[(PREPAYMENT, EMERGENCY_CREDIT_REMAINING)] = (INT32, limit)
        status = ZCL_SUCCESS if self.emergency_credit_active else ZCL_FAILURE_STATUS
        if status != ZCL_SUCCESS:
            self.refusals += 1
        answer = self._default_response(component, 0, 1, status)
        return self._respond(command, remote_party, GbzPayload(1, (answer,)))

    @on(GCS01A)
    def update_tariff(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS01a (1.1.1, critical): the import tariff, now or future-dated."""
        return self._update_tariff(command, remote_party, now)

    @on(CS01B)
    def top_up(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """CS01b (2.2): apply a UTRN to the prepayment credit."""
        return self._top_up(command, remote_party, now)

    @on(GCS06)
    def activate_emergency_credit(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """GCS06 (2.5, critical): switch on emergency credit where it is available."""
        return self._activate_emergency_credit(command, remote_party)

    def _set_payment_mode(self, configuration: int, cut_off: int) -> None:
        self.attributes[(PREPAYMENT, PAYMENT_CONTROL_CONFIGURATION)] = (BITMAP16, configuration)
        self.cut_off_value = cut_off

    def _change_payment_mode(
        self, command: GeneralCiphering, remote_party: RemoteParty, now: datetime
    ) -> bytes:
        """GCS02/GCS03: a ZCL Change Payment Mode, now (0), held until its implementation
        date-time (a later one replaces it), or cancelling the held one (0xFFFFFFFF); answered
        signed with the Change Payment Mode Response and the device's date-time. A time
        already past is refused (Default Response ``invalid field``), as is a credit-mode
        configuration with prepayment bits or the other way round."""
        (component,) = self._components(command)
        values = component.payload.values
        if component.cluster != PREPAYMENT or component.payload.layout != "change-payment-mode":
            raise GbcsError("expected a ZCL Change Payment Mode command")
        when = int(values["implementation_date_time"])
        configuration = int(values["proposed_payment_control_configuration"])
        prepayment = bool(configuration & PREPAYMENT_ENABLED)
        wants_prepayment = command.general_signing.message_code == GCS03_CODE
        if prepayment != wants_prepayment or (
            when != IMMEDIATE
            and when != ZCL_CANCEL_TIME
            and when <= _utc_seconds(self.device_time(now))
        ):
            self.refusals += 1
            answer = self._default_response(component, 0, 1, ZCL_INVALID_FIELD)
            return self._respond(command, remote_party, GbzPayload(1, (answer,)), now)
        cut_off = int(values["cut_off_value"])
        if when == IMMEDIATE:
            self._set_payment_mode(configuration, cut_off)
        elif when == ZCL_CANCEL_TIME:
            self.pending_payment_mode = None
        else:
            header = command.general_signing
            self.pending_payment_mode = PendingPaymentMode(
                configuration,
                cut_off,
                when,
                header.originator_title,
                header.originator_counter,
                header.message_code,
            )
        answer = self._answer(
            component,
            0,
            1,
            CHANGE_PAYMENT_MODE_RESPONSE,
            ZclPayload("change-payment-mode-response", dict(PAYMENT_MODE_RESPONSE_SETTINGS)),
            cluster_specific=True,
        )
        answer = _disable_default_response(answer)
        return self._respond(command, remote_party, GbzPayload(1, (answer,)), now)

    # -- the valve ------------------------------------------------------------------------------

    @property
    def supply_status(self) -> int:
        """The valve as the supply status attribute reports it (``SUPPLY_*``)."""
        return int(self.attributes[(METERING, SUPPLY_STATUS)][1])

    def _set_supply(self, status: int, now: datetime) -> None:
        """Move the valve: gas stops flowing while it is off (armed included), not before."""
        self.attributes[(METERING, SUPPLY_STATUS)] = (ENUM8, status)
        if status == SUPPLY_ON:
            self.registers = self.registers.valve_opened(now)
        else:
            self.registers = self.registers.valve_closed(now)

    def consumer_opens_valve(self, now: datetime) -> bool:
        """The consumer pressing the button on an armed meter: the valve opens (True), or
        nothing happens when it is not armed (False)."""
        if self.supply_status != SUPPLY_OFF_ARMED:
            return False
        self._set_supply(SUPPLY_ON, now)
        return True

    def _change_supply(
        self,
        command: GeneralCiphering,
        remote_party: RemoteParty,
        now: datetime,
        proposed: int,
    ) -> bytes:
        """GCS32/GCS39: a ZCL Change Supply proposing ``proposed`` now, answered (signed) with
        the Supply Status Response carrying the valve's state afterwards. Closing works from
        any state; arming takes a closed valve to armed and leaves an open one open (the
        consumer then has nothing to press). A proposal that is not this use case's, or a
        date in the future (the GSME does not hold valve commands), is a Default Response
        ``invalid field`` and leaves the valve as it was."""
        (component,) = self._components(command)
        values = component.payload.values
        if component.cluster != METERING or component.payload.layout != "change-supply":
            raise GbcsError("expected a ZCL Change Supply command")
        if (
            int(values["proposed_supply_status"]) != proposed
            or int(values["implementation_date_time"]) != IMMEDIATE
        ):
            self.refusals += 1
            answer = self._default_response(component, 0, 1, ZCL_INVALID_FIELD)
            return self._respond(command, remote_party, GbzPayload(1, (answer,)))
        if proposed == SUPPLY_OFF or self.supply_status != SUPPLY_ON:
            self._set_supply(proposed, now)
        answer = self._answer(
            component,
            0,
            1,
            SUPPLY_STATUS_RESPONSE,
            ZclPayload(
                "supply-status-response",
                {
                    "provider_id": values["provider_id"],
                    "issuer_event_id": values["issuer_event_id"],
                    "implementation_date_time": values["implementation_date_time"],
                    "supply_status": self.supply_status,
                },
            ),
            cluster_specific=True,
        )
        return self._respond(command, remote_party, GbzPayload(1, (answer,)))

    # -- handlers -------------------------------------------------------------------------------

    @on(USE_CASES_BY_NAME["GCS17"])
    def read_profile_data(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS17 (4.8.1): half-hourly consumption from the earliest sample time, encrypted."""
        return self._sampled_data(HALF_HOURLY_PROFILE, command, remote_party, now)

    @on(USE_CASES_BY_NAME["GCS38"])
    def read_firmware_version(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS38 (11.2): Read Attributes on the metering cluster's firmware version."""
        return self._read_attributes(command, remote_party, now)

    @on(USE_CASES_BY_NAME["GCS21j"])
    def read_payment_mode(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS21j (6.2.9): Read Attributes on the prepayment cluster's payment control
        configuration, in clear."""
        return self._read_attributes(command, remote_party, now)

    @on(USE_CASES_BY_NAME["GCS33"])
    def read_valve_status(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS33 (7.4): Read Attributes on the supply (valve) status."""
        return self._read_attributes(command, remote_party, now)

    @on(USE_CASES_BY_NAME["GCS02"], USE_CASES_BY_NAME["GCS03"])
    def update_payment_mode(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS02/GCS03 (1.6, critical): credit or prepayment mode, now or future-dated."""
        return self._change_payment_mode(command, remote_party, now)

    @on(USE_CASES_BY_NAME["GCS16a"])
    def read_daily_read_log(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS16a (4.6.1): the daily read log, one Get Snapshot per component; see
        :meth:`_daily_snapshots`."""
        return self._daily_snapshots(command, remote_party, now)

    def _daily_snapshots(
        self, command: GeneralCiphering, remote_party: RemoteParty, now: datetime
    ) -> bytes:
        """The GSME snapshots its registers at each midnight (UTC, by its own clock) and keeps
        the last :data:`DAILY_READ_LOG_DEPTH`; they are derived from the register, not stored.
        Each Get Snapshot names a window and an offset: the offset-th snapshot in the window,
        oldest first (as the RTDS response: offset 0 the earlier day), answered with a Publish
        Snapshot encrypted for the User (block tier set, no billing: the summation, the four
        TOU tiers, the four blocks of one tier); a ZCL Default Response ``not found`` past the
        last one, as the RTDS."""
        components = self._components(command)
        device_now = self.device_time(now)
        last = _utc_seconds(device_now) // SECONDS_PER_DAY * SECONDS_PER_DAY
        installed = _utc_seconds(self.device_time(self.registers.epoch))
        held = [
            t
            for t in (last - i * SECONDS_PER_DAY for i in reversed(range(DAILY_READ_LOG_DEPTH)))
            if t >= installed
        ]
        answers = []
        for index, component in enumerate(components):
            values = component.payload.values
            if component.cluster != METERING or component.payload.layout != "get-snapshot":
                raise GbcsError("expected a ZCL Get Snapshot command")
            window = [
                t
                for t in held
                if int(values["earliest_start_time"]) <= t <= int(values["latest_end_time"])
            ]
            offset = int(values["snapshot_offset"])
            if offset >= len(window):
                answers.append(
                    self._default_response(component, index, len(components), ZCL_NOT_FOUND)
                )
                continue
            taken = window[offset]
            # the register at the GSME's midnight, on the true clock
            at = GBCS_EPOCH + timedelta(seconds=taken) - self.clock_offset
            plaintext = self._snapshot(offset, taken, len(window), self.registers.litres(at))
            answers.append(
                self._answer(
                    component,
                    index,
                    len(components),
                    PUBLISH_SNAPSHOT,
                    ZclPayload(None),
                    cluster_specific=True,
                    encrypted_content=self._encrypt(command, plaintext),
                )
            )
        return self._respond(command, remote_party, GbzPayload(len(answers), tuple(answers)))

    @staticmethod
    def _snapshot(snapshot_id: int, taken: int, found: int, litres: int) -> bytes:
        """A Publish Snapshot payload (zigbee.py's ``publish-snapshot`` layout, the RTDS
        GCS16a's): single rate, so tier 1 and its block 1 hold everything."""
        values: dict[str, ZclValue] = {
            "snapshot_id": snapshot_id,
            "snapshot_time": taken,
            "total_snapshots_found": found,
            "command_index": 0,
            "total_commands": 1,
            "snapshot_cause": SNAPSHOT_CAUSE_GENERAL,
            "snapshot_payload_type": SNAPSHOT_BLOCK_TIER_DELIVERED_NO_BILLING,
            "current_summation_delivered": litres,
            "number_of_tiers_in_use": SNAPSHOT_TIERS,
            "number_of_tiers_and_blocks_in_use": SNAPSHOT_TIER_BLOCKS,
        }
        for n in range(1, 5):
            values[f"tier{n}_summation_delivered"] = litres if n == 1 else 0
            values[f"tier1_block{n}_summation_delivered"] = litres if n == 1 else 0
        header = ZclHeader(FRAME_CLUSTER_SPECIFIC | FRAME_SERVER_TO_CLIENT, 0, PUBLISH_SNAPSHOT)
        return encode_zcl_payload(METERING, header, ZclPayload("publish-snapshot", values))

    @on(USE_CASES_BY_NAME["CS10a"], USE_CASES_BY_NAME["CS10b"])
    def read_log(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """CS10a / CS10b (6.13): the event or the security log."""
        return self._read_log(command, remote_party, now)

    @on(GCS28)
    def set_clock(self, *, command: GeneralCiphering, now: datetime, **_: Any) -> bytes:
        """GCS28 (6.11, 8.1.1, critical): set the clock to the validity period's start when
        the command arrives within the period (by the GSME's clock or the true time), result
        0; otherwise leave it, result 2 (as the RTDS ERROR response). Either way the answer,
        signed, carries the clock's time afterwards (to the second)."""
        fields = decode_with(GCS28_COMMAND, command.general_signing.payload)
        if not isinstance(fields, Mapping):
            raise GbcsError("GCS28 command is not a set-time")
        start = parse_asn1_time(str(fields["validity_start"]))
        end = parse_asn1_time(str(fields["validity_end"]))
        device_now = self.device_time(now)
        result = CLOCK_NOT_SET
        if start <= device_now <= end or start <= now <= end:
            self.clock_offset = start - now
            result = CLOCK_SET
        else:
            self.refusals += 1
        payload = encode_with(
            GCS28_RESPONSE,
            {"date_time": asn1_time(self.device_time(now)), "result": result},
        )
        return build_signed_response(
            command=command, payload=payload, date_time=None, device_ds_private=self.ds_private_key
        )

    @on(USE_CASES_BY_NAME["GCS32"])
    def close_valve(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS32 (7.2, critical): close the valve; the register stops growing."""
        return self._change_supply(command, remote_party, now, SUPPLY_OFF)

    @on(USE_CASES_BY_NAME["GCS39"])
    def arm_valve(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS39 (7.3, critical): arm a closed valve for the consumer to open."""
        return self._change_supply(command, remote_party, now, SUPPLY_OFF_ARMED)

    @on(USE_CASES_BY_NAME["GCS07"])
    def display_message(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """GCS07 (3.1): keep the Display Message text, answer with a ZCL Default Response."""
        (component,) = self._components(command)
        if component.cluster != MESSAGING or component.payload.layout != "display-message":
            raise GbcsError("GCS07 command is not a ZCL Display Message")
        message = component.payload.values["message"]
        self.supplier_message = message if isinstance(message, str) else None
        answer = self._default_response(component, 0, 1, ZCL_SUCCESS)
        return self._respond(command, remote_party, GbzPayload(1, (answer,)))
