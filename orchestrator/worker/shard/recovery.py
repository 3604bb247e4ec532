"""Recovering runs after a restore, a slice per cycle: the runs the restore touched get
their timers indexed (read off their events, or by a replay), parked runs that this
build replays are unparked, and a continue-as-new whose next run never started starts.

The runs to recover are the store's ``v`` set: the restore fills it, and
:meth:`Recovery.begin` adds the parked runs (the ``k`` set).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from orchestrator.engine import events as ev
from orchestrator.engine.registry import WorkflowRegistry, pinned_version
from orchestrator.engine.status import WorkflowStatus
from orchestrator.engine.timer_fold import folded_timers
from orchestrator.worker.shard import children
from orchestrator.worker.shard.applying import ExecutorOf
from orchestrator.worker.shard.due import TimerIndex
from orchestrator.worker.shard.executions import Execution, ExecutionTable
from orchestrator.worker.shard.output import ShardOutput
from orchestrator.worker.shard.records import OutRecord
from orchestrator.worker.shard.stats import ShardStats
from orchestrator.worker.shard.view import StoreView

__all__ = ["Recovery"]

log = logging.getLogger(__name__)

#: starts the next runs of a run that continued as new (``Chains.run``)
RunChain = Callable[[Execution, int], list[OutRecord]]


class Recovery:
    """The recovery of one shard's runs after its latest restore."""

    def __init__(
        self,
        *,
        partition: int,
        view: StoreView,
        executions: ExecutionTable,
        timers: TimerIndex,
        workflows: WorkflowRegistry,
        stats: ShardStats,
        output: ShardOutput,
        executor_of: ExecutorOf,
        run_chain: RunChain,
        idle_evict_ms: int,
    ) -> None:
        self.partition = partition
        self.view = view
        self.executions = executions
        self.timers = timers
        self.workflows = workflows
        self.stats = stats
        self.output = output
        self.executor_of = executor_of
        self.run_chain = run_chain
        self.idle_evict_ms = idle_evict_ms
        self.began, self.recovered, self.folded = time.monotonic(), 0, 0
        #: runs are left to recover (the store's recovery set is not empty)
        self.pending = view.first(b"v") is not None

    def begin(self) -> None:
        """The restore reached the log's end: recover the runs it touched, and the
        parked runs (new code may now replay them)."""
        store = self.view.store
        for key, _ in list(store.scan(b"k")):
            store.put(b"v" + key[1:], b"")
        self.pending = store.first(b"v") is not None
        self.began, self.recovered, self.folded = time.monotonic(), 0, 0
        if not self.pending:  # the restore indexed every timer it read (ingest.py)
            self._log_done()

    def some(self, limit: int, now_ms: int, deadline: float) -> list[OutRecord]:
        """Recover up to ``limit`` runs, until ``deadline`` (monotonic; at least one)."""
        if not self.pending:
            return []
        batch = list(self.view.scan(b"v", limit))
        if not batch:
            self.pending = False
            self._log_done()
            return []
        out: list[OutRecord] = []
        for key, _ in batch:
            self.view.delete(key)
            self.recovered += 1
            out += self._recover(key[1:].decode(), now_ms)
            if time.monotonic() >= deadline:
                break  # the shard's commands come first; the rest in the next cycles
        return out

    def _log_done(self) -> None:
        log.info(
            "shard %d: runs to recover after the restore all recovered (%d in %.1fs, "
            "%d of them with timers read off their events)",
            self.partition,
            self.recovered,
            time.monotonic() - self.began,
            self.folded,
        )

    def _recover(self, workflow_id: str, now_ms: int) -> list[OutRecord]:
        execution = self.executions.get(workflow_id)
        if execution is None:
            return []
        if execution.status is WorkflowStatus.CONTINUED_AS_NEW:
            # the latest run continued as new but its next run never started (a chain
            # left for the next cycle, or a workflow type this build lacked): start it now
            events = self.executions.events(execution)
            if events and isinstance(events[-1], ev.WorkflowContinuedAsNew):
                assert execution.snapshot is not None
                execution.next_run = children.next_run_after(execution.snapshot, events[-1])
                execution.parked = None
                self.stats.run_unparked(workflow_id)
                return self.run_chain(execution, now_ms)
            return []
        if not execution.is_open or (execution.parked is None and self._fold(execution)):
            return []
        was_parked = execution.parked
        execution.parked = None
        self.stats.run_unparked(workflow_id)
        executor = self.executor_of(execution)
        if executor is None:
            return []
        out: list[OutRecord] = []
        if was_parked is not None:  # this build replays it: no longer parked
            log.info("workflow %s run %s unparked", execution.workflow_id, execution.run_id)
            self.view.delete(b"k" + workflow_id.encode())
            out.append(self.output.snapshot(execution, executor))
        elif executor.quiet_until(now_ms + self.idle_evict_ms):
            self.executions.evict(execution)
        return out

    def _fold(self, execution: Execution) -> bool:
        """Index a sleeping run's timers from its events, without replaying it
        (:mod:`~orchestrator.engine.timer_fold`); False when only a replay can tell.
        A run the current code cannot replay is then parked when it next wakes, not
        here."""
        if execution.executor is not None or execution.workflow_type not in self.workflows:
            return False
        events = self.executions.events(execution)
        if self.workflows.get_version(execution.workflow_type, pinned_version(events)) is None:
            return False  # the replay parks it now, visibly, rather than when it wakes
        timers = folded_timers(events)
        if timers is None:
            return False
        self.timers.replace_run(execution.workflow_id, execution.run_id, timers)
        self.folded += 1
        self.executions.evict(execution)
        return True
