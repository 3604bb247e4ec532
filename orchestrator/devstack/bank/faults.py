"""Runtime-controllable faults of the demo bank, shared by its handlers and its admin API.

Every knob can be set from Python (``server.faults.outage(30)``) or over HTTP
(``PUT /admin/faults {"outage_seconds": 30}``); both go through :meth:`Faults.configure`.
Thread-safe: tests change faults from their own thread while the bank serves.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

__all__ = ["FaultCounters", "Faults"]

_KNOBS = frozenset(
    {
        "outage_seconds",
        "retry_after",
        "retry_after_http_date",
        "latency",
        "error_rate",
        "seed",
        "slow_delay",
        "slow_count",
    }
)


@dataclass(slots=True)
class FaultCounters:
    """How many times each fault fired since the last reset."""

    outage_503: int = 0
    random_500: int = 0
    slow_responses: int = 0


class Faults:
    """Outage windows, added latency, a seeded error rate and slow-after-apply answers."""

    def __init__(self, *, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._reset_locked()

    def _reset_locked(self) -> None:
        self._outage_until: float | None = None
        self._retry_after: float | None = None
        self._retry_after_date = False
        self._latency = 0.0
        self._error_rate = 0.0
        self._rng = random.Random(self._seed)
        self._slow_delay = 0.0
        self._slow_count = 0
        self.counters = FaultCounters()

    # -- Python API -----------------------------------------------------------------

    def reset(self) -> None:
        """No faults, counters at zero, error draws restarted from the seed."""
        with self._lock:
            self._reset_locked()

    def outage(
        self, seconds: float, *, retry_after: float | None = None, http_date: bool = False
    ) -> None:
        """A "bank holiday" from now for ``seconds``: money endpoints answer 503.

        ``Retry-After`` says ``retry_after`` seconds (default: the time left, rounded
        up), as delta-seconds or, with ``http_date=True``, as an HTTP-date.
        """
        self.configure(
            outage_seconds=seconds, retry_after=retry_after, retry_after_http_date=http_date
        )

    def end_outage(self) -> None:
        """End the current outage now."""
        self.configure(outage_seconds=0)

    def latency(self, seconds: float) -> None:
        """Add ``seconds`` before every money operation."""
        self.configure(latency=seconds)

    def error_rate(self, rate: float, *, seed: int | None = None) -> None:
        """Answer this fraction of money requests with a 500, before applying anything."""
        self.configure(error_rate=rate, seed=seed)

    def slow_after_apply(self, delay: float, *, count: int = 1) -> None:
        """The next ``count`` money operations are applied, then answered ``delay`` s later."""
        self.configure(slow_delay=delay, slow_count=count)

    def configure(self, **settings: Any) -> None:
        """Set any knobs at once (the admin endpoint's body); unknown names are refused."""
        unknown = set(settings) - _KNOBS
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        with self._lock:
            if "outage_seconds" in settings:
                secs = float(settings["outage_seconds"])
                self._outage_until = time.monotonic() + secs if secs > 0 else None
                self._retry_after = None
                self._retry_after_date = False
            if settings.get("retry_after") is not None:
                self._retry_after = float(settings["retry_after"])
            if "retry_after_http_date" in settings:
                self._retry_after_date = bool(settings["retry_after_http_date"])
            if "latency" in settings:
                self._latency = max(0.0, float(settings["latency"]))
            if "error_rate" in settings:
                rate = float(settings["error_rate"])
                if not 0.0 <= rate <= 1.0:
                    raise ValueError("error_rate must be within [0, 1]")
                self._error_rate = rate
            if settings.get("seed") is not None:
                self._seed = int(settings["seed"])
                self._rng = random.Random(self._seed)
            if "slow_delay" in settings:
                self._slow_delay = max(0.0, float(settings["slow_delay"]))
            if "slow_count" in settings:
                self._slow_count = max(0, int(settings["slow_count"]))

    def snapshot(self) -> dict[str, Any]:
        """The current settings and counters, as the admin endpoint shows them."""
        with self._lock:
            left = self._outage_left()
            return {
                "outage_seconds_left": round(left, 3) if left else 0,
                "retry_after": self._retry_after,
                "retry_after_http_date": self._retry_after_date,
                "latency": self._latency,
                "error_rate": self._error_rate,
                "seed": self._seed,
                "slow_delay": self._slow_delay,
                "slow_count": self._slow_count,
                "injected": {
                    "outage_503": self.counters.outage_503,
                    "random_500": self.counters.random_500,
                    "slow_responses": self.counters.slow_responses,
                },
            }

    # -- used by the handlers -------------------------------------------------------

    def _outage_left(self) -> float:
        if self._outage_until is None:
            return 0.0
        left = self._outage_until - time.monotonic()
        if left <= 0:
            self._outage_until = None
            return 0.0
        return left

    def outage_retry_after(self) -> str | None:
        """The Retry-After value to answer with if an outage is on, else None."""
        with self._lock:
            left = self._outage_left()
            if not left:
                return None
            self.counters.outage_503 += 1
            wait = self._retry_after if self._retry_after is not None else left
            if self._retry_after_date:
                when = datetime.now(UTC) + timedelta(seconds=math.ceil(wait))
                return format_datetime(when, usegmt=True)
            return str(math.ceil(wait))

    def added_latency(self) -> float:
        """Seconds to wait before handling a money request."""
        with self._lock:
            return self._latency

    def draw_error(self) -> bool:
        """True if this request should fail with a 500 (seeded draw)."""
        with self._lock:
            if self._error_rate <= 0.0:
                return False
            hit = self._rng.random() < self._error_rate
            if hit:
                self.counters.random_500 += 1
            return hit

    def take_slow(self) -> float:
        """Seconds to hold an applied operation's answer (0 when not armed)."""
        with self._lock:
            if self._slow_count <= 0 or self._slow_delay <= 0:
                return 0.0
            self._slow_count -= 1
            self.counters.slow_responses += 1
            return self._slow_delay
