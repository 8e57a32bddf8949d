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
from dccsim.gbcs.dlms import AccessKind, AccessRequest, Data, RequestSpec
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.usecases import USE_CASES_BY_NAME, UseCase, ecs17b_request, invoke_id_for

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

    def request(self, context: CommandContext) -> AccessRequest:
        data = self.data(context)
        if len(data) != len(self.specs):
            raise GbcsError(f"{self.use_case.name}: {len(data)} data for {len(self.specs)} specs")
        return AccessRequest(
            invoke_id_and_priority=invoke_id_for(context.counter),
            date_time=b"",
            specs=self.specs,
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


def _execute_script(use_case: str, script: int) -> DlmsCommandLayout:
    return DlmsCommandLayout(
        USE_CASES_BY_NAME[use_case],
        (RequestSpec(AccessKind.ACTION, SCRIPT_TABLE_CLASS, DISCONNECT_SCRIPT_TABLE, EXECUTE),),
        _fixed(dlms.long_unsigned(script)),
    )


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
