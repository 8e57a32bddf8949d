"""Estate control for a participant's own devices, through the SM WAN gateway's control API.

The gateway emulator (``gateway/control.py``) writes its control API's URL to
``$DCCSIM_HOME/gateway-control.json``; this module reads it on every call (the gateway may have
restarted on another port) and speaks HTTP to it, as a DCC reaches a CSP network only over its
interfaces; services never import the gateway.

Authorisation: a participant may touch a device only when the device is registered to it in
some User Role. The Smart Metering Inventory's registration data answers that (RPC
``device.lookup``, whose record carries ``registrations`` role -> User EUI) when a lookup is
given and the inventory answers; otherwise the estate file (:func:`dccsim.estate.load`) does.
A premises (by id, or by the EUI-64 of any of its devices) is the participant's when its
Communications Hub is. Network-wide changes (regions, network reset) are DCC's alone.

Every request body is checked here before it is forwarded, so a participant can only ask for
what the service offers: offline/unreachable/silent, a delay, a forced ``E20``/``E21`` or a
DLMS failure result, an alert, an outage, a reset.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from dccsim import estate, participants

log = logging.getLogger(__name__)

# Looks a device up in the inventory: its record's wire form, None when it has no such device.
# Raises when the inventory cannot answer.
DeviceLookup = Callable[[str], Awaitable[dict[str, Any] | None]]

FORCED_CODES = ("E20", "E21")  # what a CSP answers for an unreachable device or a timeout
OFFLINE_MODES = ("unreachable", "silent")
MAX_DELAY_S = 300.0  # beyond the WAN deadline already; more only wedges the participant's tests
MAX_OUTAGE_S = 86_400.0


class EstateControlError(Exception):
    """A refused or failed estate control request, with the HTTP status to answer with."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def control_file(home: Path) -> Path:
    """Where the running gateway writes its control API's URL (``gateway/server.py``)."""
    return home / "gateway-control.json"


def normalise_eui(text: str) -> str:
    """An EUI-64 in DUIS form (upper case, '-' separated); EstateControlError if it is not one."""
    raw = text.strip().upper().replace("-", "").replace(":", "")
    if len(raw) != 16 or any(c not in "0123456789ABCDEF" for c in raw):
        raise EstateControlError(f"{text!r} is not an EUI-64", 404)
    return "-".join(raw[i : i + 2] for i in range(0, 16, 2))


# -- request bodies ---------------------------------------------------------------------


def device_conditions(body: dict[str, Any]) -> dict[str, Any]:
    """The gateway ``PUT /devices/{eui}`` body for a participant's request (any subset of
    ``offline`` null|false|"unreachable"|"silent", ``delay_s`` 0..300, ``error``
    null|{"code": "E20"|"E21"}|{"dlms_result": 1..255}, ``times`` >= 0)."""
    out: dict[str, Any] = {}
    if "offline" in body:
        offline = body["offline"]
        if offline in (None, False, "", "none"):
            out["offline"] = None
        elif offline is True or offline in OFFLINE_MODES:
            out["offline"] = "unreachable" if offline is True else offline
        else:
            raise EstateControlError(f"offline must be null, {' or '.join(OFFLINE_MODES)}")
    if "delay_s" in body:
        try:
            delay = float(body["delay_s"])
        except (TypeError, ValueError) as exc:
            raise EstateControlError("delay_s must be a number of seconds") from exc
        if not 0.0 <= delay <= MAX_DELAY_S:
            raise EstateControlError(f"delay_s must be 0 to {MAX_DELAY_S:g} seconds")
        out["delay_s"] = delay
    if "error" in body:
        out["error"] = _forced_error(body["error"])
    if "times" in body:
        try:
            times = int(body["times"])
        except (TypeError, ValueError) as exc:
            raise EstateControlError("times must be a whole number") from exc
        if times < 0:
            raise EstateControlError("times must be 0 (until cleared) or more")
        out["times"] = times
    if not out:
        raise EstateControlError("give at least one of offline, delay_s, error, times")
    return out


