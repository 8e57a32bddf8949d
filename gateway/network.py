"""The network model: per CSP region a latency profile, a loss rate, offline hubs and outages; per
device scripted faults. Set from config at start and changed at run time by the control API.

What each condition does to a command (``NetworkModel.route``):

* region outage, hub offline, premises power outage, device ``offline="unreachable"``: the CSP
  knows it has no session with the hub, so the command is answered ``E20`` after the profile's
  latency;
* device ``offline="silent"``: the command vanishes and the WAN's deadline answers ``E21``;
* loss: a command is lost with probability ``loss``, half of the time on the way down (the device
  never sees it), half on the way up (the device acts, its response is lost): either way ``E21``
  at the deadline;
* a forced error: ``E20``/``E21`` answered by the gateway, or a DLMS failure result answered by
  the device itself (a well-formed GBCS error response).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class LatencyProfile(StrEnum):
    FAST = "fast"  # load tests: a couple of milliseconds
    REALISTIC = "realistic"  # CSP on-demand round trips: seconds, inside the 25 s target


# realistic: log-normal round trip, median 2 s, 99th percentile about 10 s, capped at 20 s so
# an on-demand command in good conditions always beats the 25 s CSP target.
REALISTIC_MEDIAN_S = 2.0
REALISTIC_SIGMA = 0.7
REALISTIC_CAP_S = 20.0
FAST_RANGE_S = (0.0005, 0.003)


def sample_latency(profile: LatencyProfile, rng: random.Random) -> float:
    if profile is LatencyProfile.FAST:
        return rng.uniform(*FAST_RANGE_S)
    return min(rng.lognormvariate(math.log(REALISTIC_MEDIAN_S), REALISTIC_SIGMA), REALISTIC_CAP_S)


class Fate(StrEnum):
    DELIVER = "deliver"
    UNREACHABLE = "unreachable"  # answer E20
    LOST_DOWN = "lost_down"  # never reaches the device: no answer
    LOST_UP = "lost_up"  # the device acts, its answer is lost
    WAN_ERROR = "wan_error"  # the gateway answers a forced E20/E21


class OfflineMode(StrEnum):
    UNREACHABLE = "unreachable"
    SILENT = "silent"


@dataclass
class RegionConditions:
    profile: LatencyProfile = LatencyProfile.FAST
    loss: float = 0.0
    outage: bool = False

    def update(self, changes: dict[str, Any]) -> None:
        if "profile" in changes:
            self.profile = LatencyProfile(changes["profile"])
        if "loss" in changes:
            loss = float(changes["loss"])
            if not 0.0 <= loss <= 1.0:
                raise ValueError("loss is a probability, 0..1")
            self.loss = loss
        if "outage" in changes:
            self.outage = bool(changes["outage"])


@dataclass
class ForcedError:
    """Answer the device's next ``times`` commands (0: every one) with ``code`` (E20/E21, from
    the gateway) or with DLMS failure ``dlms_result`` (from the device)."""

    code: str | None = None
    dlms_result: int | None = None
    times: int = 1

    def __post_init__(self) -> None:
        if (self.code is None) == (self.dlms_result is None):
            raise ValueError("a forced error is either a code (E20/E21) or a dlms_result")
        if self.code is not None and self.code not in ("E20", "E21"):
            raise ValueError("a forced WAN error is E20 or E21")
        if self.dlms_result is not None and not 1 <= self.dlms_result <= 255:
            raise ValueError("dlms_result is a DLMS failure result, 1..255")


@dataclass
class DeviceConditions:
    offline: OfflineMode | None = None
    delay_s: float = 0.0
    error: ForcedError | None = None

    @property
    def default(self) -> bool:
        return self.offline is None and not self.delay_s and self.error is None


@dataclass(frozen=True)
class Route:
    fate: Fate
    latency_s: float
    code: str | None = None
    dlms_result: int | None = None
    reason: str = ""


@dataclass
class NetworkModel:
    regions: dict[str, RegionConditions]
    rng: random.Random = field(default_factory=random.Random)
    offline_hubs: set[bytes] = field(default_factory=set)
    devices: dict[bytes, DeviceConditions] = field(default_factory=dict)
    premises_outages: set[int] = field(default_factory=set)

    @classmethod
    def from_config(
        cls,
        region_names: list[str],
        *,
        profile: str = "fast",
        loss: float = 0.0,
        overrides: dict[str, dict[str, Any]] | None = None,
        seed: int | None = None,
    ) -> NetworkModel:
        """Every region with ``profile`` and ``loss``, then ``overrides`` per region name."""
        regions = {}
        for name in region_names:
            conditions = RegionConditions(LatencyProfile(profile), float(loss))
            conditions.update((overrides or {}).get(name, {}))
            regions[name] = conditions
        return cls(regions, random.Random(seed))

    def region(self, name: str) -> RegionConditions:
        if name not in self.regions:
            self.regions[name] = RegionConditions()
        return self.regions[name]

    def device(self, eui: bytes) -> DeviceConditions:
        if eui not in self.devices:
            self.devices[eui] = DeviceConditions()
        return self.devices[eui]

    def tidy(self, eui: bytes) -> None:
        conditions = self.devices.get(eui)
        if conditions is not None and conditions.default:
            del self.devices[eui]

    def route(self, *, eui: bytes, hub: bytes, region: str, premises: int) -> Route:
        """What happens to one command for ``eui`` right now."""
        conditions = self.region(region)
        latency = sample_latency(conditions.profile, self.rng)
        device = self.devices.get(eui)
        if device is not None:
            latency += device.delay_s
        if conditions.outage:
            return Route(Fate.UNREACHABLE, latency, "E20", reason=f"{region} region outage")
        if hub in self.offline_hubs:
            return Route(Fate.UNREACHABLE, latency, "E20", reason="Communications Hub offline")
        if premises in self.premises_outages:
            return Route(Fate.UNREACHABLE, latency, "E20", reason="power outage at the premises")
        if device is not None:
            if device.offline is OfflineMode.UNREACHABLE:
                return Route(Fate.UNREACHABLE, latency, "E20", reason="device offline")
            if device.offline is OfflineMode.SILENT:
                return Route(Fate.LOST_DOWN, latency, reason="device offline (silent)")
            error = device.error
            if error is not None:
                if error.times == 1:
                    device.error = None
                    self.tidy(eui)
                elif error.times > 1:
                    error.times -= 1
                if error.code is not None:
                    return Route(Fate.WAN_ERROR, latency, error.code, reason="scripted error")
                return Route(Fate.DELIVER, latency, dlms_result=error.dlms_result)
        if conditions.loss and self.rng.random() < conditions.loss:
            fate = Fate.LOST_DOWN if self.rng.random() < 0.5 else Fate.LOST_UP
            return Route(fate, latency, reason="lost in the network")
        return Route(Fate.DELIVER, latency)

    def reset(self) -> None:
        """Every region back to its defaults' profile with no loss or outage; no faults."""
        for conditions in self.regions.values():
            conditions.loss = 0.0
            conditions.outage = False
        self.offline_hubs.clear()
        self.devices.clear()
        self.premises_outages.clear()

    def describe(self) -> dict[str, Any]:
        return {
            "regions": {
                name: {**asdict(c), "profile": c.profile.value} for name, c in self.regions.items()
            },
            "offline_hubs": sorted(h.hex().upper() for h in self.offline_hubs),
            "devices_with_conditions": len(self.devices),
            "premises_in_outage": len(self.premises_outages),
        }


def describe_device(conditions: DeviceConditions | None) -> dict[str, Any]:
    if conditions is None:
        return {"offline": None, "delay_s": 0.0, "error": None}
    return {
        "offline": None if conditions.offline is None else conditions.offline.value,
        "delay_s": conditions.delay_s,
        "error": None if conditions.error is None else asdict(conditions.error),
    }
