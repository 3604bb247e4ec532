"""What each command of a run's decision becomes on the shard: activity tasks (or local
attempts to run this cycle), timer index entries, update replies, activity cancels,
children's starts and stops, and the next run of a continue-as-new.

Everything here goes into the transaction of the decision's events, so it is written
exactly once, with the event that asked for it.
"""

from __future__ import annotations

import time

from orchestrator.engine import commands as cmd
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.task_token import attempt_signature
from orchestrator.worker.shard import children
from orchestrator.worker.shard.due import TimerIndex
from orchestrator.worker.shard.executions import Execution
from orchestrator.worker.shard.local_activities import LocalActivities
from orchestrator.worker.shard.output import ShardOutput
from orchestrator.worker.shard.records import OutRecord
from orchestrator.worker.shard.replies import update_reply
from orchestrator.worker.shard.stats import ShardStats

__all__ = ["DecisionRecords"]


class DecisionRecords:
    """Carries out the commands of decisions on one shard."""

    def __init__(
        self,
        *,
        output: ShardOutput,
        layout: TopicLayout,
        wire: WireFormat,
        timers: TimerIndex,
        stats: ShardStats,
        local: LocalActivities | None,
        token_key: bytes | None,
    ) -> None:
        """``local``: the local activities this worker runs itself (None: none);
        ``token_key``: signs each dispatched attempt (None: tokens are unsigned)."""
        self.output = output
        self.layout = layout
        self.wire = wire
        self.timers = timers
        self.stats = stats
        self.local = local
        self.token_key = token_key
        #: local attempts asked for, not yet run, with the trace context of their decision
        self.local_due: list[tuple[rec.ActivityTask, str | None]] = []

    def of(self, execution: Execution, command: cmd.Command) -> list[OutRecord]:
        """The records of ``command``, decided for ``execution``'s run. A local attempt
        joins :attr:`local_due` instead; a continue-as-new sets ``execution.next_run``
        (the shard starts it once the run closed)."""
        child_stops: list[OutRecord] = []  # the one case that falls through to the end
        match command:
            case cmd.ScheduleActivityTask():
                task = rec.ActivityTask(
                    workflow_id=command.workflow_id,
                    run_id=command.run_id,
                    activity_seq=command.activity_seq,
                    activity_type=command.activity_type,
                    attempt=command.attempt,
                    task_queue=command.task_queue,
                    scheduled_time=command.attempt_started_at,
                    args=list(command.args),
                    start_to_close_timeout_ms=command.start_to_close_ms,
                    heartbeat_timeout_ms=command.heartbeat_timeout_ms,
                    heartbeat_details=list(command.heartbeat_details),
                    idempotency_key=command.idempotency_key,
                    priority=command.priority,
                    fairness_key=command.fairness_key,
                    token_signature=self._sign(command),
                )
                if command.local and self.local and self.local.handles(command.activity_type):
                    # run by the shard's fire_due, this cycle
                    self.local_due.append((task, self.output.trace_run))
                    return []
                return [self.output.task(task)]
            case cmd.StartTimer():
                timer_id, fire_at = command.timer_id, command.fire_at
                self.timers.set(execution.workflow_id, execution.run_id, timer_id, fire_at)
            case cmd.CancelTimer():
                self.timers.cancel(execution.workflow_id, execution.run_id, command.timer_id)
            case cmd.RespondUpdate():
                return [self.output.reply(update_reply(command, execution))]
            case cmd.CancelActivityTask():
                return self._cancel_record(execution, command)
            case cmd.StartChildWorkflow():
                # to the child's own shard; exactly once, with the event that asked for it
                self.stats.children_started += 1
                start = children.child_start(command)
                ce_id = children.child_start_id(
                    execution.workflow_id, execution.run_id, command.child_seq
                )
                partition = shard_for(start.workflow_id, self.layout.shards)
                encoded = self.wire.encode_command(start, ce_id=ce_id)
                return [self.output.out(self.layout.commands, encoded, partition)]
            case cmd.ContinueAsNewRun():
                execution.next_run = command.start  # started by the shard once this run closed
            case cmd.StopChildWorkflow():
                child_stops.append(self._stop_child(execution, command))
        return child_stops

    def _sign(self, task: cmd.ScheduleActivityTask) -> str:
        if self.token_key is None:
            return ""
        return attempt_signature(
            self.token_key, task.workflow_id, task.run_id, task.activity_seq, task.attempt
        )

    def _cancel_record(
        self, execution: Execution, command: cmd.CancelActivityTask
    ) -> list[OutRecord]:
        """The record that stops a dispatched attempt at its worker, written in the
        transaction that records ActivityCancelRequested (the attempt's late outcome
        is ignored either way). None for an attempt no worker has: one waiting for a
        retry, or a local activity this engine worker runs (not interrupted yet)."""
        if not command.dispatched or not command.task_queue:
            return []
        if command.local and self.local and self.local.handles(command.activity_type):
            return []
        cancel = rec.ActivityCancel(
            workflow_id=execution.workflow_id,
            run_id=execution.run_id,
            activity_seq=command.activity_seq,
            attempt=command.attempt,
            task_queue=command.task_queue,
            activity_type=command.activity_type,
            requested_time=int(time.time() * 1000),
        )
        self.stats.activity_cancels += 1
        encoded = self.wire.encode_cancel(cancel)
        return [self.output.out(self.layout.activity_cancels, encoded, 0)]

    def _stop_child(self, execution: Execution, command: cmd.StopChildWorkflow) -> OutRecord:
        """A parent's cancel or terminate of its child, to the child's own shard; exactly
        once, with the event that asked for it. It follows the child's start there (same
        partition, written earlier or in this very transaction)."""
        stop, ce_id = children.stop_command(execution.workflow_id, execution.run_id, command)
        partition = shard_for(command.workflow_id, self.layout.shards)
        encoded = self.wire.encode_command(stop, ce_id=ce_id, source=children.PARENT_SOURCE)
        return self.output.out(self.layout.commands, encoded, partition)
