"""The records one shard writes: their topic and partition, the trace context in their
headers, and the store writes that go with history records (events, snapshots).

The shard sets :attr:`ShardOutput.trace_command` and :attr:`ShardOutput.trace_run`
while it handles a command or decides for a run; every record built meanwhile carries
the one it follows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from orchestrator.engine.events import Event
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout
from orchestrator.serde import records as rec
from orchestrator.serde.wire import EncodedRecord, WireFormat
from orchestrator.worker.shard.executions import Execution, ExecutionTable, trace_of, with_trace
from orchestrator.worker.shard.records import OutRecord
from orchestrator.worker.shard.snapshots import snapshot_of
from orchestrator.worker.shard.stats import ShardStats
from orchestrator.worker.task_handoff import MAX_START_TO_CLOSE_MS

__all__ = ["ShardOutput"]


class ShardOutput:
    """Builds the output records of the shard on ``partition`` of ``layout``."""

    def __init__(
        self,
        *,
        layout: TopicLayout,
        partition: int,
        wire: WireFormat,
        executions: ExecutionTable,
        stats: ShardStats,
        task_topic: Callable[[str], str],
    ) -> None:
        self.layout = layout
        self.partition = partition
        self.wire = wire
        self.executions = executions
        self.stats = stats
        self.task_topic = task_topic
        #: W3C traceparent of the command being handled, and of the run deciding
        self.trace_command: str | None = None
        self.trace_run: str | None = None

    def out(self, topic: str, encoded: EncodedRecord, partition: int | None = None) -> OutRecord:
        """An output record, carrying the trace context: a reply that of the command it
        answers, any other record that of the run deciding (history records carry their
        own run's already: :func:`with_trace`)."""
        headers: list[tuple[str, bytes | None]] = list(encoded.headers)
        if topic == self.layout.replies:
            trace = self.trace_command or self.trace_run
        else:
            trace = self.trace_run or self.trace_command
        if trace is not None and trace_of(headers) is None:
            headers.append(("traceparent", trace.encode()))
        return OutRecord(topic, encoded.key, encoded.value, partition, headers)

    def event(self, execution: Execution, event: Event, encoded: EncodedRecord) -> OutRecord:
        """A history event of ``execution``'s run, recorded in the store's generation."""
        encoded = with_trace(encoded, execution.traceparent)
        self.executions.record_event(execution, encoded, event)
        return self.out(self.layout.history, encoded, self.partition)

    def task(self, task: rec.ActivityTask) -> OutRecord:
        """An activity attempt, on its task queue's topic; one with a short enough
        start-to-close timeout may be handed to a worker of this process instead
        (orchestrator/worker/task_handoff.py)."""
        record = self.out(self.task_topic(task.task_queue), self.wire.encode_task(task))
        timeout = task.start_to_close_timeout_ms
        if timeout is None or timeout > MAX_START_TO_CLOSE_MS:
            return record
        return dataclasses.replace(record, handoff=True)

    def reply(self, reply: rec.Reply) -> OutRecord:
        return self.out(self.layout.replies, self.wire.encode_reply(reply))

    def report(self, report: rec.ChildWorkflowResult) -> OutRecord:
        """News for a parent run, on the parent's own shard of ``<prefix>.commands``."""
        self.stats.child_reports += 1
        partition = shard_for(report.workflow_id, self.layout.shards)
        return self.out(self.layout.commands, self.wire.encode_command(report), partition)

    def snapshot(self, execution: Execution, executor: WorkflowExecutor | None) -> OutRecord:
        """The run's snapshot now (kept as ``execution.snapshot``), recorded in the store."""
        previous = execution.snapshot
        snapshot = snapshot_of(execution, executor, self.executions.events(execution))
        execution.snapshot = snapshot
        encoded = self.wire.encode_snapshot(snapshot)
        encoded = with_trace(encoded, execution.traceparent)
        previous_run = None if previous is None else previous.run_id
        self.executions.record_snapshot(execution, encoded, previous_run)
        return self.out(self.layout.history, encoded, self.partition)

    def snapshot_as_is(self, execution: Execution) -> OutRecord:
        """``execution.snapshot`` as it stands (already changed by the caller)."""
        assert execution.snapshot is not None
        encoded = self.wire.encode_snapshot(execution.snapshot)
        encoded = with_trace(encoded, execution.traceparent)
        self.executions.record_snapshot(execution, encoded)
        return self.out(self.layout.history, encoded, self.partition)
