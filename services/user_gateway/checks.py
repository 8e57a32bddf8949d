"""The User Gateway's check chain, in DESIGN.md's order, each failure a ``DuisError``.

TLS identity -> XML well-formed and safe -> structure -> XML signature (SMKI) -> RequestID
(originator = the TLS identity, counter strictly increasing, persisted) -> User Role may use the SRV
(E2) -> CV valid for the URL (E13) and for the SRV (E12) -> device exists (E19), fits the SRV (E11),
role eligible for this device (E4), SMI status allows it (E5).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography import x509

from dccsim.duis import xmldsig
from dccsim.duis.catalogue import ServiceReferenceVariant, lookup
from dccsim.duis.codes import INVALID_REQUEST_ID, INVALID_SIGNATURE, MALFORMED_REQUEST, DuisError
from dccsim.duis.requestid import format_eui
from dccsim.duis.xml import ServiceRequest, parse_service_request
from dccsim.participants import Participant
from dccsim.pki.smki import eui_of
from dccsim.smi import DeviceRecord, check_eligibility

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

# Command Variants the pipeline carries end to end today (CV 1: SR -> command via the WAN).
SUPPORTED_DEVICE_CVS = frozenset({1})


@dataclass(frozen=True)
class AcceptedRequest:
    request: ServiceRequest
    srv: ServiceReferenceVariant
    participant: Participant
    device: DeviceRecord | None


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


class CheckChain:
    def __init__(
        self,
        *,
        find_certificate: Callable[[int], x509.Certificate | None],
        advance_counter: Callable[[str, int], Awaitable[None]],
        devices: DeviceCache,
    ) -> None:
        self.find_certificate = find_certificate
        self.advance_counter = advance_counter
        self.devices = devices

    async def check(
        self, body: bytes, *, web_service: WebService, participant: Participant
    ) -> AcceptedRequest:
        request = parse_service_request(body)  # well-formed, safe, DUIS-shaped (E13 otherwise)
        signer = xmldsig.verify(request.root, find_certificate=self.find_certificate)
        signer_eui = eui_of(signer)
        originator = format_eui(request.request_id.originator)
        if signer_eui is None or format_eui(signer_eui) != participant.eui:
            raise DuisError(
                INVALID_SIGNATURE, "the request is not signed with one of this User's certificates"
            )
        if originator != participant.eui:
            raise DuisError(
                INVALID_REQUEST_ID,
                f"RequestID originator {originator} is not the TLS identity's EUI "
                f"{participant.eui}",
            )
        srv = lookup(request.service_reference_variant)
        if srv is None:
            raise DuisError(
                MALFORMED_REQUEST,
                f"Service Reference Variant {request.service_reference_variant} "
                "is not served by dccsim",
            )
        if request.service_reference != srv.reference:
            raise DuisError(
                MALFORMED_REQUEST,
                f"ServiceReference {request.service_reference} does not match "
                f"variant {srv.variant}",
            )
        if request.body_name != srv.body_element:
            raise DuisError(
                MALFORMED_REQUEST,
                f"body {request.body_name} is not {srv.body_element} for {srv.variant}",
            )
        cv = request.command_variant
        if cv not in COMMAND_VARIANTS[web_service]:
            raise DuisError("E13", f"Command Variant {cv} is not accepted on {web_service.value}")
        if srv.non_device != (cv == 8) or (not srv.non_device and cv not in SUPPORTED_DEVICE_CVS):
            raise DuisError("E12", f"Command Variant {cv} is not valid for SRV {srv.variant}")
        # Counter last among the request-level checks, so a refused request does not burn it.
        device: DeviceRecord | None = None
        if not srv.non_device:
            target = format_eui(request.request_id.target)
            device = await self.devices.get(target, str(request.request_id))
            code = check_eligibility(
                srv, user_eui=participant.eui, user_roles=participant.roles, device=device
            )
            if code is not None:
                raise DuisError(
                    code, _ELIGIBILITY_REASONS[code].format(srv=srv.variant, device=target)
                )
        await self.advance_counter(originator, request.request_id.counter)
        return AcceptedRequest(request, srv, participant, device)


_ELIGIBILITY_REASONS = {
    "E2": "the User holds no User Role that may send SRV {srv}",
    "E19": "device {device} is not in the Smart Metering Inventory",
    "E11": "SRV {srv} cannot be sent to a device of this type ({device})",
    "E4": "the User is not registered in an eligible role for device {device}",
    "E5": "the SMI status of device {device} does not allow SRV {srv}",
}
