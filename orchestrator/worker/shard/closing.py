"""What a run's close does on the shard: it leaves the parked set, its timers and
heartbeats are cleared, its retention starts, and (unless it continued as new or a
reset ended it) its parent hears of it and the RESULT reply is written.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.engine import events as ev
from orchestrator.engine.events import Event
from orchestrator.engine.status import WorkflowStatus
from orchestrator.worker.shard import children
from orchestrator.worker.shard.due import TimerIndex
from orchestrator.worker.shard.executions import Execution, ExecutionTable
from orchestrator.worker.shard.heartbeats import HeartbeatStore
from orchestrator.worker.shard.output import ShardOutput
from orchestrator.worker.shard.records import OutRecord
from orchestrator.worker.shard.replies import result_reply
from orchestrator.worker.shard.retention import Retention
from orchestrator.worker.shard.snapshots import outcome
from orchestrator.worker.shard.stats import ShardStats
from orchestrator.worker.shard.view import StoreView

__all__ = ["RunCloser", "only_workflow_timers"]


class RunCloser:
    """Closes runs on one shard (their closing event and snapshot are written already)."""

    def __init__(
        self,
        *,
        view: StoreView,
        executions: ExecutionTable,
        timers: TimerIndex,
        heartbeats: HeartbeatStore,
        retention: Retention,
        stats: ShardStats,
        output: ShardOutput,
    ) -> None:
        self.view = view
        self.executions = executions
        self.timers = timers
        self.heartbeats = heartbeats
        self.retention = retention
        self.stats = stats
        self.output = output

    def closed(self, execution: Execution) -> list[OutRecord]:
        """The records and store writes of ``execution``'s run having closed."""
        self.executions.drop_executor(execution)
        parked = b"k" + execution.workflow_id.encode()
        if self.view.get(parked) is not None:  # rare: a point read, not a tombstone per close
            self.view.delete(parked)
        events = self.executions.events(execution)
        result, failure = outcome(execution, events)
        timer_ids = only_workflow_timers(events)
        if timer_ids is None:
            self.timers.clear_run(execution.workflow_id, execution.run_id)
        else:
            self.timers.clear_timers(execution.workflow_id, execution.run_id, timer_ids)
        if any(isinstance(e, ev.ActivityScheduled) for e in events):
            # only an activity heartbeats: a run that scheduled none has nothing to clear
            self.heartbeats.clear_run(execution.workflow_id, execution.run_id)
        self.stats.run_closed(execution.workflow_type, execution.status, events)
        last = events[-1] if events else None
        self.retention.closed(
            last.time if last else execution.start_time,
            execution.workflow_id,
            execution.run_id,
            last.seq if last else 0,
        )
        if execution.status is WorkflowStatus.CONTINUED_AS_NEW:
            # not the end of the workflow: the next run replies (and reports); the
            # events stay until it starts (its start reads the last one after a restore)
            return []
        if isinstance(last, ev.WorkflowTerminated) and last.reset_run_id:
            # ended by a reset: the run that replaces it replies (and reports) at its end
            self.executions.release_events(execution)
            return []
        self.executions.release_events(execution)  # on disk until retention
        out: list[OutRecord] = []
        if execution.parent is not None and last is not None:
            report = children.closed_report(
                execution.parent, execution.workflow_id, execution.run_id, last
            )
            out.append(self.output.report(report))
        out.append(self.output.reply(result_reply(execution, result, failure)))
        return out


#: events after which a run can hold no timer but its code's own (``timer/<n>``, each
#: named by a TimerStarted): no activity, child, pause or execution timeout timers
_TIMER_ONLY = (
    ev.WorkflowStarted,
    ev.TimerStarted,
    ev.TimerFired,
    ev.TimerCancelled,
    ev.WorkflowCompleted,
    ev.WorkflowFailed,
)


def only_workflow_timers(events: Sequence[Event]) -> list[str] | None:
    """The ids of the timers a run whose history holds only workflow timers started,
    or None when the run may hold other timers too (its index entries are scanned)."""
    timer_ids: list[str] = []
    for event in events:
        if type(event) not in _TIMER_ONLY:
            return None
        if isinstance(event, ev.TimerStarted):
            timer_ids.append(event.timer_id)
        elif isinstance(event, ev.WorkflowStarted) and event.execution_deadline is not None:
            return None
    return timer_ids
