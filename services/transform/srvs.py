"""The transformation table: which (SRV, device type) becomes which GBCS use case, and how.

Pure functions over the DUIS body and keys; the service (app.py) does the I/O.

- Non-critical SRVs (CV 1/2/3): :func:`build_command` -> the General Ciphering command, MAC'd
  by the ACB.
- Critical SRVs: CV 4 -> :func:`build_pre_command` (returned to the User in ``PreCommand``);
  CV 5/6/7 -> :func:`command_from_signed_pre_command` checks the User's Signed Pre-Command
  against the Pre-Command issued for that RequestID and the User's DS key, then the ACB wraps it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from threading import Lock

from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from dccsim.duis.codes import DuisError
from dccsim.duis.requestid import parse_eui
from dccsim.gbcs import critical
from dccsim.gbcs.commands import CommandContext, command_payload
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.gbcs.usecases import build_command as build_gbcs_command

SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"

BodyParameters = Callable[["etree._Element | None"], dict[str, object]]


def _no_parameters(_body: etree._Element | None) -> dict[str, object]:
    return {}


class ServiceRequestBodyError(GbcsError):
    """The DUIS body lacks a value the command needs, or holds one this device cannot take.

    The request itself is at fault, so the service answers the User (E13) rather than retry.
    """


def _child_text(body: etree._Element | None, path: str) -> str:
    """The text at ``path`` (local names joined by ``/``) below the DUIS body element."""
    element = body
    for local in path.split("/"):
        element = None if element is None else element.find(f"{{{SR_NS}}}{local}")
    if element is None or not (element.text or "").strip():
        raise ServiceRequestBodyError(f"DUIS body has no {path}")
    return (element.text or "").strip()


def _date_time(body: etree._Element | None, path: str) -> dt.datetime:
    """An xs:dateTime of the body as an aware datetime (no zone: DUIS means UTC)."""
    text = _child_text(body, path)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ServiceRequestBodyError(f"bad {path} {text!r}: {exc}") from exc
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _clock_parameters(body: etree._Element | None) -> dict[str, object]:
    """SynchroniseClock / CommissionDeviceSynchroniseClock: CurrentDateTime, TolerancePeriod."""
    when = _date_time(body, "CurrentDateTime")
    try:
        tolerance = int(_child_text(body, "TolerancePeriod"))
    except ValueError as exc:
        raise ServiceRequestBodyError(f"bad SynchroniseClock value: {exc}") from exc
    return {"current_date_time": when, "tolerance_period": tolerance}


def _display_message_parameters(body: etree._Element | None) -> dict[str, object]:
    """DisplayMessage: SupplierMessage, the text for the meter's display."""
    return {"supplier_message": _child_text(body, "SupplierMessage")}


def _top_up_parameters(body: etree._Element | None) -> dict[str, object]:
    """TopUpDevice: UTRN, the 20-digit top-up code."""
    return {"utrn": _child_text(body, "UTRN")}


def _log_period_parameters(body: etree._Element | None) -> dict[str, object]:
    """ReadLogPeriod's StartDateTime and EndDateTime (6.13 and the 4.6.1/4.8.1/4.17 reads)."""
    return {
        "start_date_time": _date_time(body, "ReadLogPeriod/StartDateTime"),
        "end_date_time": _date_time(body, "ReadLogPeriod/EndDateTime"),
    }


# 8.11 Update HAN Device Log: DUIS RequestType -> the CHF use case
HAN_DEVICE_LOG_REQUESTS: dict[str, str] = {"Add": "CCS01", "Remove": "CCS02"}


def _han_device_log_use_case(body: etree._Element | None) -> str:
    request_type = _child_text(body, "RequestType")
    use_case = HAN_DEVICE_LOG_REQUESTS.get(request_type)
    if use_case is None:
        raise ServiceRequestBodyError(f"RequestType {request_type} is neither Add nor Remove")
    return use_case


