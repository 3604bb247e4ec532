"""Sampling an engine shard's gauges for metrics, on the processor's thread.

Cached executions and parked runs are counted in memory. Pending timers live in the
shard's store (a million sleeping runs are a million entries), so they are counted a
slice at a time: each sample reads at most ``keys_per_sample`` timer keys of a shard and
the gauge is refreshed when a pass over its timers ends. It is therefore approximate:
up to a pass behind (a pass over N timers takes N / keys_per_sample samples), and
timers set or fired during a pass may be missed or counted.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

from orchestrator.metrics import ShardGauges
from orchestrator.worker.shard.engine_shard import EngineShard

__all__ = ["EngineShardGauges"]

_TIMER_PREFIX = b"u"  # one entry per pending timer (orchestrator.worker.shard.store)


class _TimerTally:
    __slots__ = ("after", "last_total", "running")

    def __init__(self) -> None:
        self.after: bytes | None = None
        self.running = 0
        self.last_total: int | None = None


class EngineShardGauges:
    """Callable: an :class:`EngineShard`'s gauges, or None for another handler."""

    def __init__(self, keys_per_sample: int = 2_000) -> None:
        self.keys_per_sample = keys_per_sample
        self._tallies: WeakKeyDictionary[EngineShard, _TimerTally] = WeakKeyDictionary()

    def __call__(self, handler: object) -> ShardGauges | None:
        if not isinstance(handler, EngineShard):
            return None
        tally = self._tallies.get(handler)
        if tally is None:
            tally = self._tallies[handler] = _TimerTally()
        counted, tally.after = handler.store.count(
            _TIMER_PREFIX, tally.after, self.keys_per_sample
        )
        tally.running += counted
        if tally.after is None:  # a pass ended
            tally.last_total, tally.running = tally.running, 0
        return ShardGauges(
            executions_cached=len(handler.executions),
            parked_runs=len(handler.stats.parked_ids),
            pending_timers=tally.last_total,
        )
