"""What every emulated GBCS device shares: routing by message code, MAC check, anti-replay.

A device model is a list of handlers::

    class Esme(GbcsDevice):
        @on(ECS17B)
        def read_import_registers(self, *, command, remote_party, **_): ...

``handle(command_bytes)`` verifies the command and calls the handler for its message code.
Security failures are refused with :class:`DeviceRefusal` (no response is sent: a GBCS device
never answers a command it cannot authenticate, it raises an alert instead); that conversion
happens in this one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypedDict, TypeVar

from cryptography.hazmat.primitives.asymmetric import ec

from dccsim.gbcs.alerts import build_alert
from dccsim.gbcs.crypto import verify_frame_signature, verify_mac
from dccsim.gbcs.dlms import AccessRequest, decode_apdu, encode_date_time, null
from dccsim.gbcs.errors import GbcsError
from dccsim.gbcs.frames import CRA_COMMAND, GeneralCiphering, decode_message
from dccsim.gbcs.usecases import (
    ACTION_OTHER_REASON,
    USE_CASES_BY_CODE,
    UseCase,
    build_access_error_response,
    build_signed_access_response,
)

# GBCS alert codes a device raises instead of answering
ALERT_INTEGRITY_CHECK_FAILED = 0x8F1E  # "Integrity check of content or format of command failed"
ALERT_SOURCE_NOT_AUTHORISED = 0x8F30  # "Source Does not have Authority for Command"
ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE = 0x8F3D
ALERT_FAILED_AUTHENTICATION_OTHER = 0x8F53  # "... not covered by other codes": replay


class DeviceRefusal(Exception):
    """The device discarded a command without responding; ``alert_code`` is the GBCS alert it
    raises in its place (the gateway may deliver it as a Device Alert)."""

    def __init__(self, alert_code: int, reason: str) -> None:
        super().__init__(f"{reason} (alert {alert_code:#06x})")
        self.alert_code = alert_code
        self.reason = reason


class DeviceFault(Exception):
    """A handler's way to answer with a DLMS failure result (e.g. 1 hardware-fault)."""

    def __init__(self, result: int) -> None:
        super().__init__(f"device fault, result {result}")
        self.result = result


@dataclass(frozen=True)
class RaisedAlert:
    """An alert the device raised by itself (e.g. the outcome of a future-dated command it
    held): its GBCS alert code, the whole alert frame and the remote party it is for."""

    alert_code: int
    frame: bytes
    recipient: bytes


@dataclass(frozen=True)
class RemoteParty:
    """A remote party the device trusts: its EUI-64, Key Agreement public key and, for the
    critical commands it may sign, its Digital Signing public key."""

    eui: bytes
    ka_public_key: ec.EllipticCurvePublicKey
    ds_public_key: ec.EllipticCurvePublicKey | None = None


class DeviceKeys(TypedDict):
    """What every device model is built with: :class:`GbcsDevice`'s keyword arguments, which a
    model's constructor takes as ``**device: Unpack[DeviceKeys]`` and passes on unchanged."""

    eui: bytes
    ka_private_key: ec.EllipticCurvePrivateKey
    ds_private_key: ec.EllipticCurvePrivateKey
    acb_ka_public: ec.EllipticCurvePublicKey
    remote_parties: Mapping[bytes, RemoteParty]
    clock: Callable[[], datetime]


# a held future-dated command's originator, counter and use case (for its outcome alert)
FutureDated = tuple[bytes, int, str]

Handler = Callable[..., bytes]
_H = TypeVar("_H", bound=Handler)
_ROUTE_ATTRIBUTE = "_gbcs_message_codes"


def on(*use_cases: UseCase) -> Callable[[_H], _H]:
    """Register the decorated method as the handler for these use cases' message codes (one
    handler may serve several use cases that differ only in the object they read).

    Handlers take keyword-only arguments (``command``, ``request``, ``remote_party``, ``now``)
    and must accept and ignore others (``**_``); they return the whole response frame.
    """
    if not use_cases:
        raise TypeError("@on needs at least one use case")

    def mark(handler: _H) -> _H:
        setattr(handler, _ROUTE_ATTRIBUTE, tuple(u.message_code for u in use_cases))
        return handler

    return mark


