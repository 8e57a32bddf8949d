"""The informal testing rules DCC determines (consultation chapter 4), as a versioned TOML file.

The rules live outside the code, in ``$DCCSIM_HOME/testing/rules.toml``; when the file is absent
the documented default below applies (``dccsim`` writes it out with :func:`write_default` so it
can be edited). Every change to the file must raise ``version``; :class:`RulesFile` reloads the
file when it changes and refuses a version that goes backwards.

The file::

    version = 1                          # raise on every change
    effective_from = "2026-01-01"        # informational: when this version took effect

    [services]                           # which informal services DCC offers now
    pre_uit = true
    gfi = true

    [pre_uit]
    allowed_srvs = ["*"]                 # SRVs offered in pre-UIT; "*" for every SRV
    default_sr_limit = 10000             # Service Requests per participant per period
    limit_period = "day"                 # "day" (UTC) or "total"
    [pre_uit.sr_limits]                  # per-participant limits, by DCC User ID
    "demo-supplier" = 50000

    [opening_hours]                      # when pre-UIT accepts Service Requests
    timezone = "Europe/London"
    days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    open = "00:00"
    close = "24:00"

:func:`decide` is the pure check the User Gateway calls for each Service Request.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
LIMIT_PERIODS = ("day", "total")

# The DUIS codes decide() answers with (DUIS names none for an informal-testing rule, so the
# nearest authorisation code; the reason says which rule).
CODE_UNKNOWN_PARTICIPANT = "E1"
CODE_SRV_NOT_OFFERED = "E2"
CODE_NOT_AVAILABLE = "E3"  # service not offered, closed, or the participant's limit used up


class RulesError(ValueError):
    """A rules file that cannot be read or does not follow the format."""


@dataclass(frozen=True)
class OpeningHours:
    timezone: str = "Europe/London"
    days: tuple[str, ...] = DAYS
    open: dt.time = dt.time(0, 0)
    close: dt.time | None = None  # None: until midnight ("24:00")

    def is_open(self, now: dt.datetime) -> bool:
        """True when ``now`` (aware) falls on an open day between open and close, local time."""
        local = now.astimezone(ZoneInfo(self.timezone))
        if DAYS[local.weekday()] not in self.days:
            return False
        t = local.time().replace(tzinfo=None)
        return t >= self.open and (self.close is None or t < self.close)

    def describe(self) -> str:
        close = self.close.strftime("%H:%M") if self.close else "24:00"
        return f"{', '.join(self.days)} {self.open.strftime('%H:%M')}-{close} {self.timezone}"


@dataclass(frozen=True)
class TestingRules:
    """One version of the informal testing rules."""

    __test__ = False  # not a pytest class

    version: int = 1
    effective_from: str = ""
    pre_uit_offered: bool = True
    gfi_offered: bool = True
    allowed_srvs: frozenset[str] = frozenset({"*"})
    default_sr_limit: int = 10_000
    limit_period: str = "day"
    sr_limits: dict[str, int] = field(default_factory=dict)
    opening_hours: OpeningHours = OpeningHours()

    def sr_limit(self, participant: str) -> int:
        return self.sr_limits.get(participant, self.default_sr_limit)

    def srv_allowed(self, srv: str) -> bool:
        return "*" in self.allowed_srvs or srv in self.allowed_srvs

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "effective_from": self.effective_from,
            "services": {"pre_uit": self.pre_uit_offered, "gfi": self.gfi_offered},
            "pre_uit": {
                "allowed_srvs": sorted(self.allowed_srvs),
                "default_sr_limit": self.default_sr_limit,
                "limit_period": self.limit_period,
                "sr_limits": dict(sorted(self.sr_limits.items())),
            },
            "opening_hours": {
                "timezone": self.opening_hours.timezone,
                "days": list(self.opening_hours.days),
                "open": self.opening_hours.open.strftime("%H:%M"),
                "close": (
                    self.opening_hours.close.strftime("%H:%M")
                    if self.opening_hours.close
                    else "24:00"
                ),
                "description": self.opening_hours.describe(),
            },
        }


DEFAULT_RULES = TestingRules()

DEFAULT_RULES_TOML = """\
# dccsim informal testing rules (pre-UIT and GFI), as DCC determines them.
# Raise `version` on every change; see services/testing/rules.py for the format.
version = 1
effective_from = ""

[services]
pre_uit = true
gfi = true

[pre_uit]
allowed_srvs = ["*"]
default_sr_limit = 10000
limit_period = "day"

[pre_uit.sr_limits]

