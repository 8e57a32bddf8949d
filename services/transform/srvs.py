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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from threading import Lock

from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from dccsim.gbcs import critical
from dccsim.gbcs.commands import CommandContext, command_payload
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.usecases import USE_CASES_BY_NAME
from dccsim.gbcs.usecases import build_command as build_gbcs_command

SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"

BodyParameters = Callable[["etree._Element | None"], dict[str, object]]


def _no_parameters(_body: etree._Element | None) -> dict[str, object]:
    return {}


def _child_text(body: etree._Element | None, local: str) -> str:
    element = None if body is None else body.find(f"{{{SR_NS}}}{local}")
    if element is None or not (element.text or "").strip():
        raise GbcsError(f"DUIS body has no {local}")
    return (element.text or "").strip()


def _clock_parameters(body: etree._Element | None) -> dict[str, object]:
    """SynchroniseClock / CommissionDeviceSynchroniseClock: CurrentDateTime, TolerancePeriod."""
    text = _child_text(body, "CurrentDateTime")
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        tolerance = int(_child_text(body, "TolerancePeriod"))
    except ValueError as exc:
        raise GbcsError(f"bad SynchroniseClock value: {exc}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)  # xs:dateTime without a zone: DUIS means UTC
    return {"current_date_time": when, "tolerance_period": tolerance}


@dataclass(frozen=True)
class Transformation:
    """How one (SRV, device type) becomes GBCS: its use case and how to read its DUIS body."""

    srv: str
    device_type: str
    use_case: str
    body_element: str
    parameters: BodyParameters = field(default=_no_parameters)

    @property
    def critical(self) -> bool:
        return USE_CASES_BY_NAME[self.use_case].critical

    def payload(
        self,
        *,
        originator_title: bytes,
        device_title: bytes,
        counter: int,
        body: etree._Element | None = None,
    ) -> bytes:
        context = CommandContext(counter, originator_title, device_title, self.parameters(body))
        return command_payload(self.use_case, context)


TRANSFORMATIONS: tuple[Transformation, ...] = (
    Transformation("4.1.1", "ESME", "ECS17b", "ReadInstantaneousImportRegisters"),
    Transformation("6.11", "ESME", "ECS70", "SynchroniseClock", _clock_parameters),
    Transformation("8.1.1", "ESME", "ECS70", "CommissionDeviceSynchroniseClock", _clock_parameters),
    Transformation("7.1", "ESME", "ECS42", "EnableSupply"),
    Transformation("7.2", "ESME", "ECS43", "DisableSupply"),
    Transformation("7.3", "ESME", "ECS44", "ArmSupply"),
    Transformation("7.4", "ESME", "ECS45", "ReadSupplyStatus"),
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
) -> bytes:
    """A non-critical SRV's GBCS command, MAC'd by the ACB."""
    if transformation.critical:
        raise GbcsError(f"{transformation.srv} is critical: it needs a Signed Pre-Command")
    payload = transformation.payload(
        originator_title=originator_title, device_title=device_title, counter=counter, body=body
    )
    return build_gbcs_command(
        USE_CASES_BY_NAME[transformation.use_case],
        originator_title=originator_title,
        device_title=device_title,
        counter=counter,
        payload=payload,
        acb_ka_private=acb_ka_private,
        device_ka_public=device_ka_public,
    )


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
        USE_CASES_BY_NAME[transformation.use_case],
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
