"""A standby copy of a shard another worker owns (``saga worker --standby``).

The processor tails the shard's history into the local store (the same ingest as a
restore); this module then, a slice at a time, indexes the timers of the open runs
the tail touched (read off their events, or by a replay), so a promotion finds the
timer index ready and reads only the last moments of history. It writes nothing
to Kafka: every store write is derived from committed history and applied at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from orchestrator.engine.events import Event
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.registry import WorkflowRegistry, pinned_version
from orchestrator.engine.status import WorkflowStatus
from orchestrator.engine.timer_fold import folded_timers
from orchestrator.worker.shard.due import TimerIndex
from orchestrator.worker.shard.executions import ExecutionTable
from orchestrator.worker.shard.view import StoreView
from orchestrator.workflow import WorkflowDefinition

#: replays a run's events with the worker's code (build id, converter)
Replay = Callable[[WorkflowDefinition, list[Event]], WorkflowExecutor]


class StandbyWarmer:
    """Indexes the timers of runs a standby copy's tail touched."""

    def __init__(
        self,
        view: StoreView,
        executions: ExecutionTable,
        timers: TimerIndex,
        workflows: WorkflowRegistry,
        replay: Replay,
    ) -> None:
        self.view = view
        self.executions = executions
        self.timers = timers
        self.workflows = workflows
        self.replay = replay

    def warm_some(self, limit: int, budget_ms: float) -> bool:
        """Up to ``limit`` runs of the recovery set within ``budget_ms`` (at least one).
        Runs that need more than timers (parked, continued as new, not replayable by
        this build) move to the parked set: the recovery that follows a promotion
        handles them. True while there is more to do."""
        batch = list(self.view.scan(b"v", limit))
        deadline = time.monotonic() + budget_ms / 1000
        done = 0
        for key, _ in batch:
            if done and time.monotonic() >= deadline:
                break
            done += 1
            self.view.delete(key)
            self._warm(key[1:].decode())
        self.view.apply_open()  # nothing to commit: these are derived from the log
        return done < len(batch) or len(batch) == limit

    def _warm(self, workflow_id: str) -> None:
        execution = self.executions.get(workflow_id)
        if execution is None:
            return
        ready = execution.is_open and execution.parked is None
        definition = None
        if ready:
            events = self.executions.events(execution)
            # the version the run is pinned to; one this worker lacks is left to the
            # owner's recovery after a promotion, which parks it
            version = pinned_version(events)
            definition = self.workflows.get_version(execution.workflow_type, version)
            ready = definition is not None
        if ready and definition is not None:
            timers = folded_timers(events)  # a sleeping run needs no replay
            if timers is None:
                try:
                    executor = self.replay(definition, events)
                except Exception:  # noqa: BLE001 - the owner's replay after promotion decides
                    ready = False
                else:
                    timers = executor.pending_timers()
                    executor.evict()
            if timers is not None:
                self.timers.replace_run(execution.workflow_id, execution.run_id, timers)
        continued = execution.status is WorkflowStatus.CONTINUED_AS_NEW
        if not ready and (execution.is_open or continued):
            self.view.put(b"k" + workflow_id.encode(), b"")  # recovered after a promotion
        self.executions.evict(execution)