[opening_hours]
timezone = "Europe/London"
days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
open = "00:00"
close = "24:00"
"""


def rules_path(home: Path) -> Path:
    return home / "testing" / "rules.toml"


def _time(text: Any, what: str) -> dt.time | None:
    if not isinstance(text, str):
        raise RulesError(f"{what} must be a string HH:MM")
    if text == "24:00":
        return None
    try:
        return dt.time.fromisoformat(text)
    except ValueError as exc:
        raise RulesError(f"{what}: {text!r} is not HH:MM") from exc


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise RulesError(f"[{key}] must be a table")
    return value


def parse_rules(text: str) -> TestingRules:
    """The rules in a TOML document; :class:`RulesError` on anything malformed."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"not TOML: {exc}") from exc
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RulesError("version must be a positive integer")
    services = _table(raw, "services")
    pre_uit = _table(raw, "pre_uit")
    hours = _table(raw, "opening_hours")
    srvs = pre_uit.get("allowed_srvs", ["*"])
    if not isinstance(srvs, list) or not all(isinstance(s, str) for s in srvs):
        raise RulesError("pre_uit.allowed_srvs must be a list of SRV strings")
    limits = pre_uit.get("sr_limits", {})
    if not isinstance(limits, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in limits.values()
    ):
        raise RulesError("pre_uit.sr_limits must map User IDs to non-negative integers")
    default_limit = pre_uit.get("default_sr_limit", DEFAULT_RULES.default_sr_limit)
    if not isinstance(default_limit, int) or isinstance(default_limit, bool) or default_limit < 0:
        raise RulesError("pre_uit.default_sr_limit must be a non-negative integer")
    period = pre_uit.get("limit_period", "day")
    if period not in LIMIT_PERIODS:
        raise RulesError(f"pre_uit.limit_period must be one of {', '.join(LIMIT_PERIODS)}")
    days = hours.get("days", list(DAYS))
    if not isinstance(days, list) or any(d not in DAYS for d in days):
        raise RulesError(f"opening_hours.days must name days among {', '.join(DAYS)}")
    timezone = hours.get("timezone", "Europe/London")
    try:
        ZoneInfo(str(timezone))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise RulesError(f"opening_hours.timezone: unknown zone {timezone!r}") from exc
    opens = _time(hours.get("open", "00:00"), "opening_hours.open") or dt.time(0, 0)
    closes = _time(hours.get("close", "24:00"), "opening_hours.close")
    if closes is not None and closes <= opens:
        raise RulesError("opening_hours.close must be after open")
    for key in ("pre_uit", "gfi"):
        if not isinstance(services.get(key, True), bool):
            raise RulesError(f"services.{key} must be true or false")
    return TestingRules(
        version=version,
        effective_from=str(raw.get("effective_from", "")),
        pre_uit_offered=bool(services.get("pre_uit", True)),
        gfi_offered=bool(services.get("gfi", True)),
        allowed_srvs=frozenset(srvs),
        default_sr_limit=default_limit,
        limit_period=str(period),
        sr_limits={str(k): int(v) for k, v in limits.items()},
        opening_hours=OpeningHours(str(timezone), tuple(days), opens, closes),
    )


def load_rules(home: Path) -> TestingRules:
    """The rules file under ``home``, or :data:`DEFAULT_RULES` when there is none."""
    path = rules_path(home)
    if not path.is_file():
        return DEFAULT_RULES
    try:
        return parse_rules(path.read_text())
    except RulesError as exc:
        raise RulesError(f"{path}: {exc}") from exc


def write_default(home: Path) -> Path:
    """Write the default rules file if there is none; returns its path."""
    path = rules_path(home)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".rules-")
        with os.fdopen(fd, "w") as fh:
            fh.write(DEFAULT_RULES_TOML)
        os.replace(tmp, path)
    return path


class RulesFile:
    """The current rules, reloaded when the file changes.

    A file that does not parse, or whose version is lower than the one in force, is refused:
    the rules in force stay and ``problem`` says why (the API and portal show it).
    """

    def __init__(self, home: Path) -> None:
        self.path = rules_path(home)
        self._stamp: tuple[int, int, int] | None = None
        self._rules = DEFAULT_RULES
        self.problem: str | None = None

    def current(self) -> TestingRules:
        # inode, size and ns mtime: an edit saved twice within one coarse mtime tick still counts
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = stamp
            if stamp is None:
                self._rules, self.problem = DEFAULT_RULES, None
            else:
                try:
                    candidate = parse_rules(self.path.read_text())
                except (RulesError, OSError) as exc:
                    self.problem = f"{self.path}: {exc}"
                else:
                    if candidate.version < self._rules.version:
                        self.problem = (
                            f"{self.path}: version {candidate.version} is older than the "
                            f"version in force ({self._rules.version}); ignored"
                        )
                    else:
                        self._rules, self.problem = candidate, None
        return self._rules


def decide(
    rules: TestingRules,
    participant: str | None,
    srv: str,
    now: dt.datetime,
    used_count: int,
) -> tuple[str, str] | None:
    """Whether pre-UIT accepts a Service Request now.

    ``participant`` is the DCC User ID (None when the caller could not identify one), ``srv``
    the Service Reference Variant, ``now`` an aware datetime, ``used_count`` how many Service
    Requests the participant has already had accepted in the current limit period. Returns None
    to accept, or ``(duis_code, reason)`` for the first rule the request breaks: unknown
    participant (E1), pre-UIT not offered (E3), outside opening hours (E3), SRV not offered (E2),
    limit used up (E3).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not participant:
        return CODE_UNKNOWN_PARTICIPANT, "informal testing: not a registered participant"
    if not rules.pre_uit_offered:
        return CODE_NOT_AVAILABLE, f"pre-UIT is not offered at present (rules v{rules.version})"
    if not rules.opening_hours.is_open(now):
        return (
            CODE_NOT_AVAILABLE,
            f"pre-UIT is closed now; opening hours {rules.opening_hours.describe()}",
        )
    if not rules.srv_allowed(srv):
        return CODE_SRV_NOT_OFFERED, f"SRV {srv} is not offered in pre-UIT (rules v{rules.version})"
    limit = rules.sr_limit(participant)
    if used_count >= limit:
        period = "today" if rules.limit_period == "day" else "in total"
        return (
            CODE_NOT_AVAILABLE,
            f"pre-UIT Service Request limit reached: {used_count} of {limit} {period}",
        )
    return None