class GbcsDevice:
    """Base of the device models: routes verified commands to ``@on`` handlers."""

    routes: ClassVar[dict[int, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        routes: dict[int, str] = {}
        for klass in reversed(cls.__mro__):  # every base's handlers, also with several bases
            for name, member in vars(klass).items():
                for code in getattr(member, _ROUTE_ATTRIBUTE, ()):
                    routes[code] = name
        cls.routes = routes

    def __init__(
        self,
        *,
        eui: bytes,
        ka_private_key: ec.EllipticCurvePrivateKey,
        ds_private_key: ec.EllipticCurvePrivateKey,
        acb_ka_public: ec.EllipticCurvePublicKey,
        remote_parties: Mapping[bytes, RemoteParty],
        clock: Callable[[], datetime],
    ) -> None:
        if len(eui) != 8:
            raise ValueError("a device EUI-64 is 8 bytes")
        self.eui = eui
        self.ka_private_key = ka_private_key
        self.ds_private_key = ds_private_key
        self.acb_ka_public = acb_ka_public
        self.remote_parties = dict(remote_parties)
        self.clock = clock
        self.last_counters: dict[bytes, int] = {}  # originator EUI -> last accepted counter
        self.refusals = 0  # commands discarded or answered with a failure result
        # message code -> DLMS result for the next such command (a scripted one-shot fault)
        self.scripted_faults: dict[int, int] = {}
        self.raised_alerts: list[RaisedAlert] = []  # raised, not yet taken by the host
        self.alert_counter = 0  # the originator counter of the last alert raised
        # who sent each held future-dated command, by what it changes ("activation", ...)
        self.future_dated: dict[str, FutureDated] = {}

    def device_time(self, now: datetime) -> datetime:
        """The device's clock when the injected clock reads ``now`` (a model whose clock the
        DCC can set keeps an offset and overrides this)."""
        return now

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
        """Raise an alert of the device's own at ``now`` (e.g. a future-dated outcome):
        General Signing signed with the device's DS key, to ``recipient``, as the RTDS outcome
        alerts are. A model that logs what it raises extends this."""
        frame = build_alert(
            device_title=self.eui,
            recipient_title=recipient,
            counter=counter,
            message_code=message_code,
            payload=payload,
            device_ds_private=self.ds_private_key,
        )
        self.raised_alerts.append(RaisedAlert(alert_code, frame, recipient))

    def future_dated_state(self) -> list[list[Any]]:
        """``future_dated`` as msgpack-able rows [what, originator, counter, use case]."""
        return [[kind, *held] for kind, held in sorted(self.future_dated.items())]

    def restore_future_dated_state(self, rows: list[list[Any]]) -> None:
        self.future_dated = {
            str(kind): (bytes(originator), int(counter), str(use_case))
            for kind, originator, counter, use_case in rows
        }

    def next_alert_counter(self, now: datetime) -> int:
        """A new alert's originator counter: strictly above the last one and never below the
        milliseconds since the epoch of ``now``, so it keeps rising across power cycles."""
        self.alert_counter = max(self.alert_counter + 1, int(now.timestamp() * 1000))
        return self.alert_counter

    def take_alerts(self) -> list[RaisedAlert]:
        """The alerts raised since the last call, oldest first (the host sends them)."""
        alerts, self.raised_alerts = self.raised_alerts, []
        return alerts

    def next_due(self) -> datetime | None:
        """When (on the injected clock) this device next has held work to carry out
        (``run_due``); None when it holds none."""
        return None

    def run_due(self, now: datetime) -> None:
        """Carry out the held work due at ``now`` (on the injected clock); none by default."""

    def nonvolatile_state(self) -> dict[str, Any]:
        """What this model keeps across a power cycle besides its anti-replay counters, as
        msgpack-able values (a host persists it); none by default."""
        return {}

    def restore_nonvolatile_state(self, state: Mapping[str, Any]) -> None:
        """Undo ``nonvolatile_state`` on a freshly built model."""

    def script_fault(self, use_case: UseCase, result: int) -> None:
        """Answer the next ``use_case`` command with DLMS failure ``result`` (once)."""
        self.scripted_faults[use_case.message_code] = result

    def _refuse(self, alert_code: int, reason: str) -> DeviceRefusal:
        self.refusals += 1
        return DeviceRefusal(alert_code, reason)

    def handle(self, command_bytes: bytes) -> bytes:
        """Process one GBCS command and return the response frame.

        Raises :class:`DeviceRefusal` when the command is malformed, not for this device, fails
        its MAC, comes from an unknown remote party or replays a counter. A verified command
        whose use case the device does not support, or whose handler faults, gets a DLMS Access
        Response with a failure result (other-reason, or the fault's result).
        """
        try:
            message = decode_message(command_bytes)
        except GbcsError as exc:
            raise self._refuse(ALERT_INTEGRITY_CHECK_FAILED, exc.reason) from exc
        if not isinstance(message, GeneralCiphering):
            raise self._refuse(ALERT_INTEGRITY_CHECK_FAILED, "command is not MAC'd")
        header = message.general_signing
        if header.cra_flag != CRA_COMMAND or header.recipient_title != self.eui:
            raise self._refuse(ALERT_INTEGRITY_CHECK_FAILED, "not a command for this device")
        if not verify_mac(
            message, private_key=self.ka_private_key, peer_public_key=self.acb_ka_public
        ):
            raise self._refuse(ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE, "bad command MAC")
        remote_party = self.remote_parties.get(header.originator_title)
        if remote_party is None:
            raise self._refuse(ALERT_SOURCE_NOT_AUTHORISED, "unknown originator")
        last = self.last_counters.get(header.originator_title)
        if last is not None and header.originator_counter <= last:
            raise self._refuse(ALERT_FAILED_AUTHENTICATION_OTHER, "replayed originator counter")
        use_case = USE_CASES_BY_CODE.get(header.message_code)
        if use_case is not None and use_case.critical:
            # a critical command must carry its originator's signature (the Signed Pre-Command)
            if remote_party.ds_public_key is None or not verify_frame_signature(
                header, remote_party.ds_public_key
            ):
                raise self._refuse(
                    ALERT_TRUSTED_SOURCE_AUTHENTICATION_FAILURE, "bad critical command signature"
                )
        self.last_counters[header.originator_title] = header.originator_counter

        now = self.clock()
        try:
            request = decode_apdu(header.payload) if header.payload[:1] == b"\xd9" else None
        except GbcsError as exc:
            raise self._refuse(ALERT_INTEGRITY_CHECK_FAILED, exc.reason) from exc
        handler_name = self.routes.get(header.message_code)
        if handler_name is None:
            return self.unsupported(message, request, now, remote_party)
        scripted = self.scripted_faults.pop(header.message_code, None)
        if scripted is not None:
            return self._error_response(message, scripted, now, remote_party)
        handler: Handler = getattr(self, handler_name)
        try:
            return handler(command=message, request=request, remote_party=remote_party, now=now)
        except DeviceFault as fault:
            return self._error_response(message, fault.result, now, remote_party)
        except GbcsError as exc:  # authentic, but not the layout this use case expects
            raise self._refuse(ALERT_INTEGRITY_CHECK_FAILED, exc.reason) from exc

    def unsupported(
        self,
        command: GeneralCiphering,
        request: object,
        now: datetime,
        remote_party: RemoteParty,
    ) -> bytes:
        """The answer to an authenticated command whose use case this model has no handler for:
        a DLMS other-reason result; a model speaking another payload (GBZ) overrides it."""
        if not isinstance(request, AccessRequest):
            raise self._refuse(ALERT_INTEGRITY_CHECK_FAILED, "unsupported use case")
        return self._error_response(command, ACTION_OTHER_REASON, now, remote_party)

    def _error_response(
        self, command: GeneralCiphering, result: int, now: datetime, remote_party: RemoteParty
    ) -> bytes:
        use_case = USE_CASES_BY_CODE.get(command.general_signing.message_code)
        try:
            if use_case is not None and use_case.critical:
                request = decode_apdu(command.general_signing.payload)
                assert isinstance(request, AccessRequest)
                response = build_signed_access_response(
                    command=command,
                    data=tuple(null() for _ in request.specs),
                    results=tuple(result for _ in request.specs),
                    device_ds_private=self.ds_private_key,
                )
            else:
                response = build_access_error_response(
                    command=command,
                    result=result,
                    date_time=encode_date_time(now),
                    device_ka_private=self.ka_private_key,
                    recipient_ka_public=remote_party.ka_public_key,
                )
        except GbcsError as exc:
            raise self._refuse(ALERT_INTEGRITY_CHECK_FAILED, exc.reason) from exc
        self.refusals += 1
        return response
