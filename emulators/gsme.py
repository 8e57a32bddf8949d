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

Not modelled yet (answered ``unsupported cluster command``): the daily read log (GCS16a, ZCL
snapshots), billing data (GCS15d), tariff, payment mode and prepayment changes, valve control
(GCS32/GCS39, critical) and clock setting (GCS28).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.crypto import content_context, encrypt_content
from dccsim.gbcs.der import encode_with, integer
from dccsim.gbcs.dlms import encode_date_time
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import GeneralCiphering
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, build_maced_response
from dccsim.gbcs.zigbee import (
    BITMAP16,
    CONTROL_ENCRYPTED,
    CONTROL_LAST,
    ENUM8,
    FRAME_CLUSTER_SPECIFIC,
    INT32,
    MESSAGING,
    METERING,
    OCTET_STRING,
    PREPAYMENT,
    U16,
    U32,
    GbzComponent,
    GbzPayload,
    ZclHeader,
    ZclPayload,
    ZclValue,
    decode_gbz,
    encode_zcl_payload,
    encode_zcl_value,
)
from emulators.device import ALERT_SOURCE_NOT_AUTHORISED, GbcsDevice, RemoteParty, on
from emulators.han import CS03B, JoiningDevice

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
# the balances stay as installed: the model has no gas tariff to move them
DEFAULT_ATTRIBUTES: dict[tuple[int, int], tuple[int, ZclValue]] = {
    (METERING, 0x0206): (OCTET_STRING, bytes.fromhex("0123ABCD")),  # firmware version (GCS38)
    (METERING, 0x0205): (U16, 100),  # read by GCS33 with the valve status
    (METERING, SUPPLY_STATUS): (ENUM8, 2),  # supply status: 2 on (valve open)
    (METERING, UNIT_OF_MEASURE): (ENUM8, UNIT_CUBIC_METRES),
    (METERING, MULTIPLIER): (U24, 1),
    (METERING, DIVISOR): (U24, LITRES_PER_CUBIC_METRE),
    (METERING, METER_BALANCE): (U32, 3_500_000),
    (PREPAYMENT, PREPAYMENT_CREDIT_REMAINING): (INT32, 2_500_000),
    # as installed: the model does not change the payment mode (GCS02/GCS03 are not modelled)
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


@dataclass(frozen=True)
class GasRegisters:
    """A gas meter's consumption register as a function of the clock: ``profile`` since
    ``epoch`` (when the register held the profile's start value)."""

    profile: GasLoadProfile
    epoch: datetime

    def litres(self, at: datetime) -> int:
        """The current summation delivered at ``at`` (never below its start value)."""
        return (self.profile.start_litres + self.profile.consumed(self.epoch, at)) % (
            REGISTER_MODULUS
        )

    def tiers(self, at: datetime) -> tuple[int, int, int, int]:
        """The TOU registers: the emulated tariff is single rate, all on tier 1."""
        return (self.litres(at), 0, 0, 0)

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


class GbzDevice(GbcsDevice):
    """What the gas devices (GSME, GPF) share: GBZ decoding, ZCL answers, encrypted content."""

    def __init__(
        self,
        *,
        eui: bytes,
        ka_private_key: ec.EllipticCurvePrivateKey,
        ds_private_key: ec.EllipticCurvePrivateKey,
        acb_ka_public: ec.EllipticCurvePublicKey,
        remote_parties: Mapping[bytes, RemoteParty],
        clock: Callable[[], datetime],
        attributes: Mapping[tuple[int, int], tuple[int, ZclValue]] | None = None,
    ) -> None:
        super().__init__(
            eui=eui,
            ka_private_key=ka_private_key,
            ds_private_key=ds_private_key,
            acb_ka_public=acb_ka_public,
            remote_parties=remote_parties,
            clock=clock,
        )
        self.attributes = dict(DEFAULT_ATTRIBUTES if attributes is None else attributes)

    # -- what subclasses answer from ----------------------------------------------------------

    def gas_registers(self) -> GasRegisters:
        """The consumption register this device reports (its own, or the GSME mirror's)."""
        raise NotImplementedError

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
        return build_maced_response(
            command=_without_certificate(command),
            payload=gbz.encode(),
            date_time=None if date_time is None else encode_date_time(date_time),
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
        case's answer is), any other command a ZCL Default Response ``failure``."""
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
                    self._default_response(component, index, len(components), ZCL_FAILURE)
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
        return self._respond(command, remote_party, GbzPayload(len(answers), tuple(answers)), now)

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


class Gsme(GbzDevice, JoiningDevice):
    """A GSME: attribute reads, its live consumption register and half-hourly profile, its
    HAN joins (CS03B here, CS07 in ``emulators.han``), the supplier's display message; valve state,
    message and joins kept across power cycles."""

    def __init__(
        self,
        *,
        eui: bytes,
        ka_private_key: ec.EllipticCurvePrivateKey,
        ds_private_key: ec.EllipticCurvePrivateKey,
        acb_ka_public: ec.EllipticCurvePublicKey,
        remote_parties: Mapping[bytes, RemoteParty],
        clock: Callable[[], datetime],
        attributes: Mapping[tuple[int, int], tuple[int, ZclValue]] | None = None,
        load_profile: GasLoadProfile | None = None,
        epoch: datetime | None = None,
    ) -> None:
        """``epoch`` is when the register held the profile's start value (default: now)."""
        super().__init__(
            eui=eui,
            ka_private_key=ka_private_key,
            ds_private_key=ds_private_key,
            acb_ka_public=acb_ka_public,
            remote_parties=remote_parties,
            clock=clock,
            attributes=attributes,
        )
        self.registers = GasRegisters(
            load_profile or GasLoadProfile(), epoch if epoch is not None else clock()
        )
        self.supplier_message: str | None = None

    def gas_registers(self) -> GasRegisters:
        return self.registers

    # -- non-volatile state ---------------------------------------------------------------------

    def nonvolatile_state(self) -> dict[str, Any]:
        """The joins, the valve (supply status) and the supplier's message; the register is
        derived from the clock."""
        state = JoiningDevice.nonvolatile_state(self)
        state["supply"] = int(self.attributes[(METERING, SUPPLY_STATUS)][1])
        if self.supplier_message is not None:
            state["message"] = self.supplier_message
        return state

    def restore_nonvolatile_state(self, state: Mapping[str, Any]) -> None:
        JoiningDevice.restore_nonvolatile_state(self, state)
        if "supply" in state:
            self.attributes[(METERING, SUPPLY_STATUS)] = (ENUM8, int(state["supply"]))
        message = state.get("message")
        self.supplier_message = None if message is None else str(message)

    # -- handlers -------------------------------------------------------------------------------

    @on(USE_CASES_BY_NAME["GCS13a"])
    def read_consumption_register(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, now: datetime, **_: Any
    ) -> bytes:
        """GCS13a (4.1.1): unit, multiplier, divisor and current summation delivered, from the
        live register, encrypted."""
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

    @on(CS03B)
    def join_method_b(
        self, *, command: GeneralCiphering, remote_party: RemoteParty, **_: Any
    ) -> bytes:
        """CS03B (8.7.2) Method B join: a device without SMKI credentials (an IHD) joins the
        meter; INTEGER result, MAC'd (not signed, as the RTDS vector)."""
        result = self._join_result(command.general_signing.payload)
        return build_maced_response(
            command=command,
            payload=encode_with(integer("result"), result),
            date_time=None,
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )

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