def _forced_error(error: Any) -> dict[str, Any] | None:
    if error is None:
        return None
    if not isinstance(error, dict) or len(error) != 1:
        raise EstateControlError('error must be null, {"code": "E20"|"E21"} or {"dlms_result": N}')
    if "code" in error:
        code = str(error["code"]).upper()
        if code not in FORCED_CODES:
            raise EstateControlError(f"error code must be {' or '.join(FORCED_CODES)}")
        return {"code": code}
    if "dlms_result" in error:
        try:
            result = int(error["dlms_result"])
        except (TypeError, ValueError) as exc:
            raise EstateControlError("dlms_result must be a whole number") from exc
        if not 1 <= result <= 255:
            raise EstateControlError("dlms_result must be a DLMS failure result, 1 to 255")
        return {"dlms_result": result}
    raise EstateControlError('error must be null, {"code": "E20"|"E21"} or {"dlms_result": N}')


def alert_code(value: Any) -> str:
    """A 2-byte alert code, as the gateway takes it (``0x8F3E``)."""
    try:
        code = int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError) as exc:
        raise EstateControlError("alert_code must be a number or hex such as 0x8F3E") from exc
    if not 0 <= code <= 0xFFFF:
        raise EstateControlError("alert_code is 2 bytes")
    return f"{code:#06x}"


