"""The blocking client on confluent-kafka: a producer for commands, a thread for replies."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from confluent_kafka import (
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)

from orchestrator.batch.spec import (
    BATCH_TASK_QUEUE,
    BATCH_WORKFLOW,
    BatchFilter,
    BatchOperation,
    batch_workflow_id,
)
from orchestrator.client._activities import complete_command, fail_command, heartbeat_command
from orchestrator.client._batch import BatchHandle, new_batch
from orchestrator.client._common import (
    NO_INPUT,
    REPLY_FETCH_WAIT_MS,
    CommandBuilder,
    OutgoingCommand,
    ReplyBuffer,
    ReplyTimeoutError,
    RunHistory,
    WorkflowDescription,
    WorkflowNotFoundError,
    resolve_config,
    result_correlation_id,
    workflow_result_type,
)
from orchestrator.client._pauses import pause_record
from orchestrator.client._schedules import ScheduleHandle, new_schedule
from orchestrator.config import Settings
from orchestrator.converter import DataConverter
from orchestrator.engine.events import Event
from orchestrator.engine.stack import STACK_QUERY, TaskStack
from orchestrator.exceptions import WorkflowFailedError
from orchestrator.log.consuming import consume_available
from orchestrator.log.headers import headers_of
from orchestrator.log.producing import PROMPT_PRODUCER
from orchestrator.log.topics import TopicLayout
from orchestrator.retry import RetryPolicy
from orchestrator.schedules.spec import ScheduleAction, SchedulePolicy, ScheduleSpec
from orchestrator.schedules.workflow import (
    SCHEDULE_TASK_QUEUE,
    SCHEDULE_WORKFLOW,
    schedule_workflow_id,
)
from orchestrator.serde.errors import RecordDecodeError
from orchestrator.serde.records import ActivityPause, IdReusePolicy, Reply, WorkflowSnapshot
from orchestrator.serde.wire import WireFormat

if TYPE_CHECKING:
    from orchestrator.engine.saga import Saga
    from orchestrator.flow.scheduler import FlowConfig
    from orchestrator.serde.records import FlowState
    from orchestrator.workflow import WorkflowDefinition

__all__ = ["Client", "WorkflowHandle"]

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")
_TIMEOUT_S = 30.0


class Client:
    """Starts and talks to workflows (blocking). Thread-safe; close it when done.

    ``config`` is a :class:`~orchestrator.config.Settings` or a librdkafka config
    dict (then ``layout`` names the topics). Security settings pass through as is.
    On creation the client reads the partition count of ``<prefix>.commands`` and
    starts following ``<prefix>.replies`` from its end.
    """

    def __init__(
        self,
        config: Settings | Mapping[str, Any],
        *,
        layout: TopicLayout | None = None,
        converter: DataConverter | None = None,
        wire: WireFormat | None = None,
        source: str = "/saga/client",
    ) -> None:
        self._kafka, self.layout = resolve_config(config, layout)
        self._producer = Producer({**self._kafka, **PROMPT_PRODUCER})
        shards = _partitions(self._producer, self.layout.commands)
        self.builder = CommandBuilder(
            wire or WireFormat(source=source),
            converter or DataConverter(),
            shards,
            source=source,
            topic=self.layout.commands,
        )
        self._replies = ReplyBuffer(topic=self.layout.replies)
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._listener = _consumer(self._kafka)
        partitions = _partitions(self._producer, self.layout.replies)
        ends = [
            TopicPartition(self.layout.replies, p, _end(self._listener, self.layout.replies, p))
            for p in range(partitions)
        ]
        self._listener.assign(ends)
        self._thread = threading.Thread(target=self._listen, name="saga-replies", daemon=True)
        self._thread.start()

    # --- public API -------------------------------------------------------------

    @overload
    def start(
        self,
        workflow: Callable[..., Awaitable[R]],
        input: Any = NO_INPUT,
        *,
        id: str,
        task_queue: str,
        args: Sequence[Any] | None = None,
        id_reuse_policy: IdReusePolicy = IdReusePolicy.ALLOW_DUPLICATE,
        search_attributes: Mapping[str, Any] | None = None,
        memo: Mapping[str, Any] | None = None,
        execution_timeout: timedelta | None = None,
        start_signal: str | None = None,
        start_signal_args: Sequence[Any] = (),
        traceparent: str | None = None,
        wait_started: float | None = None,
        priority: int = 0,
        fairness_key: str = "",
    ) -> WorkflowHandle[R]: ...
    @overload
    def start(
        self,
        workflow: str | type[Any] | WorkflowDefinition | Saga,
        input: Any = NO_INPUT,
        *,
        id: str,
        task_queue: str,
        args: Sequence[Any] | None = None,
        id_reuse_policy: IdReusePolicy = IdReusePolicy.ALLOW_DUPLICATE,
        search_attributes: Mapping[str, Any] | None = None,
        memo: Mapping[str, Any] | None = None,
        execution_timeout: timedelta | None = None,
        start_signal: str | None = None,
        start_signal_args: Sequence[Any] = (),
        traceparent: str | None = None,
        wait_started: float | None = None,
        priority: int = 0,
        fairness_key: str = "",
    ) -> WorkflowHandle[Any]: ...
    def start(
        self,
        workflow: Any,
        input: Any = NO_INPUT,
        *,
        id: str,
        task_queue: str,
        args: Sequence[Any] | None = None,
        id_reuse_policy: IdReusePolicy = IdReusePolicy.ALLOW_DUPLICATE,
        search_attributes: Mapping[str, Any] | None = None,
        memo: Mapping[str, Any] | None = None,
        execution_timeout: timedelta | None = None,
        start_signal: str | None = None,
        start_signal_args: Sequence[Any] = (),
        traceparent: str | None = None,
        wait_started: float | None = None,
        priority: int = 0,
        fairness_key: str = "",
    ) -> WorkflowHandle[Any]:
        """Send a start command (returns once Kafka has it); ``workflow`` is a name or a
        ``@workflow.defn`` target. Starting an id that is running is a no-op.

        With ``wait_started=seconds``, also wait for the shard's START reply: the
        handle's ``run_id`` is then the run the id maps to (a new run, or the one
        already running), a refused start raises ApplicationError (type
        ``WorkflowAlreadyStarted``), and no reply in time raises ReplyTimeoutError.

        ``priority`` and ``fairness_key`` are the run's on flow-controlled queues: its
        activities and child workflows that name none take them, and continue-as-new
        keeps them (docs/flow-control.md).
        """
        handle = self.get_handle(id, result_type=workflow_result_type(workflow))
        out = self.builder.start(
            workflow,
            input,
            id=id,
            task_queue=task_queue,
            args=args,
            id_reuse_policy=id_reuse_policy,
            search_attributes=search_attributes,
            memo=memo,
            execution_timeout=execution_timeout,
            start_signal=start_signal,
            start_signal_args=start_signal_args,
            traceparent=traceparent,
            priority=priority,
            fairness_key=fairness_key,
        )
        handle.start_request_id = out.correlation_id
        if wait_started is None:
            self._send(out)
        else:
            reply = self._request(out, wait_started)
            self.builder.reply_value(reply)  # raises when the shard refused the start
            handle.run_id = reply.run_id
        # The reply listener was at the end of the replies topic before this start, and
        # the run this start maps to is open (new, or running already; a refusal raised
        # above or needs a reuse policy other than the default): its RESULT reply comes
        # after now, so result() need not scan history for an earlier close.
        if wait_started is not None or id_reuse_policy is IdReusePolicy.ALLOW_DUPLICATE:
            handle._evicted_at_start = self._replies.evicted
        return handle

    def create_schedule(
        self,
        schedule_id: str,
        spec: ScheduleSpec,
        action: ScheduleAction,
        policy: SchedulePolicy | None = None,
        *,
        paused: bool = False,
        note: str = "",
        timeout: float = 30.0,
    ) -> ScheduleHandle:
        """Create a schedule (docs/schedules.md) and wait until its run has started.

        ValueError lists what is wrong with the spec or policy. Creating an id whose
        schedule exists leaves that schedule as it is (change it with ``update``).
        """
        workflow_id, state = new_schedule(
            schedule_id, spec, action, policy, paused=paused, note=note
        )
        handle = self.start(
            SCHEDULE_WORKFLOW, state, id=workflow_id, task_queue=SCHEDULE_TASK_QUEUE,
            wait_started=timeout,
        )
        return ScheduleHandle(handle, schedule_id)

    def start_batch(
        self,
        batch_id: str,
        operation: BatchOperation,
        filter: BatchFilter,
        *,
        rate: float = 10.0,
        page_size: int = 100,
        allow_all: bool = False,
        timeout: float = 30.0,
    ) -> BatchHandle:
        """Start a batch job (docs/batch.md): ``operation`` on every run ``filter``
        matches, ``rate`` operations per second at most (0: unpaced), ``page_size`` runs
        per page. Waits until its run has started. ValueError lists what is wrong; an
        empty filter is refused unless ``allow_all``. Starting an id whose batch runs
        leaves that batch as it is; an id whose batch has ended is refused
        (ApplicationError type ``WorkflowAlreadyStarted``) until its retention ends.
        """
        workflow_id, state = new_batch(
            batch_id, operation, filter, rate=rate, page_size=page_size, allow_all=allow_all
        )
        handle = self.start(
            BATCH_WORKFLOW, state, id=workflow_id, task_queue=BATCH_TASK_QUEUE,
            id_reuse_policy=IdReusePolicy.REJECT_DUPLICATE, wait_started=timeout,
        )
        return BatchHandle(handle, batch_id)

    def batch_handle(self, batch_id: str) -> BatchHandle:
        """A handle to an existing batch (no I/O)."""
        return BatchHandle(self.get_handle(batch_workflow_id(batch_id)), batch_id)

    def schedule_handle(self, schedule_id: str) -> ScheduleHandle:
        """A handle to an existing schedule (no I/O)."""
        return ScheduleHandle(self.get_handle(schedule_workflow_id(schedule_id)), schedule_id)

    def complete_activity(
        self, token: str, result: Any = None, *, wait: float | None = 10.0
    ) -> None:
        """Complete the activity attempt ``token`` names with ``result`` (after the
        activity raised ``activity.CompleteAsync``), and wait up to ``wait`` seconds for
        the engine's answer. ActivityNotRunningError if that attempt is not the running
        one (it ended, timed out, was retried; a second completion is refused so),
        WorkflowNotFoundError / WorkflowClosedError if its run is gone or closed: then
        nothing changed. ReplyTimeoutError if no answer came; InvalidTaskTokenError for
        a malformed token. ``wait=None``: return once Kafka has the command, unanswered."""
        out = complete_command(self.builder, token, result, reply=wait is not None)
        self._deliver(out, wait)

    def fail_activity(
        self,
        token: str,
        message: str,
        *,
        error_type: str = "ApplicationError",
        non_retryable: bool = False,
        details: Sequence[Any] = (),
        wait: float | None = 10.0,
    ) -> None:
        """Fail the activity attempt ``token`` names; the workflow's retry policy
        decides what follows (``non_retryable`` ends the activity now). Answered and
        refused like :meth:`complete_activity`."""
        out = fail_command(
            self.builder,
            token,
            message,
            error_type=error_type,
            non_retryable=non_retryable,
            details=details,
            reply=wait is not None,
        )
        self._deliver(out, wait)

    def heartbeat_activity(
        self, token: str, *details: Any, wait: float | None = 10.0
    ) -> None:
        """Heartbeat the attempt ``token`` names (keeps its heartbeat timeout from
        passing; ``details`` go to a retry). Answered and refused like
        :meth:`complete_activity`."""
        out = heartbeat_command(self.builder, token, details, reply=wait is not None)
        self._deliver(out, wait)

    # --- flow control of task queues (docs/flow-control.md) ---------------------

    def configure_task_queue(self, config: FlowConfig) -> None:
        """Put ``config.queue`` under flow control, or change its settings: creates its
        backlog and state topics and writes the config. A ``saga dispatcher`` for the
        queue must run, or its tasks wait in the backlog. KafkaException if Kafka
        refused the write."""
        from orchestrator.flow.configs import configure_queue

        configure_queue(self._kafka, self.layout, config, wire=self.builder.wire)

    def remove_task_queue_flow_control(self, queue: str) -> None:
        """Send ``queue``'s new tasks straight to its topic again (KafkaException if
        Kafka refused the write)."""
        from orchestrator.flow.configs import write_config

        write_config(self._kafka, self.layout, None, queue, wire=self.builder.wire)

    def describe_task_queue(self, queue: str) -> tuple[FlowConfig | None, FlowState | None]:
        """``queue``'s flow control (None: none) and its dispatcher's last committed
        state (None: nothing released yet): waiting per priority and key, released and
        throttled counts, as ``saga queue describe`` shows them."""
        from orchestrator.flow.configs import describe_queue

        return describe_queue(self._kafka, self.layout, queue)

    # --- pausing activity types (docs/operations.md) -------------------------------

    def pause_activity_type(
        self, task_queue: str, activity_type: str, *, reason: str = "",
        operator: str | None = None,
    ) -> ActivityPause:
        """Pause ``activity_type`` on ``task_queue``: its workers hold its tasks (no
        attempt starts, none fails) until :meth:`unpause_activity_type`. Returns the
        record written, once Kafka has it (KafkaException if Kafka refused it).
        ``operator`` defaults to the login name."""
        from orchestrator.worker.activity_pauses import write_pause

        record = pause_record(
            task_queue, activity_type, paused=True, reason=reason, operator=operator
        )
        write_pause(self._kafka, self.layout, record, self.builder.wire, self._producer)
        return record

    def unpause_activity_type(
        self, task_queue: str, activity_type: str, *, reason: str = "",
        operator: str | None = None,
    ) -> ActivityPause:
        """Unpause ``activity_type`` on ``task_queue``: the held tasks start."""
        from orchestrator.worker.activity_pauses import write_pause

        record = pause_record(
            task_queue, activity_type, paused=False, reason=reason, operator=operator
        )
        write_pause(self._kafka, self.layout, record, self.builder.wire, self._producer)
        return record

    def paused_activity_types(self, task_queue: str | None = None) -> list[ActivityPause]:
        """The activity types paused now (of one queue, or of every queue)."""
        from orchestrator.worker.activity_pauses import read_pauses

        return read_pauses(self._kafka, self.layout, task_queue)

    @overload
    def get_handle(
        self, workflow_id: str, run_id: str | None = None, *, result_type: type[R]
    ) -> WorkflowHandle[R]: ...
    @overload
    def get_handle(
        self, workflow_id: str, run_id: str | None = None, *, result_type: Any = None
    ) -> WorkflowHandle[Any]: ...
    def get_handle(
        self, workflow_id: str, run_id: str | None = None, *, result_type: Any = None
    ) -> WorkflowHandle[Any]:
        """A handle to an existing workflow id (no I/O). ``result_type`` is what
        :meth:`WorkflowHandle.result` decodes the result into (default: plain JSON values)."""
        return WorkflowHandle(self, workflow_id, run_id, result_type=result_type)

    def close(self) -> None:
        """Flush pending commands and stop following replies."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join(_TIMEOUT_S)
        self._producer.flush(_TIMEOUT_S)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- machinery --------------------------------------------------------------

    def _send(self, out: OutgoingCommand) -> None:
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        record = out.record
        self._producer.produce(
            self.layout.commands,
            value=record.value,
            key=record.key,
            partition=out.partition,
            headers=list[tuple[str, str | bytes | None]](record.headers),
            on_delivery=delivered,
        )
        if self._producer.flush(_TIMEOUT_S) > 0:
            raise ReplyTimeoutError(f"command not acknowledged by Kafka in {_TIMEOUT_S:.0f}s")
        if errors:
            raise KafkaException(errors[0])

    def _deliver(self, out: OutgoingCommand, wait: float | None) -> None:
        """Send; with ``wait`` seconds, wait for the reply and raise if it refused."""
        if wait is None:
            self._send(out)
        else:
            self.builder.reply_value(self._request(out, wait))

    def _request(self, out: OutgoingCommand, timeout: float | None) -> Reply:
        with self._cond:
            self._replies.want(out.correlation_id)
        try:
            self._send(out)
            return self._wait(out.correlation_id, timeout, "reply")
        finally:
            with self._cond:
                self._replies.forget(out.correlation_id)

    def _wait(
        self, correlation_id: str, timeout: float | None, what: str, *also: str
    ) -> Reply:
        """The reply to ``correlation_id`` (or to any of ``also``, whichever comes first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                for wanted in (correlation_id, *also):
                    reply = self._replies.take(wanted)
                    if reply is not None:
                        return reply
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ReplyTimeoutError(
                        f"no {what} for {correlation_id!r} on {self.layout.replies} within "
                        f"{timeout:.1f}s; is an engine worker running for prefix "
                        f"{self.layout.prefix!r}?"
                    )
                if self._closed.is_set():
                    raise ReplyTimeoutError("client closed while waiting for a reply")
                self._cond.wait(0.5 if left is None else min(left, 0.5))

    def _listen(self) -> None:
        wire = self.builder.wire
        try:
            while not self._closed.is_set():
                messages = consume_available(self._listener, 500, 0.1)
                if not messages:
                    continue
                with self._cond:
                    for msg in messages:
                        if msg.error() is not None:
                            continue
                        try:
                            reply = wire.decode_reply(headers_of(msg), msg.value())
                        except RecordDecodeError as exc:
                            log.warning("undecodable reply skipped: %s", exc)
                            continue
                        self._replies.offer(reply.record, reply.cloud_event.traceparent)
                    self._cond.notify_all()
        finally:
            self._listener.close()

    def _snapshot(self, workflow_id: str, timeout: float) -> WorkflowSnapshot | None:
        """The latest snapshot of ``workflow_id``, read from the shard that owns it."""
        b = self.builder
        return b.page_snapshot(b.page(self._request(b.describe_read(workflow_id), timeout)))

    def fetch_history(
        self, workflow_id: str, run_id: str | None = None, timeout: float = 30.0
    ) -> RunHistory:
        """One run's events (the latest run's by default), read page by page from the
        shard that owns the workflow id; ReplyTimeoutError if no engine worker answers."""
        b = self.builder
        deadline = time.monotonic() + timeout
        snapshot = self._snapshot(workflow_id, timeout)
        chosen = run_id or (snapshot.run_id if snapshot is not None else None)
        events: list[Event] = []
        after: int | None = 0
        while chosen is not None and after is not None:
            left = max(0.0, deadline - time.monotonic())
            page = b.page(self._request(b.history_read(workflow_id, chosen, after), left))
            if page is None:
                break
            events += b.page_events(page)
            after = page.next_seq
        return RunHistory(snapshot, chosen, events)


class WorkflowHandle(Generic[R]):
    """One workflow id (and optionally one run of it)."""

    def __init__(
        self, client: Client, workflow_id: str, run_id: str | None = None,
        *, result_type: Any = None,
    ) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.start_request_id: str | None = None
        """Correlation id of the START reply, when this handle sent the start."""
        self.result_type: Any = result_type
        """What :meth:`result` decodes the run's result into when the call names no
        type: the workflow's return annotation when the handle comes from ``start``
        with a ``@workflow.defn`` target, else None (plain JSON values)."""
        # set by start(): how many RESULT replies the client had dropped then (None: not
        # started here); unchanged at result() time means this run's reply cannot be lost
        self._evicted_at_start: int | None = None
        # RESULT replies the client had seen when this handle was made: a kept one that
        # came before may be an earlier run's (the id started again, or reset since)
        self._results_seen_at_creation = client._replies.results_seen

    def signal(
        self,
        name: str,
        *args: Any,
        traceparent: str | None = None,
        wait: float | None = None,
        request_id: str | None = None,
    ) -> None:
        """Deliver a signal (returns once Kafka has the command).

        The run applies a signal once per ``request_id`` (it remembers its latest
        1,000): pass the same id to re-send a signal safely, say after a timeout.
        None: a fresh id for this call.

        With ``wait=seconds`` (here and for cancel/terminate), wait for the shard's
        reply instead: ApplicationError with type ``WorkflowNotFound``,
        ``WorkflowClosed`` or ``CommandRejected`` if it refused the command,
        ReplyTimeoutError if no reply came in time.
        """
        b = self.client.builder
        out = b.signal(
            self.workflow_id, self.run_id, name, args, traceparent, request_id=request_id
        )
        self.client._deliver(out, wait)

    def cancel(
        self, reason: str = "", *, traceparent: str | None = None, wait: float | None = None
    ) -> None:
        """Request cancellation: the workflow sees it and its compensations run."""
        b = self.client.builder
        out = b.cancel(self.workflow_id, self.run_id, reason, traceparent)
        self.client._deliver(out, wait)

    def terminate(
        self, reason: str, *, traceparent: str | None = None, wait: float | None = None
    ) -> None:
        """Stop the run at once; no workflow code or compensation runs."""
        b = self.client.builder
        out = b.terminate(self.workflow_id, self.run_id, reason, traceparent)
        self.client._deliver(out, wait)

    def pause(
        self, reason: str = "", *, operator: str = "", wait: float | None = None
    ) -> None:
        """Pause the run: it decides and schedules nothing until :meth:`unpause`.

        Signals, updates, activity outcomes and timers that come meanwhile are
        recorded in history and applied, in order, on unpause; queries still answer.
        ``reason`` and ``operator`` are recorded with the pause. Pausing a paused run
        changes nothing. ``wait`` as for :meth:`signal`.
        """
        out = self.client.builder.pause(self.workflow_id, self.run_id, reason, operator)
        self.client._deliver(out, wait)

    def unpause(
        self, reason: str = "", *, operator: str = "", wait: float | None = None
    ) -> None:
        """Unpause the run: what it held since the pause is applied, in order."""
        out = self.client.builder.unpause(self.workflow_id, self.run_id, reason, operator)
        self.client._deliver(out, wait)

    def stack(self, *, timeout: float = 10.0) -> list[TaskStack]:
        """Where each task of the open run waits: its workflow-code frames (file, line,
        function) and what it awaits (activity, timer and due time, signal,
        condition), read by the engine off the suspended coroutines (the reserved
        query ``__stack``). Raises QueryError, naming why, for a closed or parked
        run too."""
        answer = self.query(STACK_QUERY, timeout=timeout)
        return [TaskStack.from_json(task) for task in answer]

    def repair(
        self,
        reason: str = "",
        *,
        skip: str | None = None,
        retry: RetryPolicy | None = None,
        operator: str = "",
        timeout: float = 30.0,
    ) -> None:
        """Repair a run that ended COMPENSATION_FAILED: its compensation goes on from the
        one that failed, which runs again (under ``retry`` when given, else its own
        policy), or with ``skip`` (its activity type) counts as done without running.
        The run is COMPENSATING until it ends again: as a compensated run does (the
        error that caused the compensation), or COMPENSATION_FAILED if a compensation
        fails again. ``reason`` and ``operator`` are recorded in its history and listed
        in :meth:`describe`. Raises ApplicationError with type ``CommandRejected`` for a
        run in another status or a ``skip`` that names no failed compensation.
        """
        b = self.client.builder
        out = b.repair(self.workflow_id, self.run_id, reason, operator, skip=skip, retry=retry)
        b.reply_value(self.client._request(out, timeout))

    def reset(
        self,
        reason: str = "",
        *,
        event_seq: int | None = None,
        before_build: str | None = None,
        exclude_signals: bool = False,
        operator: str = "",
        timeout: float = 30.0,
    ) -> str:
        """Reset the run to event ``event_seq`` (default: its last decision point, just
        before its latest decisions; with ``before_build``, just before the first
        decision a worker of that build made) and return the new run's id.

        A new run of this workflow id starts with the history up to that point and
        the current code; the decisions after it are made again. Signals received
        after the point are delivered again unless ``exclude_signals``. An open run
        is terminated in favour of the new one; ``reason`` and ``operator`` are
        recorded in both. Activities in flight at the point run again with their
        idempotency keys; the old attempts' results are ignored. ApplicationError
        with type ``ResetRefused`` says why a reset cannot be done.
        """
        b = self.client.builder
        out = b.reset(
            self.workflow_id,
            self.run_id,
            reason,
            operator,
            event_seq=event_seq,
            exclude_signals=exclude_signals,
            before_build=before_build,
        )
        return b.reset_run_id(self.client._request(out, timeout))

    def update(
        self,
        name: str,
        *args: Any,
        timeout: float = 30.0,
        result_type: Any = None,
        traceparent: str | None = None,
    ) -> Any:
        """Run an update handler and return its result (UpdateRejectedError if refused)."""
        b = self.client.builder
        out = b.update(self.workflow_id, self.run_id, name, args, traceparent)
        return b.reply_value(self.client._request(out, timeout), result_type)

    def query(
        self,
        name: str,
        *args: Any,
        timeout: float = 10.0,
        result_type: Any = None,
        traceparent: str | None = None,
    ) -> Any:
        """Ask a query handler (QueryError if it fails)."""
        b = self.client.builder
        out = b.query(self.workflow_id, self.run_id, name, args, traceparent)
        return b.reply_value(self.client._request(out, timeout), result_type)

    @overload
    def result(self, timeout: float | None = None) -> R: ...
    @overload
    def result(self, timeout: float | None = None, *, result_type: type[T]) -> T: ...
    def result(self, timeout: float | None = None, *, result_type: Any = None) -> Any:
        """Wait for the run to close: its result, or WorkflowFailedError (after
        COMPENSATION_FAILED, with the compensations' errors in ``compensation_errors``,
        read from history in the time ``timeout`` leaves, 30 s without one: empty
        when that read got no answer in time).

        A run that closed before this call is found through its snapshot.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            hint = self.result_type if result_type is None else result_type
            return self._result(timeout, hint)
        except WorkflowFailedError as exc:
            if exc.status == "COMPENSATION_FAILED":
                left = _TIMEOUT_S if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    found = self.client.fetch_history(self.workflow_id, self.run_id, left)
                except ReplyTimeoutError:
                    raise exc from exc.__cause__  # no time left to read the errors
                exc.compensation_errors = self.client.builder.compensation_errors(found)
            raise

    def _result(self, timeout: float | None, result_type: Any) -> Any:
        client, b = self.client, self.client.builder
        started = time.monotonic()
        correlation = result_correlation_id(self.workflow_id)
        with client._cond:
            client._replies.want(correlation)
            reply, fresh = client._replies.take_result(
                correlation, self._results_seen_at_creation
            )
            if reply is not None and not fresh:  # kept from before this handle: maybe
                client._replies.drop_result(correlation)  # an earlier run's; ask (below)
        if reply is not None and fresh:
            return b.reply_value(reply, result_type)
        if reply is None and self._evicted_at_start == client._replies.evicted:
            return b.reply_value(client._wait(correlation, timeout, "result"), result_type)
        # the run may have closed before this client saw it: ask the owner for the
        # snapshot, and take whichever comes first, that answer or the RESULT reply
        read = b.describe_read(self.workflow_id)
        with client._cond:
            client._replies.want(read.correlation_id)
        try:
            client._send(read)
            reply = client._wait(correlation, timeout, "result", read.correlation_id)
            if reply.correlation_id == read.correlation_id:
                snapshot = b.final_snapshot(reply)
                if snapshot is not None:
                    with client._cond:
                        client._replies.forget(correlation)
                    return b.snapshot_value(snapshot, result_type)
                left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
                reply = client._wait(correlation, left, "result")
            return b.reply_value(reply, result_type)
        finally:
            with client._cond:
                client._replies.forget(read.correlation_id)

    def describe(self, timeout: float = 10.0) -> WorkflowDescription:
        """The latest snapshot of this workflow id (WorkflowNotFoundError if none), as the
        shard that owns it has it."""
        b = self.client.builder
        page = b.page(self.client._request(b.describe_read(self.workflow_id), timeout))
        described = b.page_description(page)
        if described is None:
            raise WorkflowNotFoundError(f"no snapshot of workflow {self.workflow_id!r}")
        return described


