"""The shard processor's knobs (:class:`ProcessorOptions`), its counters for the log
line and the metrics endpoint (:class:`ProcessorMetrics`), and where it exports metrics
(:class:`MetricsExporter`)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.metrics import EngineMetrics, ShardGauges
from orchestrator.worker.shard.restore import RestoreStats

__all__ = ["MetricsExporter", "ProcessorMetrics", "ProcessorOptions", "default_worker_id"]


def default_worker_id() -> str:
    """``host-pid``: unique per live process, but new at each start (give ``--worker-id``
    for a stable one)."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class ProcessorOptions:
    """Tuning knobs; the defaults suit a small cluster and low latency."""

    worker_id: str = field(default_factory=default_worker_id)
    max_batch: int = 2000
    #: time per cycle, for all shards together, for work that can wait: firing due
    #: timers, expiring closed runs, recovering runs after a restore. A wake-up storm
    #: then delays each cycle's commands by this much at most (each shard also stops
    #: at its own ``ShardTuning.timer_budget_ms``); the shards take turns going first
    due_budget_ms: float = 25.0
    #: no such work while the batch gathered for the next transaction holds this many
    #: records: a storm's firings wait rather than make every commit large
    due_backlog_records: int = 2000
    idle_poll_s: float = 0.02
    # A hanging transaction pins the last stable offset (read_committed readers stall,
    # compaction cannot pass it), and a crashed owner's open transaction delays the
    # next owner's restore until it expires: keep it short.
    transaction_timeout_ms: int = 10_000
    session_timeout_ms: int = 6_000
    heartbeat_interval_ms: int = 1_500
    metrics_interval_s: float = 10.0
    #: how often per-shard gauges (lag, cached executions, timers) are sampled, when
    #: the processor exports metrics
    gauge_interval_s: float = 2.0
    #: timeout of each transactional call (send offsets, commit, abort); a watchdog
    #: above the sum of these catches calls that overrun it (a known librdkafka hang)
    call_timeout_s: float = 15.0
    #: a commit still running this long after it started is stuck inside librdkafka
    #: (``send_offsets_to_transaction`` ignores its timeout while the group coordinator
    #: is down): the processor fences it with a new producer under its transactional
    #: id, which makes the broker abort that transaction, and rebuilds its shards from
    #: the log. Below ``saga worker``'s 45 s watchdog, so the worker heals in place.
    stuck_commit_s: float = 20.0
    #: how long a restore keeps retrying through broker failovers before giving up
    restore_retry_s: float = 120.0
    #: keep a warm copy of every shard this worker does not own (Kafka Streams'
    #: standby replicas): their history is tailed into local stores, so taking one
    #: over after a failure reads only the last moments of its history
    standby: bool = False
    #: how often a standby's stores recompute the timers of runs their tail touched
    standby_warm_interval_s: float = 5.0
    #: consecutive failed transactions before the processor gives up (raises), so a
    #: record that can never be written stops the worker loudly instead of silently
    max_failed_transactions: int = 20
    #: the interpreter's thread switch interval while the processor runs (None: leave
    #: it). The commit thread blocks in librdkafka and then needs the GIL back, which
    #: the deciding thread holds for up to this long: Python's default of 5 ms made
    #: each commit wait for it (engine commit mean 48 -> 38 ms at 250 sagas/s, one run each)
    switch_interval_s: float | None = 0.0005
    #: how often the worker checks that every shard has an owner in the group, and
    #: makes the group rebalance if some stay unowned (a static member restarted in
    #: the middle of a rebalance: orchestrator/worker/group_watch.py); None: never
    group_watch_interval_s: float | None = 15.0
    #: send activity tasks as soon as they are decided, outside the transaction
    #: (orchestrator/worker/shard/dispatch.py): a step no longer waits for a commit
    #: before its activity worker sees it. The transaction still commits only once
    #: those tasks are acknowledged. False: tasks go in the transaction, as replies do
    early_dispatch: bool = True
    #: ... but only while the batch gathered for the next transaction is smaller than
    #: this: under load, tasks ride in the transaction, where they cost least (a large
    #: batch waits for its commit anyway, and one producer sending in large batches
    #: keeps the broker's and the workers' work per task low)
    early_dispatch_below: int = 200


@dataclass
class ProcessorMetrics:
    """Counters a metrics endpoint or a test can read."""

    cycles: int = 0
    transactions: int = 0
    records_in: int = 0
    records_out: int = 0
    forwarded: int = 0
    dead_lettered: int = 0
    aborted: int = 0
    #: of ``aborted``: commits stuck in librdkafka, fenced by a new producer
    stuck_fenced: int = 0
    restores: list[RestoreStats] = field(default_factory=list)
    commit_ms_total: float = 0.0
    commit_ms_max: float = 0.0
    #: of commit_ms_total: time in send_offsets_to_transaction and in commit_transaction
    offsets_ms_total: float = 0.0
    end_ms_total: float = 0.0
    decide_ms_total: float = 0.0
    #: time spent writing committed generations to the shard stores (deciding thread)
    store_ms_total: float = 0.0
    cycle_ms_max: float = 0.0
    #: activity tasks sent ahead of their transaction, and those of them the
    #: transaction had to carry itself (not acknowledged in time)
    early_tasks: int = 0
    early_fallbacks: int = 0
    #: activity tasks handed to a worker of this process instead of the queue, and
    #: outcomes such workers gave back in memory
    tasks_handed: int = 0
    outcomes_returned: int = 0
    #: records produced into their transaction while their batch waited for handed
    #: outcomes (sent_ahead.py)
    sent_ahead: int = 0
    #: commands consumers replaced by new ones: fenced by the group, or found gone from
    #: it by the group watch
    consumers_replaced: int = 0

    def summary(self) -> str:
        n = self.transactions or 1
        return (
            f"cycles={self.cycles} transactions={self.transactions} in={self.records_in} "
            f"out={self.records_out} forwarded={self.forwarded} dlq={self.dead_lettered} "
            f"aborted={self.aborted} (stuck {self.stuck_fenced}) "
            f"decide_ms_avg={self.decide_ms_total / n:.1f} "
            f"store_ms_avg={self.store_ms_total / n:.1f} "
            f"commit_ms_avg={self.commit_ms_total / n:.1f} "
            f"(offsets {self.offsets_ms_total / n:.1f}, end {self.end_ms_total / n:.1f}) "
            f"commit_ms_max={self.commit_ms_max:.1f} "
            f"cycle_ms_max={self.cycle_ms_max:.1f} "
            f"early_tasks={self.early_tasks} (fallbacks {self.early_fallbacks}) "
            f"handed={self.tasks_handed} (returned {self.outcomes_returned}) "
            f"sent_ahead={self.sent_ahead} consumers_replaced={self.consumers_replaced}"
        )


@dataclass(frozen=True)
class MetricsExporter:
    """Where a processor exports metrics, and how to read a handler's gauges."""

    metrics: EngineMetrics
    gauges_of: Callable[[object], ShardGauges | None]
