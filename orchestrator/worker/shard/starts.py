"""Start commands on the shard: a new run, the answer to a start for an id that has a
run (idempotent start, repeated start, signal-with-start), TERMINATE_IF_RUNNING, and a
child's refused start. Which of these a start gets is
:func:`~orchestrator.worker.shard.start_policy.verdict`'s call.
"""

from __future__ import annotations

import uuid

from orchestrator.engine import inputs
from orchestrator.engine.events import Failure
from orchestrator.engine.registry import WorkflowRegistry
from orchestrator.log.topics import TopicLayout
from orchestrator.serde import records as rec
from orchestrator.worker.shard import children
from orchestrator.worker.shard.applying import Apply
from orchestrator.worker.shard.dlq import dead_letter
from orchestrator.worker.shard.executions import Execution, ExecutionTable
from orchestrator.worker.shard.output import ShardOutput
from orchestrator.worker.shard.records import InRecord, OutRecord
from orchestrator.worker.shard.replies import (
    existing_run_reply,
    started_reply,
    unknown_type_reply,
)
from orchestrator.worker.shard.start_policy import (
    StartVerdict,
    repeat_reply,
    replaced_reason,
    request_id_of,
    verdict,
)
from orchestrator.worker.shard.stats import ShardStats
from orchestrator.worker.shard.translate import start_inputs

__all__ = ["RUN_ID_NAMESPACE", "Starts", "new_run_id"]

RUN_ID_NAMESPACE = uuid.UUID("5b0f9a43-58c3-4d4e-9a55-3c4c2b7f6e10")


def new_run_id(name: str) -> str:
    """The run id derived from ``name`` (the workflow id and the offset of the command
    that began the run), so a reprocessed command would give the same id."""
    return str(uuid.uuid5(RUN_ID_NAMESPACE, name))


class Starts:
    """Handles ``saga.command.start`` records on one shard."""

    def __init__(
        self,
        *,
        workflows: WorkflowRegistry,
        executions: ExecutionTable,
        layout: TopicLayout,
        stats: ShardStats,
        output: ShardOutput,
        apply: Apply,
    ) -> None:
        self.workflows = workflows
        self.executions = executions
        self.layout = layout
        self.stats = stats
        self.output = output
        self.apply = apply

    def start(
        self, start: rec.StartWorkflow, ce_id: str, msg: InRecord, now: int
    ) -> list[OutRecord]:
        """The records of ``start`` (consumed as ``msg``, CloudEvents id ``ce_id``)."""
        correlation = request_id_of(start, ce_id)
        existing = self.executions.get(start.workflow_id)
        decided = verdict(start, ce_id, existing)
        if decided is StartVerdict.START:
            return self._new_run(start, correlation, msg, now)
        assert existing is not None
        if decided is StartVerdict.REPEAT:  # the first send's reply again, and nothing else
            if start.parent is not None:
                return []  # the parent heard STARTED with the first send, in its transaction
            return [self.output.reply(repeat_reply(start, ce_id, existing))]
        if decided is StartVerdict.REPLACE:
            return self._replace(start, ce_id, existing, msg, now)
        if start.parent is not None:  # a child's start: its parent hears of the refusal
            return [self._child_refused(start, existing)]
        # idempotent start: the same business id never gets a second running execution
        reply = existing_run_reply(start, correlation, existing.run_id, running=existing.is_open)
        signalled = self._signal_with_start(existing, start, now, correlation)
        return [*signalled, self.output.reply(reply)]

    def _replace(
        self, start: rec.StartWorkflow, ce_id: str, running: Execution, msg: InRecord, now: int
    ) -> list[OutRecord]:
        """TERMINATE_IF_RUNNING: terminate the running run and start the new one, in one
        decision (one transaction). A parked run is not touched: the start goes to the DLQ,
        as does a start of an unknown type (refused by :meth:`_new_run`)."""
        correlation = request_id_of(start, ce_id)
        if start.workflow_type not in self.workflows:
            return self._new_run(start, correlation, msg, now)
        if running.parked is None:
            stop = [inputs.TerminateWorkflow(reason=replaced_reason(start, ce_id))]
            out = self.apply(running, stop, now, None, correlation)
            if not running.is_open:
                return out + self._new_run(start, correlation, msg, now)
        self.stats.dead_lettered += 1  # parked before, or by the replay just now
        return [dead_letter(self.layout.dlq, msg, f"workflow is parked: {running.parked}")]

    def _new_run(
        self, start: rec.StartWorkflow, correlation: str, msg: InRecord, now: int
    ) -> list[OutRecord]:
        definition = self.workflows.get_version(start.workflow_type)  # the newest
        if definition is None:
            # kept in the DLQ (`saga dlq redrive` after a deploy that has the type); a
            # waiting caller hears why at once instead of timing out
            self.stats.dead_lettered += 1
            reason = (
                f"unknown workflow type {start.workflow_type!r}; this worker "
                f"knows {self.workflows.describe()}"
            )
            refused = unknown_type_reply(start, correlation, reason)
            return [dead_letter(self.layout.dlq, msg, reason), self.output.reply(refused)]
        run_id = new_run_id(f"{start.workflow_id}/{msg.partition}/{msg.offset}")
        parent = start.parent
        execution = Execution(
            start.workflow_id,
            run_id,
            start.workflow_type,
            start.task_queue,
            now,
            parent=parent,
            start_request_id=correlation,
            start_run_id=run_id,
            traceparent=self.output.trace_command,
            workflow_version=definition.version,
        )
        self.executions.add(execution)
        self.stats.run_started(execution.workflow_type)
        first = start_inputs(start, run_id, now, correlation)
        if parent is not None:
            # reported before the run's first decision, which may already close it
            report = self.output.report(children.started_report(parent, start.workflow_id, run_id))
            return [report, *self.apply(execution, first, now, None, correlation)]
        out = self.apply(execution, first, now, None, correlation)
        out.append(self.output.reply(started_reply(start, correlation, run_id)))
        return out

    def _signal_with_start(
        self, existing: Execution, start: rec.StartWorkflow, now: int, correlation: str
    ) -> list[OutRecord]:
        """Signal-with-start on a running id: the running run gets the signal."""
        signal = start.signal_with_start
        if signal is None or not existing.is_open or existing.parked is not None:
            return []
        send = inputs.SendSignal(
            name=signal.signal_name, args=list(signal.args), request_id=correlation
        )
        return self.apply(existing, [send], now, None, correlation)

    def _child_refused(self, start: rec.StartWorkflow, existing: Execution) -> OutRecord:
        assert start.parent is not None
        policy = start.id_reuse_policy.value
        state = "is running" if existing.is_open else f"was used (reuse policy {policy})"
        failure = Failure(
            message=f"workflow id {start.workflow_id!r} {state} as run {existing.run_id}",
            type="WorkflowAlreadyStarted",
            non_retryable=True,
        )
        report = children.refused_report(start.parent, start.workflow_id, failure)
        return self.output.report(report)
