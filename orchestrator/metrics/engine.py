"""The engine worker's metrics: runs, decisions, transactions, restores, shards.

Counters that the shard processor keeps anyway (:class:`ProcessorCounters`) are read
when Prometheus scrapes, so they cost nothing per record. Histograms are observed
once per command decided, per transaction and per restore. Per-shard gauges are
sampled by the processor's own thread every few seconds (:meth:`EngineMetrics.sample`)
and dropped for shards it no longer owns. No label ever holds a workflow id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from orchestrator.metrics.buckets import FAST
from orchestrator.metrics.reasons import dlq_reason_label
from orchestrator.status import WorkflowStatus

__all__ = ["EngineMetrics", "ProcessorCounters", "ShardGauges"]


class ProcessorCounters(Protocol):
    """What the shard processor counts for its log line (read at scrape time)."""

    @property
    def records_in(self) -> int: ...
    @property
    def records_out(self) -> int: ...
    @property
    def forwarded(self) -> int: ...
    @property
    def aborted(self) -> int: ...
    @property
    def stuck_fenced(self) -> int: ...
    @property
    def transactions(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ShardGauges:
    """One owned shard's state, as sampled."""

    executions_cached: int
    parked_runs: int
    #: ``None`` while the first count of the store's timers is under way
    pending_timers: int | None


class _ProcessorCollector(Collector):
    def __init__(self, counters: ProcessorCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[CounterMetricFamily]:
        c = self._counters
        for name, doc, value in (
            ("saga_engine_commands", "Commands consumed by the shard processor.", c.records_in),
            ("saga_engine_records_written", "Records written in transactions.", c.records_out),
            (
                "saga_engine_commands_forwarded",
                "Commands found on the wrong partition and forwarded to their shard.",
                c.forwarded,
            ),
            (
                "saga_engine_transactions_aborted",
                "Failed transactions (each rebuilds the owned shards from history).",
                c.aborted,
            ),
            (
                "saga_engine_stuck_commits_fenced",
                "Of the aborted transactions: commits stuck inside the Kafka client, ended "
                "by a new producer under the worker's transactional id.",
                c.stuck_fenced,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)


class EngineMetrics:
    """The engine's metric families, registered in ``registry`` (one per process).

    One engine worker per instance: the per-shard gauges and the processor's counters
    are those of the last processor that called :meth:`watch_processor`. Embedding two
    engine workers in one interpreter takes two :class:`~orchestrator.metrics.SagaMetrics`.
    """

    def __init__(self, registry: CollectorRegistry, dead_letters: Counter) -> None:
        self.registry = registry
        self.runs_started = Counter(
            "saga_workflow_runs_started", "Runs started (continue-as-new included).",
            ["workflow_type"], registry=registry,
        )  # fmt: skip
        self.runs_closed = Counter(
            "saga_workflow_runs_closed", "Runs closed, by final status.",
            ["workflow_type", "status"], registry=registry,
        )  # fmt: skip
        self.runs_compensated = Counter(
            "saga_workflow_runs_compensated",
            "Closed runs that ran compensations, by final status (also in runs_closed).",
            ["workflow_type", "status"], registry=registry,
        )  # fmt: skip
        self.decision_seconds = Histogram(
            "saga_engine_decision_seconds",
            "Time to decide one command (replay included), on the deciding thread.",
            buckets=FAST, registry=registry,
        )  # fmt: skip
        self.commit_seconds = Histogram(
            "saga_engine_commit_seconds",
            "Time to write and commit one transaction (records and consumed offsets).",
            buckets=FAST, registry=registry,
        )  # fmt: skip
        self.restore_seconds = Histogram(
            "saga_engine_restore_seconds", "Time to restore one shard from its history.",
            buckets=(*FAST, 60.0, 300.0, 900.0, 3600.0), registry=registry,
        )  # fmt: skip
        self.restored_records = Counter(
            "saga_engine_restored_records", "History records read by restores.",
            registry=registry,
        )  # fmt: skip
        #: shared with activity workers: ``source="engine"``
        self.dead_letters = dead_letters
        self.lag = Gauge(
            "saga_engine_consumer_lag",
            "Commands waiting on an owned shard's partition (end of log - position).",
            ["shard"], registry=registry,
        )  # fmt: skip
        self.executions_cached = Gauge(
            "saga_engine_executions_cached", "Executions held in memory by an owned shard.",
            ["shard"], registry=registry,
        )  # fmt: skip
        self.parked_runs = Gauge(
            "saga_engine_parked_runs",
            "Runs parked (cannot be replayed by this build) on an owned shard.",
            ["shard"], registry=registry,
        )  # fmt: skip
        self.pending_timers = Gauge(
            "saga_engine_pending_timers",
            "Timers of an owned shard, from an incremental count of its store (approximate).",
            ["shard"], registry=registry,
        )  # fmt: skip
        self.shards = Gauge(
            "saga_engine_shards", "Shards of this process, by state.", ["state"],
            registry=registry,
        )  # fmt: skip
        self._exported: set[str] = set()
        self._collector: _ProcessorCollector | None = None

    def watch_processor(self, counters: ProcessorCounters) -> None:
        """Export the processor's own counters (read when scraped)."""
        if self._collector is not None:
            self.registry.unregister(self._collector)
        self._collector = _ProcessorCollector(counters)
        self.registry.register(self._collector)

    # --- called by the engine ------------------------------------------------------

    def run_closed(self, workflow_type: str, status: WorkflowStatus, compensated: bool) -> None:
        label = status.value.lower()
        self.runs_closed.labels(workflow_type, label).inc()
        if compensated:
            self.runs_compensated.labels(workflow_type, label).inc()

    def dead_lettered(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            self.dead_letters.labels("engine", dlq_reason_label(reason)).inc()

    def sample(
        self,
        lags: Mapping[int, int],
        shards: Mapping[int, object],
        gauges_of: Callable[[object], ShardGauges | None],
        *,
        restoring: int,
        standby: int,
    ) -> None:
        """Set the per-shard gauges for the shards owned now; drop the others'."""
        now: set[str] = set()
        for partition, lag in lags.items():
            self.lag.labels(str(partition)).set(lag)
            now.add(str(partition))
        for partition, handler in shards.items():
            gauges = gauges_of(handler)
            if gauges is None:
                continue
            shard = str(partition)
            now.add(shard)
            self.executions_cached.labels(shard).set(gauges.executions_cached)
            self.parked_runs.labels(shard).set(gauges.parked_runs)
            if gauges.pending_timers is not None:
                self.pending_timers.labels(shard).set(gauges.pending_timers)
        for shard in self._exported - now:
            for family in (self.lag, self.executions_cached, self.parked_runs, self.pending_timers):
                with contextlib.suppress(KeyError):  # never set for this shard
                    family.remove(shard)
        self._exported = now
        self.shards.labels("owned").set(len(shards))
        self.shards.labels("restoring").set(restoring)
        self.shards.labels("standby").set(standby)
