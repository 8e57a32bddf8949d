"""The User Gateway's check chain, in DESIGN.md's order, each failure a ``DuisError``.

XML well-formed and safe -> schema (dccsim's structure; the DUIS XSD too when configured) -> XML
signature (SMKI; skipped for a User whose validation is switched off) -> RequestID originator =
the TLS identity (E1) -> SRV in the catalogue (E13) -> User Role may use the SRV (E2) -> the
informal-testing rules (E1/E2/E3) -> CV valid for the URL (E13) and for the SRV (E12), the body
the CV needs (E13), local delivery allowed for the SRV (E17) -> the ExecutionDateTime of a
future-dated request (see :func:`execution_date_time`) -> the DCC offers it (E2) -> device exists
(E19), fits the SRV (E11), role eligible for this device (E4), SMI status allows it (E5) ->
RequestID counter strictly increasing, persisted (E1), last so a refused request does not burn
it; a CV 5/6/7 reuses its CV 4's RequestID.

The chain's answer says where the request goes: to the bus for a Device (``I99``), to transform
for a Pre-Command (CV 4) or a command for local delivery (CV 2, 6; CV 3, 7 both that and the
bus), or to the inventory (CV 8); and, for a DSP-held future-dated request, when.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography import x509
from lxml import etree

from dccsim.duis import xmldsig
from dccsim.duis.catalogue import FutureDating, ServiceReferenceVariant, lookup
from dccsim.duis.codes import (
    INVALID_REQUEST_ID,
    INVALID_SIGNATURE,
    MALFORMED_REQUEST,
    SERVICE_NOT_OFFERED,
    DuisError,
)
from dccsim.duis.requestid import format_eui
from dccsim.duis.xml import ServiceRequest, check_schema, parse_service_request
from dccsim.participants import Participant
from dccsim.pki.smki import eui_of
from dccsim.smi import DeviceRecord, check_eligibility
from services.testing.rules import TestingRules, decide

log = logging.getLogger(__name__)


class WebService(StrEnum):
    SEND_COMMAND = "serviceS"
    DCC_ONLY = "serviceD"
    TRANSFORM = "serviceT"


COMMAND_VARIANTS: dict[WebService, frozenset[int]] = {
    WebService.SEND_COMMAND: frozenset({1, 3, 5, 7}),
    WebService.DCC_ONLY: frozenset({2, 6, 8}),
    WebService.TRANSFORM: frozenset({4}),
}

NON_CRITICAL_CVS = frozenset({1, 2, 3})
CRITICAL_CVS = frozenset({4, 5, 6, 7})
SIGNED_PRE_COMMAND_CVS = frozenset({5, 6, 7})
LOCAL_ONLY_CVS = frozenset({2, 6})  # the command for local delivery, nothing over the WAN
LOCAL_AND_WAN_CVS = frozenset({3, 7})  # the command for local delivery and over the WAN
LOCAL_CVS = LOCAL_ONLY_CVS | LOCAL_AND_WAN_CVS
LOCAL_COMMAND_NOT_ALLOWED = "E17"

INVALID_EXECUTION_DATE_TIME = MALFORMED_REQUEST
"""An ExecutionDateTime that is not in the future. The DUIS 5.4 XSD's ResponseCode enumeration
names no general code for it (its E6-E10, which older DUIS versions used for validation failures,
are gone) and dccsim does not guess at an SR-specific one: the request fails validation, which
dccsim answers as ``MALFORMED_REQUEST`` (dccsim/duis/codes.py)."""

_SR_NS = "http://www.dccinterface.co.uk/ServiceUserGateway"
_EXECUTION_DATE_TIME = f"{{{_SR_NS}}}ExecutionDateTime"


class Route(StrEnum):
    """Where an accepted request goes."""

    DEVICE = "device"  # published as sr.accepted, answered I99 (CV 1, 5)
    PRE_COMMAND = "pre-command"  # transform builds the Pre-Command, answered I0 (CV 4)
    LOCAL = "local"  # transform builds the command, answered I0 with LocalCommand (CV 2, 6)
    LOCAL_AND_DEVICE = "local+device"  # LocalCommand in the I99, and published (CV 3, 7)
    NON_DEVICE = "non-device"  # the inventory answers, I0 (CV 8)


def execution_date_time(body: etree._Element) -> dt.datetime | None:
    """The ``ExecutionDateTime`` of a Service Request body (DUIS puts it first, in every
    future-datable request type), as an aware UTC datetime; None when the request is on demand.
    An xs:dateTime without a zone is taken as UTC. DuisError (MALFORMED_REQUEST) if unreadable."""
    element = body.find(_EXECUTION_DATE_TIME)
    if element is None:
        return None
    text = (element.text or "").strip()
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        reason = f"ExecutionDateTime {text!r} is no xs:dateTime"
        raise DuisError(MALFORMED_REQUEST, reason) from None
    return (when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


@dataclass(frozen=True)
class AcceptedRequest:
    request: ServiceRequest
    srv: ServiceReferenceVariant
    participant: Participant
    device: DeviceRecord | None
    route: Route = Route.DEVICE
    # a DSP-held future-dated request: when the DCC is to send it (None: on demand)
    execute_at: dt.datetime | None = None

    @property
    def body_xml(self) -> bytes | None:
        """The Service Request body element for transform, or None when it carries nothing
        (an empty element such as ``ReadInstantaneousImportRegisters``: nothing to parse)."""
        body = self.request.body
        if len(body) == 0 and not (body.text or "").strip():
            return None
        return etree.tostring(body)


class DeviceCache:
    """Device records from the inventory, cached; entries dropped on ``inventory.changed``."""

    def __init__(
        self, fetch: Callable[[str, str], Awaitable[dict[str, Any] | None]], ttl_s: float = 60.0
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl_s
        self._entries: dict[str, tuple[float, DeviceRecord | None]] = {}
        self._inflight: dict[str, asyncio.Future[DeviceRecord | None]] = {}

    def invalidate(self, eui: str) -> None:
        self._entries.pop(eui.upper(), None)

    async def get(self, eui: str, request_id: str) -> DeviceRecord | None:
        key = eui.upper()
        hit = self._entries.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        pending = self._inflight.get(key)
        if pending is not None:  # one lookup per device at a time, however many requests wait
            return await asyncio.shield(pending)
        future: asyncio.Future[DeviceRecord | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            raw = await self._fetch(key, request_id)
            record = DeviceRecord.from_wire(raw) if raw else None
            self._entries[key] = (now, record)
            future.set_result(record)
            return record
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        finally:
            self._inflight.pop(key, None)


class IssuedPreCommands:
    """RequestIDs answered with a Pre-Command (CV 4) whose Signed Pre-Command (CV 5/6/7) has
    not come yet: that one request may reuse its RequestID, once. In memory and bounded, like
    transform's register of the Pre-Commands themselves (a restart forgets both)."""

    def __init__(self, maxsize: int = 100_000) -> None:
        self.maxsize = maxsize
        self._issued: OrderedDict[str, str] = OrderedDict()

    def add(self, request_id: str, variant: str) -> None:
        self._issued[request_id] = variant
        while len(self._issued) > self.maxsize:
            self._issued.popitem(last=False)

    def take(self, request_id: str, variant: str) -> bool:
        """True, and forgotten, when ``request_id`` was issued a Pre-Command for ``variant``."""
        if self._issued.get(request_id) != variant:
            return False
        del self._issued[request_id]
        return True

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._issued

    def __len__(self) -> int:
        return len(self._issued)


