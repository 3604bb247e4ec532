"""An operator's reset and repair of a run, carried out on the shard.

A reset (planned by :mod:`~orchestrator.worker.shard.reset`) starts a new run with
the old run's history up to the reset point, terminating the old run first (without
its code when parked). A repair reopens a COMPENSATION_FAILED run.
"""

from __future__ import annotations

from orchestrator.engine import events as ev
from orchestrator.engine import inputs
from orchestrator.engine.children import parent_close_stops
from orchestrator.engine.events import Failure
from orchestrator.engine.registry import WorkflowRegistry, missing_version, pinned_version
from orchestrator.engine.status import WorkflowStatus
from orchestrator.exceptions import NonDeterminismError
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.shard.applying import Apply, ExecutorOf
from orchestrator.worker.shard.closing import RunCloser
from orchestrator.worker.shard.decision_records import DecisionRecords
from orchestrator.worker.shard.due import TimerIndex
from orchestrator.worker.shard.executions import Execution, ExecutionTable
from orchestrator.worker.shard.output import ShardOutput
from orchestrator.worker.shard.records import InRecord, OutRecord
from orchestrator.worker.shard.replies import refusal, reset_reply
from orchestrator.worker.shard.reset import ResetRefusedError, plan_reset
from orchestrator.worker.shard.standby import Replay
from orchestrator.worker.shard.starts import new_run_id
from orchestrator.worker.shard.stats import ShardStats
from orchestrator.worker.shard.translate import to_input
from orchestrator.worker.shard.view import StoreView

__all__ = ["OperatorCommands"]