def _han_device_log_parameters(body: etree._Element | None) -> dict[str, object]:
    """UpdateHANDeviceLog: DeviceID (the HAN device), and to add it the
    AddDeviceToCHFWhitelist's JoinTimePeriod (seconds) and InstallCode (hex, 16 octets).
    The device's type is not in the body: the service adds ``device_type`` from the inventory.
    """
    text = _child_text(body, "DeviceID")
    try:
        parameters: dict[str, object] = {"device_id": parse_eui(text)}
    except DuisError as exc:
        raise ServiceRequestBodyError(f"bad DeviceID {text!r}: {exc}") from exc
    if _han_device_log_use_case(body) == "CCS01":
        add = "AddDeviceToCHFWhitelist"
        try:
            parameters["join_time_period"] = int(_child_text(body, f"{add}/JoinTimePeriod"))
            parameters["install_code"] = bytes.fromhex(_child_text(body, f"{add}/InstallCode"))
        except ValueError as exc:
            raise ServiceRequestBodyError(f"bad {add} value: {exc}") from exc
    return parameters


# 6.13 to an ESME: DUIS LogToRead -> the ECS35 use case reading that log. The ALCS and GSME
# logs are not read from an ESME here (the emulated ESME has neither).
ESME_LOGS: dict[str, str] = {"Event": "ECS35a", "Security": "ECS35b", "PowerEvent": "ECS35e"}


def _esme_log_use_case(body: etree._Element | None) -> str:
    log = _child_text(body, "LogToRead")
    use_case = ESME_LOGS.get(log)
    if use_case is None:
        raise ServiceRequestBodyError(f"LogToRead {log} is not a log of an ESME")
    return use_case


@dataclass(frozen=True)
class Transformation:
    """How one (SRV, device type) becomes GBCS: its use case and how to read its DUIS body.

    ``use_case`` is the use case, or the representative one when ``select`` picks it from the
    body (6.13: one ECS35 use case per log); all the use cases of one row share criticality.
    """

    srv: str
    device_type: str
    use_case: str
    body_element: str
    parameters: BodyParameters = field(default=_no_parameters)
    select: Callable[[etree._Element | None], str] | None = None
    # The DCC's own commands (8.11 to a CHF): the grouping-header originator is the ACB, with
    # its own counter; the User's EUI and DUIS counter go in the Other Information extras.
    acb_originated: bool = False
    # the DUIS body's DeviceID is a HAN device whose inventory device type the command needs
    needs_han_device_type: bool = False

    @property
    def critical(self) -> bool:
        return USE_CASES_BY_NAME[self.use_case].critical

    def use_case_for(self, body: etree._Element | None) -> str:
        """The use case this request's body asks for; :class:`ServiceRequestBodyError` if none."""
        return self.use_case if self.select is None else self.select(body)

    def payload(
        self,
        *,
        originator_title: bytes,
        device_title: bytes,
        counter: int,
        body: etree._Element | None = None,
        extra_parameters: Mapping[str, object] | None = None,
    ) -> bytes:
        parameters = {**self.parameters(body), **(extra_parameters or {})}
        context = CommandContext(counter, originator_title, device_title, parameters)
        return command_payload(self.use_case_for(body), context)


TRANSFORMATIONS: tuple[Transformation, ...] = (
    Transformation("4.1.1", "ESME", "ECS17b", "ReadInstantaneousImportRegisters"),
    Transformation("6.11", "ESME", "ECS70", "SynchroniseClock", _clock_parameters),
    Transformation("8.1.1", "ESME", "ECS70", "CommissionDeviceSynchroniseClock", _clock_parameters),
    Transformation("7.1", "ESME", "ECS42", "EnableSupply"),
    Transformation("7.2", "ESME", "ECS43", "DisableSupply"),
    Transformation("7.3", "ESME", "ECS44", "ArmSupply"),
    Transformation("7.4", "ESME", "ECS45", "ReadSupplyStatus"),
    Transformation("11.2", "ESME", "ECS52", "ReadFirmwareVersion"),
    Transformation("3.1", "ESME", "ECS10", "DisplayMessage", _display_message_parameters),
    Transformation("2.2", "ESME", "CS01a", "TopUpDevice", _top_up_parameters),
    Transformation("4.6.1", "ESME", "ECS21a", "RetrieveImportDailyReadLog", _log_period_parameters),
    Transformation(
        "4.8.1", "ESME", "ECS22b", "ReadActiveImportProfileData", _log_period_parameters
    ),
    Transformation("4.17", "ESME", "ECS66", "RetrieveDailyConsumptionLog", _log_period_parameters),
    Transformation(
        "6.13",
        "ESME",
        "ECS35a",
        "ReadEventOrSecurityLog",
        _log_period_parameters,
        select=_esme_log_use_case,
    ),
    Transformation(
        "8.11",
        "CHF",
        "CCS01",
        "UpdateHANDeviceLog",
        _han_device_log_parameters,
        select=_han_device_log_use_case,
        acb_originated=True,
        needs_han_device_type=True,
    ),
)

