"""The dispatch decision of a flow-controlled task queue, with no I/O.

:class:`FlowScheduler` holds the tasks read from a queue's backlog and answers one
question per dispatch cycle: which of them go to the workers now. The order is

1. strict priority: a higher priority goes first, whatever its key;
2. within a priority, weighted fair sharing between fairness keys by stride
   scheduling: each key has a *pass*, the key with the lowest pass goes next and
   its pass grows by ``1 / weight``; a key that was idle starts at the lowest pass
   of the active keys, so idleness earns no credit to burst with later;
3. under token buckets: one for the queue and one per key (rate + burst). A key
   whose bucket is empty is skipped (counted as throttled), so the other keys and
   the lower priorities keep going; an empty queue bucket ends the cycle;
4. and under a *window*: at most ``window`` released tasks may wait unstarted at the
   workers (Kafka partitions are FIFO: whatever is released can no longer be
   overtaken), so a later high-priority task waits behind at most that many.

Time comes from the caller (seconds, any monotonic-or-wall clock), which makes the
scheduler testable with an injected clock.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowConfig:
    """The flow control of one task queue (``saga queue configure``)."""

    queue: str
    rate: float | None = None
    """Tasks per second for the whole queue; None: no queue-wide limit."""
    burst: int = 1
    """Tokens the queue bucket holds at most (tasks released at once after idling)."""
    key_rate: float | None = None
    """Tasks per second for each fairness key; None: no per-key limit."""
    key_burst: int = 1
    """Tokens each key's bucket holds at most."""
    weights: Mapping[str, float] = field(default_factory=dict)
    """Weight per fairness key; keys not listed have ``default_weight``."""
    default_weight: float = 1.0
    window: int = 64
    """Released tasks that may wait unstarted at the workers (0: no bound)."""

    def __post_init__(self) -> None:
        problems = []
        if self.rate is not None and not self.rate > 0:
            problems.append(f"rate must be > 0, not {self.rate}")
        if self.key_rate is not None and not self.key_rate > 0:
            problems.append(f"key rate must be > 0, not {self.key_rate}")
        if self.burst < 1 or self.key_burst < 1:
            problems.append("bursts must be >= 1")
        if self.default_weight <= 0 or any(w <= 0 for w in self.weights.values()):
            problems.append("weights must be > 0")
        if self.window < 0:
            problems.append("window must be >= 0")
        if problems:
            raise ValueError(f"flow control of {self.queue!r}: " + "; ".join(problems))

    def weight(self, key: str) -> float:
        """The weight of fairness key ``key``."""
        return self.weights.get(key, self.default_weight)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` held; one token per task."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, tokens: float | None, stamp: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst) if tokens is None else min(float(burst), tokens)
        self.stamp = stamp

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last refill (time never runs backwards here)."""
        if now > self.stamp:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def ready(self, now: float) -> bool:
        """A token is there (after refilling)."""
        self.refill(now)
        return self.tokens >= 1.0

    def take(self) -> None:
        """Spend one token (call after :meth:`ready`)."""
        self.tokens -= 1.0

    def wait_s(self) -> float:
        """Seconds until the next token, from the last refill."""
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


@dataclass(slots=True)
class Pending(Generic[T]):
    """A task waiting in the scheduler: its backlog offset, class and payload."""

    offset: int
    priority: int
    key: str
    item: T
    enqueued: float


@dataclass(slots=True)
class FlowCounters:
    """What the scheduler decided, cumulative (exported as metrics and in the state)."""

    released: int = 0
    throttled_queue: int = 0
    """Cycles that ended on an empty queue bucket while tasks waited."""
    throttled_keys: dict[str, int] = field(default_factory=dict)
    """Per key: times a waiting task of the key was skipped for its empty bucket."""
    released_keys: dict[str, int] = field(default_factory=dict)
    window_full: int = 0
    """Cycles that ended because ``window`` released tasks were still unstarted."""


class FlowScheduler(Generic[T]):
    """Priority, then weighted fairness, under token buckets and a window (module doc)."""

    def __init__(
        self,
        config: FlowConfig,
        now: float,
        *,
        queue_tokens: float | None = None,
        key_tokens: Mapping[str, float] | None = None,
    ) -> None:
        """``queue_tokens``/``key_tokens``: bucket levels restored from the last state
        (as of ``now``), so a restart cannot burst above the limit."""
        self.config = config
        self.counters = FlowCounters()
        self._by_priority: dict[int, dict[str, collections.deque[Pending[T]]]] = {}
        self._pass: dict[str, float] = {}
        self._count = 0
        self._queue_bucket: TokenBucket | None = None
        self._key_buckets: dict[str, TokenBucket] = {}
        self.reconfigure(config, now, queue_tokens=queue_tokens)
        if config.key_rate is not None:
            # stamped at the state's time (``now``), so they refill for the downtime
            for key, level in (key_tokens or {}).items():
                self._key_buckets[key] = TokenBucket(config.key_rate, config.key_burst, level, now)

    def reconfigure(
        self, config: FlowConfig, now: float, *, queue_tokens: float | None = None
    ) -> None:
        """Apply a new configuration; bucket levels carry over (capped by the new bursts)."""
        old = self._queue_bucket
        if old is not None:
            old.refill(now)  # the tokens earned up to the change carry over too
        tokens = queue_tokens if queue_tokens is not None else old.tokens if old else None
        self.config = config
        self._queue_bucket = (
            TokenBucket(config.rate, config.burst, tokens, now) if config.rate is not None else None
        )
        if config.key_rate is None:
            self._key_buckets.clear()
        else:
            for key, bucket in list(self._key_buckets.items()):
                bucket.refill(now)
                self._key_buckets[key] = TokenBucket(
                    config.key_rate, config.key_burst, bucket.tokens, now
                )

    def __len__(self) -> int:
        return self._count

    def add(self, pending: Pending[T]) -> None:
        """A task read from the backlog."""
        if not self._active(pending.key):
            # an idle key joins at the lowest pass of the active keys: no saved-up credit
            floor = min((self._pass[k] for k in self._pass if self._active(k)), default=0.0)
            self._pass[pending.key] = max(self._pass.get(pending.key, 0.0), floor)
        keys = self._by_priority.setdefault(pending.priority, {})
        queue = keys.get(pending.key)
        if queue is None:
            queue = keys[pending.key] = collections.deque()
        queue.append(pending)
        self._count += 1

    def _active(self, key: str) -> bool:
        return any(key in keys for keys in self._by_priority.values())

    def pending(self) -> dict[tuple[int, str], int]:
        """Waiting tasks per (priority, key)."""
        return {(p, k): len(q) for p, keys in self._by_priority.items() for k, q in keys.items()}

    def oldest(self) -> Iterator[Pending[T]]:
        """Every waiting task (no order)."""
        for keys in self._by_priority.values():
            for queue in keys.values():
                yield from queue

    def next_batch(self, now: float, room: int | None) -> list[Pending[T]]:
        """The tasks to release now, in order: at most ``room`` (None: no window)."""
        out: list[Pending[T]] = []
        skipped: set[str] = set()
        while self._count and (room is None or len(out) < room):
            bucket = self._queue_bucket
            if bucket is not None and not bucket.ready(now):
                self.counters.throttled_queue += 1
                break
            chosen = self._pick(now, skipped)
            if chosen is None:
                break
            if bucket is not None:
                bucket.take()
            out.append(chosen)
        else:
            if self._count and room is not None and len(out) >= room:
                self.counters.window_full += 1
        return out

    def _pick(self, now: float, skipped: set[str]) -> Pending[T] | None:
        for priority in sorted(self._by_priority, reverse=True):
            keys = self._by_priority[priority]
            best: str | None = None
            for key in keys:
                if key in skipped:
                    continue
                if best is None or self._pass[key] < self._pass[best]:
                    best = key
            while best is not None:
                kb = self._key_bucket(best, now)
                if kb is None or kb.ready(now):
                    return self._pop(priority, best, kb)
                # the key is out of tokens: counted once per cycle, the others go on
                skipped.add(best)
                self.counters.throttled_keys[best] = self.counters.throttled_keys.get(best, 0) + 1
                rest = [k for k in keys if k not in skipped]
                best = min(rest, key=self._pass.__getitem__) if rest else None
        return None

    def _pop(self, priority: int, key: str, kb: TokenBucket | None) -> Pending[T]:
        keys = self._by_priority[priority]
        queue = keys[key]
        chosen = queue.popleft()
        if not queue:
            del keys[key]
            if not keys:
                del self._by_priority[priority]
        self._count -= 1
        if kb is not None:
            kb.take()
        self._pass[key] += 1.0 / self.config.weight(key)
        c = self.counters
        c.released += 1
        c.released_keys[key] = c.released_keys.get(key, 0) + 1
        if not self._active(key) and len(self._pass) > 10_000:
            del self._pass[key]  # keys come and go (tenants): do not keep them all
        return chosen

    def _key_bucket(self, key: str, now: float) -> TokenBucket | None:
        rate = self.config.key_rate
        if rate is None:
            return None
        bucket = self._key_buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(rate, self.config.key_burst, None, now)
            self._key_buckets[key] = bucket
        return bucket

    def wait_s(self, now: float) -> float:
        """Seconds until a throttled task could go (0 if one can go now, inf if none waits):
        the queue's bucket must have a token, and some waiting key's bucket too."""
        if not self._count:
            return math.inf
        wait = 0.0
        bucket = self._queue_bucket
        if bucket is not None:
            bucket.refill(now)
            wait = bucket.wait_s()
        if self.config.key_rate is not None:
            soonest = math.inf
            for keys in self._by_priority.values():
                for key in keys:
                    kb = self._key_bucket(key, now)
                    assert kb is not None
                    kb.refill(now)
                    soonest = min(soonest, kb.wait_s())
                    if soonest == 0.0:
                        return wait
            wait = max(wait, soonest)
        return wait

    def bucket_state(self, now: float) -> tuple[float | None, dict[str, float]]:
        """Bucket levels as of ``now`` (queue, per key below its burst), to persist."""
        queue = None
        if self._queue_bucket is not None:
            self._queue_bucket.refill(now)
            queue = self._queue_bucket.tokens
        keys: dict[str, float] = {}
        for key, bucket in list(self._key_buckets.items()):
            bucket.refill(now)
            if bucket.tokens < bucket.burst:
                keys[key] = bucket.tokens
            elif not self._active(key):
                del self._key_buckets[key]  # full and idle: same as new
        return queue, keys