class OperatorCommands:
    """Carries out ``saga.command.reset`` and ``saga.command.repair`` on one shard."""

    def __init__(
        self,
        *,
        workflows: WorkflowRegistry,
        executions: ExecutionTable,
        view: StoreView,
        wire: WireFormat,
        timers: TimerIndex,
        stats: ShardStats,
        output: ShardOutput,
        decisions: DecisionRecords,
        closer: RunCloser,
        replay: Replay,
        executor_of: ExecutorOf,
        apply: Apply,
    ) -> None:
        self.workflows = workflows
        self.executions = executions
        self.view = view
        self.wire = wire
        self.timers = timers
        self.stats = stats
        self.output = output
        self.decisions = decisions
        self.closer = closer
        self.replay = replay
        self.executor_of = executor_of
        self.apply = apply

    def reset(
        self, old: Execution, command: rec.ResetWorkflow, ce_id: str, msg: InRecord, now: int
    ) -> list[OutRecord]:
        """Start a new run with ``old``'s history up to the reset point, terminating
        ``old`` first if open; refused (nothing written) when the point is not one to
        reset to or the current code does not replay the history up to it."""
        correlation = command.request_id or ce_id
        new_run = new_run_id(f"{old.workflow_id}/reset/{msg.partition}/{msg.offset}")
        # the new run replays the old run's events: it stays on the old run's version
        version = pinned_version(self.executions.events(old))
        definition = self.workflows.get_version(old.workflow_type, version)
        output = self.output
        if definition is None:
            unknown = missing_version(self.workflows, old.workflow_type, version) + " here"
            return [output.reply(reset_reply(command, correlation, old.run_id, unknown))]
        try:
            plan = plan_reset(
                self.executions.events(old),
                old_run_id=old.run_id,
                new_run_id=new_run,
                event_seq=command.event_seq,
                exclude_signals=command.exclude_signals,
                reason=command.reason,
                operator=command.operator,
                before_build=command.before_build,
            )
            executor = self.replay(definition, plan.prefix)
        except (ResetRefusedError, NonDeterminismError) as exc:
            return [output.reply(reset_reply(command, correlation, old.run_id, str(exc)))]
        out: list[OutRecord] = []
        if old.is_open:
            why = f"reset to event {plan.to_seq} as run {new_run}: {command.reason}"
            stop = inputs.TerminateWorkflow(
                reason=why, operator=command.operator, reset_run_id=new_run
            )
            if old.parked is None:
                out += self.apply(old, [stop], now, None, correlation)
            if old.is_open:  # parked (before, or by its replay just now): no code runs
                out += self._terminate_parked(old, stop, now)
        new = Execution(
            old.workflow_id,
            new_run,
            old.workflow_type,
            old.task_queue,
            plan.prefix[0].time,
            parent=old.parent,
            start_request_id=old.start_request_id,
            start_run_id=old.start_run_id,
            traceparent=old.traceparent,
            workflow_version=definition.version,
        )
        self.executions.add(new)
        self.stats.run_started(new.workflow_type)
        output.trace_run = new.traceparent
        for e in plan.prefix:
            out.append(output.event(new, e, self.wire.encode_event(new.workflow_id, new_run, e)))
        new.executor = executor
        out += self.apply(new, plan.signals, now, None, correlation)
        if new.snapshot is None:  # nothing new decided: the new run is current all the same
            out.append(output.snapshot(new, new.executor))
        if new.executor is executor and new.is_open:
            # attempts running at the reset point run again for the new run, with their
            # idempotency keys (the old run's results are refused: they name the old run)
            for task in executor.running_activities():
                if task.activity_seq in plan.scheduled:
                    out += self.decisions.of(new, task)
            self.timers.replace_run(new.workflow_id, new_run, executor.pending_timers())
        return [*out, output.reply(reset_reply(command, correlation, new_run, None))]

    def repair(
        self, execution: Execution, command: rec.RepairWorkflow, ce_id: str, now: int
    ) -> list[OutRecord]:
        """Reopen a COMPENSATION_FAILED run: its code (replayed if evicted) goes on
        compensating. Refused for any other status, or a skip that names no failed
        compensation (the executor says so: nothing is written)."""
        message = None
        if execution.status is not WorkflowStatus.COMPENSATION_FAILED:
            message = (
                f"only a COMPENSATION_FAILED run can be repaired; workflow "
                f"{execution.workflow_id!r} is {execution.status.name}"
            )
        else:
            executor = self.executor_of(execution)
            failed = executor.failed_compensations() if executor is not None else []
            if command.skip is not None and command.skip not in failed:
                message = (
                    f"{command.skip!r} is not a failed compensation of this run; failed: {failed}"
                )
        if message is not None:
            # refused here, not by the executor: applying anything to a closed run
            # would close it again (a second RESULT reply, report and retention entry)
            failure = Failure(message=message, type="CommandRejected", non_retryable=True)
            reply = refusal(command, ce_id, execution.run_id, failure)
            return [] if reply is None else [self.output.reply(reply)]
        out = self.apply(execution, [to_input(command)], now, command, ce_id)
        if execution.is_open:
            # open again: a restore recovers it like any open run (its closing
            # undid this), and its retention waits for its next close
            self.view.put(b"k" + execution.workflow_id.encode(), b"")
        return out

    def _terminate_parked(
        self, execution: Execution, stop: inputs.TerminateWorkflow, now: int
    ) -> list[OutRecord]:
        """End a run its code cannot replay: the terminate event is appended without an
        executor, as terminating runs no code anyway."""
        events = self.executions.events(execution)
        event = ev.WorkflowTerminated(
            seq=events[-1].seq + 1 if events else 1,
            time=max(now, events[-1].time if events else now),
            reason=stop.reason,
            operator=stop.operator,
            reset_run_id=stop.reset_run_id,
        )
        encoded = self.wire.encode_event(execution.workflow_id, execution.run_id, event)
        out = [self.output.event(execution, event, encoded)]
        execution.status = WorkflowStatus.TERMINATED
        execution.parked = None
        self.stats.run_unparked(execution.workflow_id)
        out.append(self.output.snapshot(execution, None))
        for child_stop in parent_close_stops([*events, event], WorkflowStatus.TERMINATED.value):
            out += self.decisions.of(execution, child_stop)
        return out + self.closer.closed(execution)
