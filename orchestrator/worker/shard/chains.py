"""Continue-as-new on the shard: once a run closed as CONTINUED_AS_NEW, its next run
starts in the same cycle (same workflow id, so same shard), and the next of that one
while runs continue at once, up to :data:`MAX_CHAINED_RUNS` per cycle.

A next run that cannot start (its workflow type or version is not in this build)
parks the closed run; the next restore retries it.
"""

from __future__ import annotations

import dataclasses
import logging

from orchestrator.engine.registry import WorkflowRegistry, missing_version
from orchestrator.worker.shard.applying import Apply
from orchestrator.worker.shard.executions import Execution, ExecutionTable
from orchestrator.worker.shard.output import ShardOutput
from orchestrator.worker.shard.records import OutRecord
from orchestrator.worker.shard.stats import ShardStats
from orchestrator.worker.shard.view import StoreView

__all__ = ["MAX_CHAINED_RUNS", "Chains"]

log = logging.getLogger(__name__)

#: runs one input may start by continue-as-new; a longer chain goes on in the next cycle
MAX_CHAINED_RUNS = 100


class Chains:
    """Starts the next runs of runs that continued as new, on one shard."""

    def __init__(
        self,
        *,
        workflows: WorkflowRegistry,
        executions: ExecutionTable,
        view: StoreView,
        stats: ShardStats,
        output: ShardOutput,
        apply: Apply,
    ) -> None:
        self.workflows = workflows
        self.executions = executions
        self.view = view
        self.stats = stats
        self.output = output
        self.apply = apply
        #: starting continued runs: a decision that continues leaves the chain to this loop
        self.running = False
        #: chains past MAX_CHAINED_RUNS, for the shard's next fire_due
        self.due: list[Execution] = []

    def run(self, execution: Execution, now: int) -> list[OutRecord]:
        """Start the next run of ``execution``, and the next of that one while runs
        continue as new at once; past :data:`MAX_CHAINED_RUNS` the chain goes on in
        the next cycle (a crash meanwhile is resumed by restore)."""
        out: list[OutRecord] = []
        current: Execution | None = execution
        self.running = True
        try:
            for _ in range(MAX_CHAINED_RUNS):
                if current is None or current.next_run is None:
                    return out
                current, started = self._start_next(current, now)
                out += started
        finally:
            self.running = False
        if current is not None and current.next_run is not None:
            self.due.append(current)
        return out

    def resume(self, now: int) -> list[OutRecord]:
        """Go on with the chains the previous cycles left (those still current)."""
        out: list[OutRecord] = []
        chains, self.due = self.due, []
        for chained in chains:
            if self.executions.get(chained.workflow_id) is chained:
                out += self.run(chained, now)
        return out

    def _start_next(
        self, previous: Execution, now: int
    ) -> tuple[Execution | None, list[OutRecord]]:
        """Start the run ``previous`` continued as; the new run, or None if it cannot."""
        start = previous.next_run
        assert start is not None
        if start.workflow_type not in self.workflows:
            reason = f"its next run's workflow type {start.workflow_type!r} is unknown here"
            return None, [self._park_closed(previous, reason)]
        definition = self.workflows.get_version(start.workflow_type, start.workflow_version)
        if definition is None:  # the author asked for a version this worker lacks
            reason = "its next run is " + missing_version(
                self.workflows, start.workflow_type, start.workflow_version
            )
            return None, [self._park_closed(previous, reason)]
        previous.next_run = None
        self.executions.release_events(previous)  # on disk until retention
        execution = Execution(
            start.workflow_id,
            start.run_id,
            start.workflow_type,
            start.task_queue,
            now,
            parent=previous.parent,
            start_request_id=previous.start_request_id,
            start_run_id=previous.start_run_id,
            traceparent=previous.traceparent,
            workflow_version=definition.version,
        )
        self.executions.add(execution)
        self.stats.run_started(execution.workflow_type)
        self.stats.continued += 1
        return execution, self.apply(execution, [start], now, None, "")

    def _park_closed(self, execution: Execution, reason: str) -> OutRecord:
        """Park a closed run whose next run cannot start: visible in its snapshot, and
        retried by the next restore (say, after a deploy that has the workflow type)."""
        if execution.parked is None:
            self.stats.run_parked(execution.workflow_id)
            log.error(
                "workflow %s run %s parked: %s", execution.workflow_id, execution.run_id, reason
            )
        execution.parked = reason
        assert execution.snapshot is not None  # written when the run closed, or restored
        execution.snapshot = dataclasses.replace(execution.snapshot, parked=reason)
        self.view.put(b"k" + execution.workflow_id.encode(), b"")  # retried by a restore
        return self.output.snapshot_as_is(execution)
