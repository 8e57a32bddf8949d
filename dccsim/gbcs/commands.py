"""ESME DLMS commands as data: one layout per use case (request specifications and their data).

A layout names the COSEM objects a use case touches and how its data is filled from the
Service Request's parameters; :func:`command_payload` turns it into the Access Request payload,
which :mod:`dccsim.gbcs.critical` (critical) or :func:`dccsim.gbcs.usecases.build_command`
(non-critical) then frames. Every layout here reproduces its RTDS vector byte for byte.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dccsim.gbcs import dlms
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
ACCOUNT = bytes.fromhex("0001130000FF")  # 0-1:19.0.0.255
ACCOUNT_MODE_AND_STATUS, CREDIT_REFERENCE_LIST, ACCOUNT_ACTIVATION_TIME = 2, 11, 13
TOKEN_GATEWAY_CLASS = 115
TOKEN_GATEWAY = bytes.fromhex("0000132800FF")  # 0-0:19.40.0.255
ENTER_TOKEN = 1
SUPPLIER_MESSAGE = bytes.fromhex("0002600D01FF")  # 0-2:96.13.1.255
FIRMWARE_VERSION = bytes.fromhex("0000000201FF")  # 0-0:0.2.1.255
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
CREDIT_MODE = 1
CREDIT_REFERENCE_TARIFF = bytes.fromhex("0000130A00FF")  # 0-0:19.10.0.255
CREDIT_REFERENCES_SINGLE = (bytes.fromhex("0000131400FF"), bytes.fromhex("0000131404FF"))
CREDIT_REFERENCE_TWIN = bytes.fromhex("0000131405FF")
CREDIT_CONFIGURATION = dlms.BitString(3, b"\xe0")

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


def _ecs02_data(context: CommandContext) -> tuple[Data, ...]:
    """Set the ESME to credit mode: the credit references to use (two, three for a twin
    element meter) and when, ``execution_date_time`` (None: now; year 3000: cancel)."""
    twin = context.parameters.get("twin", False)
    if not isinstance(twin, bool):
        raise GbcsError("command parameter 'twin' must be a bool")
    when = context.parameters.get("execution_date_time")
    if when is None:
        activation = IMMEDIATE_DATE_TIME
    elif isinstance(when, dt.datetime) and _utc(when).year >= CANCELLATION_YEAR:
        activation = UNSPECIFIED_DATE_TIME
    elif isinstance(when, dt.datetime):
        activation = dlms.encode_date_time(_utc(when))
    else:
        raise GbcsError("command parameter 'execution_date_time' must be a datetime")
    references = CREDIT_REFERENCES_SINGLE + ((CREDIT_REFERENCE_TWIN,) if twin else ())
    return (
        dlms.structure(dlms.enum(CREDIT_MODE), dlms.enum(1)),
        dlms.array(
            *(
                dlms.structure(
                    dlms.octet_string(CREDIT_REFERENCE_TARIFF),
                    dlms.octet_string(reference),
                    Data(dlms.DataType.BIT_STRING, CREDIT_CONFIGURATION),
                )
                for reference in references
            )
        ),
        dlms.octet_string(activation),
    )


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


def command_payload(use_case: str, context: CommandContext) -> bytes:
    """The DLMS Access Request payload of ``use_case`` (e.g. ``"ECS42"``) for ``context``.

    Raises :class:`GbcsError` for a use case without a layout or a missing parameter.
    """
    layout = LAYOUTS.get(use_case)
    if layout is None:
        raise GbcsError(f"no DLMS command layout for {use_case}")
    return layout.request(context).encode()
