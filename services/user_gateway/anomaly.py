"""Anomaly detection on the hot path: per-User, per-SRV thresholds over a sliding window.

In memory only, no I/O: a request that passed every check asks :meth:`AnomalyDetector.admit`
whether it fits its User's threshold for its SRV variant. The window of each (User, SRV) pair is a
deque of the monotonic times of the requests admitted in it, never longer than the threshold, so
a check costs O(1) amortised and memory is bounded by the thresholds. With no thresholds
configured (the default) a check is one dictionary lookup.

Thresholds: ``{"4.1.1": 100, "*": 1000}`` — a variant's own entry, else ``"*"`` for every other
variant (still counted per variant, not summed across variants); a variant with neither is never
quarantined. Only admitted requests count, so a User sending faster than its threshold gets
exactly the threshold through per window and the excess quarantined; a released request does
not count (the operator let it through).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping

WILDCARD = "*"


class SlidingWindow:
    """At most ``limit`` events in any ``window_s`` seconds; :meth:`admit` records one that fits."""

    __slots__ = ("_times", "limit", "window_s")

    def __init__(self, limit: int, window_s: float) -> None:
        if limit < 0:
            raise ValueError("a threshold is 0 or more")
        if window_s <= 0:
            raise ValueError("the window is longer than 0 s")
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        times, horizon = self._times, now - self.window_s
        while times and times[0] <= horizon:
            times.popleft()

    def admit(self, now: float) -> bool:
        """True, and counted, when one more event at ``now`` stays within the limit."""
        self._expire(now)
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True

    def count(self, now: float) -> int:
        """Events counted in the window ending at ``now``."""
        self._expire(now)
        return len(self._times)


class AnomalyDetector:
    """Per-User, per-SRV-variant sliding windows against the configured thresholds."""

    def __init__(
        self,
        thresholds: Mapping[str, int],
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for key, limit in thresholds.items():
            if limit < 0:
                raise ValueError(f"anomaly threshold for {key!r} is negative")
        if window_s <= 0:
            raise ValueError("the anomaly window is longer than 0 s")
        self.thresholds = dict(thresholds)
        self.default = self.thresholds.get(WILDCARD)
        self.window_s = window_s
        self._clock = clock
        self._windows: dict[tuple[str, str], SlidingWindow] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.thresholds)

    def threshold(self, srv: str) -> int | None:
        """The threshold for ``srv``: its own, else the ``"*"`` one, else None (unlimited)."""
        limit = self.thresholds.get(srv)
        return self.default if limit is None else limit

    def admit(self, user_id: str, srv: str) -> bool:
        """True when ``user_id``'s request for ``srv`` is within its threshold (and counted);
        False when it is the excess, to be quarantined."""
        if not self.thresholds:
            return True
        limit = self.threshold(srv)
        if limit is None:
            return True
        key = (user_id, srv)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = SlidingWindow(limit, self.window_s)
        return window.admit(self._clock())

    def count(self, user_id: str, srv: str) -> int:
        """Requests of ``user_id`` for ``srv`` admitted in the current window."""
        window = self._windows.get((user_id, srv))
        return 0 if window is None else window.count(self._clock())