def _consumer(config: Mapping[str, Any], *, eof: bool = False) -> Consumer:
    return Consumer(
        {
            # replies are written in the engine's transactions; a read_committed fetch
            # that arrives before the commit waits this long at the broker (librdkafka's
            # default, 500 ms, added 15 ms to a start-and-result at the median)
            "fetch.wait.max.ms": REPLY_FETCH_WAIT_MS,
            **config,
            "group.id": f"saga-client-{uuid.uuid4().hex}",  # never joins: assign() only
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": eof,
        }
    )


def _partitions(producer: Producer, topic: str) -> int:
    metadata = producer.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise WorkflowNotFoundError(f"topic {topic} does not exist; start a worker first")
    return len(metadata.partitions)


def _end(consumer: Consumer, topic: str, partition: int) -> int:
    """The partition's end (read_committed: the last stable offset), retried while
    leadership settles (a topic created a moment ago answers NOT_LEADER for a while)."""
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        try:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=_TIMEOUT_S
            )
            return int(high)
        except KafkaException as exc:
            # NOT_LEADER / UNKNOWN_PARTITION while a new topic settles: not flagged retriable
            if time.monotonic() > deadline:
                raise
            log.debug("watermark of %s/%d: %s; retrying", topic, partition, exc)
            time.sleep(0.2)