TRANSFORMATIONS_BY_KEY: dict[tuple[str, str], Transformation] = {
    (t.srv, t.device_type): t for t in TRANSFORMATIONS
}


def lookup(srv: str, device_type: str) -> Transformation | None:
    return TRANSFORMATIONS_BY_KEY.get((srv, device_type))


def build_command(
    transformation: Transformation,
    *,
    originator_title: bytes,
    device_title: bytes,
    counter: int,
    acb_ka_private: ec.EllipticCurvePrivateKey,
    device_ka_public: ec.EllipticCurvePublicKey,
    body: etree._Element | None = None,
    other_info_extras: bytes = b"",
    extra_parameters: Mapping[str, object] | None = None,
) -> bytes:
    """A non-critical SRV's GBCS command, MAC'd by the ACB.

    For an ``acb_originated`` transformation ``originator_title`` and ``counter`` are the
    ACB's and ``other_info_extras`` is :func:`user_extras` (the User's EUI and DUIS counter).
    """
    if transformation.critical:
        raise GbcsError(f"{transformation.srv} is critical: it needs a Signed Pre-Command")
    payload = transformation.payload(
        originator_title=originator_title,
        device_title=device_title,
        counter=counter,
        body=body,
        extra_parameters=extra_parameters,
    )
    return build_gbcs_command(
        USE_CASES_BY_NAME[transformation.use_case_for(body)],
        originator_title=originator_title,
        device_title=device_title,
        counter=counter,
        payload=payload,
        acb_ka_private=acb_ka_private,
        device_ka_public=device_ka_public,
        other_info_extras=other_info_extras,
    )


def user_extras(user_eui: bytes, user_counter: int) -> bytes:
    """The Other Information extras of a command the ACB originates for a User: the User's
    EUI-64 and DUIS RequestID counter (8 octets each)."""
    if len(user_eui) != 8 or not 0 <= user_counter < 1 << 64:
        raise GbcsError("User extras need an EUI-64 and a 64-bit counter")
    return user_eui + user_counter.to_bytes(8, "big")


class AcbCounter:
    """The ACB's originator counters for the commands it originates (8.11 to a CHF).

    Strictly increasing, from the wall clock in nanoseconds, so that a restarted transform
    continues above the counters the CHFs have already accepted. One per transform process:
    several processes could interleave out of order (a CHF then refuses the older as a replay).
    """

    def __init__(self, clock: Callable[[], int] = time.time_ns) -> None:
        self._clock = clock
        self._last = 0
        self._lock = Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, self._clock())
            return self._last


def build_pre_command(
    transformation: Transformation,
    *,
    originator_title: bytes,
    device_title: bytes,
    counter: int,
    body: etree._Element | None = None,
) -> bytes:
    """A critical SRV's Pre-Command (CV 4), for the ``PreCommand/GBCSPayload`` response."""
    if not transformation.critical:
        raise GbcsError(f"{transformation.srv} is not critical: it has no Pre-Command")
    payload = transformation.payload(
        originator_title=originator_title, device_title=device_title, counter=counter, body=body
    )
    return critical.build_pre_command(
        USE_CASES_BY_NAME[transformation.use_case_for(body)],
        originator_title=originator_title,
        device_title=device_title,
        counter=counter,
        payload=payload,
    )


command_from_signed_pre_command = critical.command_from_signed_pre_command


class PreCommandRegister:
    """The Pre-Commands issued, by RequestID, until their Signed Pre-Command arrives.

    In memory and bounded (oldest forgotten first): enough for one transform process. Several
    transform processes need a shared store behind the same two methods.
    """

    def __init__(self, maxsize: int = 100_000) -> None:
        self.maxsize = maxsize
        self._issued: OrderedDict[str, bytes] = OrderedDict()
        self._lock = Lock()

    def put(self, request_id: str, pre_command: bytes) -> None:
        with self._lock:
            self._issued[request_id] = pre_command
            self._issued.move_to_end(request_id)
            while len(self._issued) > self.maxsize:
                self._issued.popitem(last=False)

    def get(self, request_id: str) -> bytes | None:
        with self._lock:
            return self._issued.get(request_id)

    def __len__(self) -> int:
        return len(self._issued)