class TestingRulesGate:
    """The informal-testing rules on the hot path: the rules cached (re-read at most once a
    second), each participant's accepted count for the current period kept in memory."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        current: Callable[[], TestingRules],
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        recheck_s: float = 1.0,
    ) -> None:
        self._current = current
        self._clock = clock
        self._recheck_s = recheck_s
        self._rules: TestingRules | None = None
        self._read_at = 0.0
        self._counts: dict[str, int] = {}
        self._period = ""

    def rules(self) -> TestingRules:
        now = time.monotonic()
        if self._rules is None or now - self._read_at >= self._recheck_s:
            self._rules, self._read_at = self._current(), now
        return self._rules

    def _period_key(self, rules: TestingRules, now: dt.datetime) -> str:
        return now.date().isoformat() if rules.limit_period == "day" else "total"

    def check(self, user_id: str, srv: str) -> None:
        """Raise the rules' DuisError when pre-UIT does not take this request now."""
        rules = self.rules()
        now = self._clock()
        period = self._period_key(rules, now)
        if period != self._period:
            self._period, self._counts = period, {}
        refusal = decide(rules, user_id, srv, now, self._counts.get(user_id, 0))
        if refusal is not None:
            raise DuisError(*refusal)

    def count(self, user_id: str) -> None:
        """One more accepted request for ``user_id`` in this period."""
        self._counts[user_id] = self._counts.get(user_id, 0) + 1


