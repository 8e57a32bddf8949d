"""An emulated electricity smart meter (ESME): its registers and its GBCS use-case handlers."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs import dlms
from dccsim.gbcs.dlms import AccessRequest, CompactArray, Data, DataType, encode_date_time
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
from emulators.device import DeviceFault, GbcsDevice, RemoteParty, on

EVENT_LOG = bytes.fromhex("0000636200FF")  # 0-0:99.98.0.255
SECURITY_LOG = bytes.fromhex("0000636201FF")  # 0-0:99.98.1.255
POWER_EVENT_LOG = bytes.fromhex("0000636204FF")  # 0-0:99.98.4.255

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


class SupplyState(IntEnum):
    """The load switch, as the disconnect control object's control_state reports it."""

    DISCONNECTED = 0
    CONNECTED = 1
    ARMED = 2  # ready_for_reconnection: the consumer closes it


class Esme(GbcsDevice):
    """An ESME: import registers derived from the injected clock and its load profile."""

    def __init__(
        self,
        *,
        eui: bytes,
        ka_private_key: ec.EllipticCurvePrivateKey,
        ds_private_key: ec.EllipticCurvePrivateKey,
        acb_ka_public: ec.EllipticCurvePublicKey,
        remote_parties: Mapping[bytes, RemoteParty],
        clock: Callable[[], datetime],
        load_profile: LoadProfile | None = None,
        epoch: datetime | None = None,
    ) -> None:
        """``epoch`` is when the registers held the profile's start values (default: now)."""
        super().__init__(
            eui=eui,
            ka_private_key=ka_private_key,
            ds_private_key=ds_private_key,
            acb_ka_public=acb_ka_public,
            remote_parties=remote_parties,
            clock=clock,
        )
        self.load_profile = load_profile or LoadProfile()
        self.epoch = epoch if epoch is not None else clock()
        self.supply = SupplyState.CONNECTED
        self.clock_offset = timedelta()  # device clock minus the injected clock (set by ECS70)
        self.firmware_version = DEFAULT_FIRMWARE_VERSION
        self.supplier_message: bytes | None = None  # what ECS10 last put on the display
        self.applied_utrns: list[bytes] = []  # top-ups accepted by CS01a, oldest first
        # logs ECS35a/b/e read (log instance id -> entries); tests and the estate append
        self.logs: dict[bytes, list[LogEntry]] = {
            EVENT_LOG: [],
            SECURITY_LOG: [],
            POWER_EVENT_LOG: [],
        }

    def device_time(self, now: datetime) -> datetime:
        return now + self.clock_offset

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
        return build_access_response(
            command=command,
            data=(dlms.enum(int(self.supply)),),
            results=(ACTION_SUCCESS,),
            date_time=None,
            device_ka_private=self.ka_private_key,
            recipient_ka_public=remote_party.ka_public_key,
        )

    def _maced(
        self,
        command: GeneralCiphering,
        remote_party: RemoteParty,
        data: Data,
        date_time: datetime | None = None,
    ) -> bytes:
        return build_access_response(
            command=command,
            data=(data,),
            results=(ACTION_SUCCESS,),
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