def outage_duration(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        duration = float(value)
    except (TypeError, ValueError) as exc:
        raise EstateControlError("duration_s must be a number of seconds") from exc
    if not 0.0 < duration <= MAX_OUTAGE_S:
        raise EstateControlError(f"duration_s must be more than 0 and at most {MAX_OUTAGE_S:g}")
    return duration


# -- the gateway's control API ----------------------------------------------------------


class GatewayControl:
    """HTTP client of the SM WAN gateway's control API."""

    def __init__(self, home: Path, *, url: str | None = None, timeout_s: float = 10.0) -> None:
        self.home = home
        self._url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def base_url(self) -> str:
        if self._url:
            return self._url.rstrip("/")
        path = control_file(self.home)
        try:
            url = str(json.loads(path.read_text())["url"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EstateControlError(
                f"the SM WAN gateway is not running (no control URL in {path})", 503
            ) from exc
        return url.rstrip("/")

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """``method path`` on the gateway; its JSON answer, or EstateControlError with the
        gateway's status and reason."""
        url = self.base_url() + path
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.request(method, url, json=body) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    status = resp.status if resp.status in (400, 404, 409) else 502
                    raise EstateControlError(f"the gateway refused: {text.strip()}", status)
                return json.loads(text) if text else {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EstateControlError(
                f"the SM WAN gateway's control API at {url}: {exc}", 503
            ) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


# -- authorisation ----------------------------------------------------------------------


@dataclass(frozen=True)
class OwnedDevice:
    eui: str
    premises: estate.Premises
    device_type: str


class EstateControl:
    """What a participant may do to its own part of the test estate."""

    def __init__(
        self, home: Path, gateway: GatewayControl, *, lookup: DeviceLookup | None = None
    ) -> None:
        self.home = home
        self.gateway = gateway
        self.lookup = lookup

    def _participant(self, user_id: str) -> participants.Participant:
        me = participants.load(self.home).get(user_id)
        if me is None:
            raise EstateControlError(f"no active participant {user_id!r}", 403)
        return me

    def owned_premises(self, user_id: str) -> list[estate.Premises]:
        """The premises registered to ``user_id`` in the estate file, in any role."""
        me = self._participant(user_id)
        return [p for p in estate.load(self.home) if me.eui in p.registrations.values()]

    async def _registered(self, me: participants.Participant, eui: str, fallback: bool) -> bool:
        """Whether the inventory has ``eui`` registered to ``me``; the estate file's answer
        (``fallback``) when there is no lookup or the inventory does not answer."""
        if self.lookup is None:
            return fallback
        try:
            record = await self.lookup(eui)
        except Exception as exc:
            log.warning("inventory lookup failed; using the estate file: %s", exc)
            return fallback
        if record is None:
            return False
        registrations = record.get("registrations") or {}
        return me.eui in {str(v).upper() for v in registrations.values()}

    async def device(self, user_id: str, eui_text: str) -> OwnedDevice:
        """The device, when it is ``user_id``'s; EstateControlError 404 otherwise (a device
        of another participant is not disclosed as existing)."""
        me = self._participant(user_id)
        eui = normalise_eui(eui_text)
        for premises in estate.load(self.home):
            for d in premises.devices:
                if d.eui.upper() == eui:
                    in_file = me.eui in premises.registrations.values()
                    if await self._registered(me, eui, in_file):
                        return OwnedDevice(eui, premises, d.device_type.value)
                    break
        raise EstateControlError(f"no device {eui} is registered to you", 404)

    async def premises(self, user_id: str, key: str) -> estate.Premises:
        """The premises named by id or by any of its devices' EUI-64, when it is ``user_id``'s."""
        for p in estate.load(self.home):
            if p.premises_id == key:
                return (await self.device(user_id, p.hub_eui)).premises
        return (await self.device(user_id, key)).premises

    # -- what a participant may do -------------------------------------------------------

    async def describe(self, user_id: str, eui: str) -> dict[str, Any]:
        owned = await self.device(user_id, eui)
        answer: dict[str, Any] = await self.gateway.call("GET", f"/devices/{owned.eui}")
        return answer

    async def set_conditions(self, user_id: str, eui: str, body: dict[str, Any]) -> dict[str, Any]:
        wanted = device_conditions(body)
        owned = await self.device(user_id, eui)
        answer: dict[str, Any] = await self.gateway.call("PUT", f"/devices/{owned.eui}", wanted)
        return answer

    async def raise_alert(self, user_id: str, eui: str, code: Any) -> dict[str, Any]:
        text = alert_code(code)
        owned = await self.device(user_id, eui)
        answer: dict[str, Any] = await self.gateway.call(
            "POST", f"/devices/{owned.eui}/alerts", {"alert_code": text}
        )
        return answer

    async def set_hub_offline(self, user_id: str, eui: str, offline: bool) -> dict[str, Any]:
        owned = await self.device(user_id, eui)
        if owned.device_type != "CHF":
            raise EstateControlError(f"{owned.eui} is not a Communications Hub Function")
        answer: dict[str, Any] = await self.gateway.call(
            "PUT", f"/network/hubs/{owned.eui}", {"offline": offline}
        )
        return answer

    async def start_outage(self, user_id: str, key: str, duration: Any = None) -> dict[str, Any]:
        duration_s = outage_duration(duration)
        p = await self.premises(user_id, key)
        body = {} if duration_s is None else {"duration_s": duration_s}
        answer: dict[str, Any] = await self.gateway.call(
            "POST", f"/premises/{p.premises_id}/outage", body
        )
        return answer

    async def end_outage(self, user_id: str, key: str) -> dict[str, Any]:
        p = await self.premises(user_id, key)
        answer: dict[str, Any] = await self.gateway.call(
            "DELETE", f"/premises/{p.premises_id}/outage"
        )
        return answer

    async def reset_premises(self, user_id: str, key: str) -> dict[str, Any]:
        p = await self.premises(user_id, key)
        answer: dict[str, Any] = await self.gateway.call("POST", f"/premises/{p.premises_id}/reset")
        return answer

    # -- DCC's network-wide controls -----------------------------------------------------

    async def network(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.gateway.call("GET", "/network")
        return answer

    async def set_region(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        allowed = {"profile", "loss", "outage"}
        unknown = set(body) - allowed
        if unknown or not body:
            raise EstateControlError(f"a region takes any of {', '.join(sorted(allowed))}")
        path = f"/network/regions/{quote(region, safe='')}"
        answer: dict[str, Any] = await self.gateway.call("PUT", path, body)
        return answer

    async def reset_network(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.gateway.call("POST", "/network/reset")
        return answer