class CheckChain:
    def __init__(
        self,
        *,
        find_certificate: Callable[[int], x509.Certificate | None],
        advance_counter: Callable[[str, int], Awaitable[None]],
        devices: DeviceCache,
        transformable: Collection[tuple[str, str]] = frozenset({("4.1.1", "ESME")}),
        non_device_srvs: Collection[str] = frozenset(),
        rules: TestingRulesGate | None = None,
        schema: etree.XMLSchema | None = None,
        signature_off: Collection[str] = frozenset(),
        issued: IssuedPreCommands | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        """``transformable``: the (SRV, device type) pairs transform carries; ``non_device_srvs``
        the non-device SRVs answered here; ``signature_off`` User IDs whose XML signatures are
        not validated; ``schema`` the official DUIS XSD, if configured; ``clock`` the time a
        future-dated request's ExecutionDateTime must be after."""
        self.find_certificate = find_certificate
        self.advance_counter = advance_counter
        self.devices = devices
        self.transformable = frozenset(transformable)
        self.transformable_srvs = frozenset(srv for srv, _ in self.transformable)
        self.non_device_srvs = frozenset(non_device_srvs)
        self.rules = rules
        self.schema = schema
        self.signature_off = frozenset(signature_off)
        self.issued = issued if issued is not None else IssuedPreCommands()
        self.clock = clock

    async def check(
        self, body: bytes, *, web_service: WebService, participant: Participant
    ) -> AcceptedRequest:
        request = parse_service_request(body)  # well-formed, safe, DUIS-shaped (E13 otherwise)
        if self.schema is not None:
            check_schema(self.schema, request.root)
        if participant.user_id not in self.signature_off:
            self._check_signature(request, participant)
        originator = format_eui(request.request_id.originator)
        if originator != participant.eui:
            raise DuisError(
                INVALID_REQUEST_ID,
                f"RequestID originator {originator} is not the TLS identity's EUI "
                f"{participant.eui}",
            )
        srv = self._srv(request)
        if not (srv.roles & participant.roles):
            raise DuisError("E2", f"the User holds no User Role that may send SRV {srv.variant}")
        if self.rules is not None:
            self.rules.check(participant.user_id, srv.variant)
        cv = self._command_variant(request, srv, web_service)
        route = _ROUTES.get(cv, Route.DEVICE)
        execute_at = self._execute_at(request, srv, cv)
        device: DeviceRecord | None = None
        if srv.non_device:
            if srv.variant not in self.non_device_srvs:
                raise DuisError(SERVICE_NOT_OFFERED, f"SRV {srv.variant} is not offered here")
        else:
            if srv.variant not in self.transformable_srvs:
                raise DuisError(SERVICE_NOT_OFFERED, f"SRV {srv.variant} is not offered here")
            device = await self._eligible_device(request, srv, participant)
        rid = str(request.request_id)
        if cv in SIGNED_PRE_COMMAND_CVS and self.issued.take(rid, srv.variant):
            # The second half of a critical request: its CV 4 advanced the counter and counted.
            return AcceptedRequest(request, srv, participant, device, route, execute_at)
        # Counter last among the request-level checks, so a refused request does not burn it.
        await self.advance_counter(originator, request.request_id.counter)
        if self.rules is not None:
            self.rules.count(participant.user_id)
        return AcceptedRequest(request, srv, participant, device, route, execute_at)

    def _execute_at(
        self, request: ServiceRequest, srv: ServiceReferenceVariant, cv: int
    ) -> dt.datetime | None:
        """When a DSP-held future-dated request is to be sent; None for an on-demand one.

        The DSP holds the request (pattern ``dsp``, ``dsp+device``) and sends it at its time, so
        it has no command to hand over for local delivery now (E17), and a date-time not in the
        future is :data:`INVALID_EXECUTION_DATE_TIME`. For the Device-held pattern the request
        goes on at once: transform puts the execution date-time in the GBCS command and the
        device holds it (and later raises the future-dated outcome alert)."""
        if cv in SIGNED_PRE_COMMAND_CVS:
            return None  # the ExecutionDateTime, if any, was in the CV 4 body
        when = execution_date_time(request.body)
        if when is None:
            return None
        if not srv.future_datable:
            raise DuisError(MALFORMED_REQUEST, f"SRV {srv.variant} cannot be future-dated")
        if srv.future_dating is FutureDating.DEVICE:
            return None  # the Device holds it: the command carries the date-time
        if cv in LOCAL_CVS:
            raise DuisError(
                LOCAL_COMMAND_NOT_ALLOWED,
                f"a future-dated SRV {srv.variant} is held by the DCC: no command to deliver "
                "locally",
            )
        now = self.clock()
        if when <= now:
            raise DuisError(
                INVALID_EXECUTION_DATE_TIME,
                f"ExecutionDateTime {when.isoformat()} is not in the future",
            )
        return when

    def _check_signature(self, request: ServiceRequest, participant: Participant) -> None:
        signer = xmldsig.verify(request.root, find_certificate=self.find_certificate)
        signer_eui = eui_of(signer)
        if signer_eui is None or format_eui(signer_eui) != participant.eui:
            raise DuisError(
                INVALID_SIGNATURE, "the request is not signed with one of this User's certificates"
            )

    @staticmethod
    def _srv(request: ServiceRequest) -> ServiceReferenceVariant:
        srv = lookup(request.service_reference_variant)
        if srv is None:
            raise DuisError(
                MALFORMED_REQUEST,
                f"{request.service_reference_variant} is not a DUIS Service Reference Variant",
            )
        if request.service_reference != srv.reference:
            raise DuisError(
                MALFORMED_REQUEST,
                f"ServiceReference {request.service_reference} does not match "
                f"variant {srv.variant}",
            )
        return srv

    @staticmethod
    def _command_variant(
        request: ServiceRequest, srv: ServiceReferenceVariant, web_service: WebService
    ) -> int:
        cv = request.command_variant
        if cv not in COMMAND_VARIANTS[web_service]:
            raise DuisError("E13", f"Command Variant {cv} is not accepted on {web_service.value}")
        if srv.non_device:
            valid = cv == 8
        else:
            valid = cv in (CRITICAL_CVS if srv.critical else NON_CRITICAL_CVS)
        if not valid:
            raise DuisError("E12", f"Command Variant {cv} is not valid for SRV {srv.variant}")
        wanted = "SignedPreCommand" if cv in SIGNED_PRE_COMMAND_CVS else srv.body_element
        if request.body_name != wanted:
            raise DuisError(
                MALFORMED_REQUEST,
                f"body {request.body_name} is not {wanted} for {srv.variant} with CV {cv}",
            )
        if cv in LOCAL_CVS and not srv.local_delivery:
            raise DuisError(
                LOCAL_COMMAND_NOT_ALLOWED,
                f"SRV {srv.variant} is not available as a command for local delivery",
            )
        return cv

    async def _eligible_device(
        self, request: ServiceRequest, srv: ServiceReferenceVariant, participant: Participant
    ) -> DeviceRecord:
        target = format_eui(request.request_id.target)
        device = await self.devices.get(target, str(request.request_id))
        code = check_eligibility(
            srv, user_eui=participant.eui, user_roles=participant.roles, device=device
        )
        if code is not None:
            raise DuisError(code, _ELIGIBILITY_REASONS[code].format(srv=srv.variant, device=target))
        assert device is not None
        if (srv.variant, device.device_type.value) not in self.transformable:
            raise DuisError(
                SERVICE_NOT_OFFERED,
                f"SRV {srv.variant} to a {device.device_type.value} is not offered here",
            )
        return device


_ROUTES: dict[int, Route] = {
    2: Route.LOCAL,
    3: Route.LOCAL_AND_DEVICE,
    4: Route.PRE_COMMAND,
    6: Route.LOCAL,
    7: Route.LOCAL_AND_DEVICE,
    8: Route.NON_DEVICE,
}


_ELIGIBILITY_REASONS = {
    "E2": "the User holds no User Role that may send SRV {srv}",
    "E19": "device {device} is not in the Smart Metering Inventory",
    "E11": "SRV {srv} cannot be sent to a device of this type ({device})",
    "E4": "the User is not registered in an eligible role for device {device}",
    "E5": "the SMI status of device {device} does not allow SRV {srv}",
}
