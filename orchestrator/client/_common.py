"""What the sync and async clients share: commands, correlation ids, reply and snapshot reading.

No I/O here: the transports (confluent-kafka, aiokafka) live in ``_sync`` / ``_async``.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator import tracing
from orchestrator.config import Settings
from orchestrator.converter import DataConverter, Payload
from orchestrator.engine.events import Event, Failure
from orchestrator.engine.failures import from_failure
from orchestrator.exceptions import (
    ActivityNotRunningError,
    ApplicationError,
    OrchestratorError,
    QueryError,
    ReplyTimeoutError,
    UpdateRejectedError,
    WorkflowAlreadyStartedError,
    WorkflowClosedError,
    WorkflowFailedError,
    WorkflowNotFoundError,
)
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout
from orchestrator.retry import RetryPolicy
from orchestrator.serde.history_page import (
    DESCRIBE_QUERY,
    HISTORY_QUERY,
    HistoryPage,
    PendingActivity,
    after_seq_arg,
)
from orchestrator.serde.records import (
    CancelWorkflow,
    Command,
    IdReusePolicy,
    PauseWorkflow,
    QueryWorkflow,
    RepairWorkflow,
    Reply,
    ReplyKind,
    ResetWorkflow,
    SignalWithStart,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    UnpauseWorkflow,
    UpdateWorkflow,
    WorkflowSnapshot,
    WorkflowStatus,
)
from orchestrator.serde.wire import EncodedRecord, WireFormat

__all__ = [
    "NO_INPUT",
    "CommandBuilder",
    "OutgoingCommand",
    "PauseInfo",
    "RepairInfo",
    "ReplyBuffer",
    "ReplyTimeoutError",
    "RunHistory",
    "WorkflowDescription",
    "WorkflowNotFoundError",
    "new_traceparent",
    "resolve_config",
    "result_correlation_id",
    "workflow_name",
]

#: how long a fetch of the replies topic may wait at the broker (ms); a client may
#: override it with ``fetch.wait.max.ms`` in its config (the sync client)
REPLY_FETCH_WAIT_MS = 10

NO_INPUT: Any = object()
"""Marker for "the workflow takes no input"."""

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_CLOSED_STATUS_OF_FAILURE = {
    "CancelledError": "CANCELLED",
    "CompensationError": "COMPENSATION_FAILED",
    "Terminated": "TERMINATED",
    "TimedOut": "TIMED_OUT",
}


@dataclass(frozen=True)
class RunHistory:
    """One run's recorded events (oldest first) and the workflow id's latest snapshot.

    The events are what :class:`~orchestrator.engine.replayer.Replayer` replays and
    ``saga history --json`` exports."""

    snapshot: WorkflowSnapshot | None
    run_id: str | None
    events: list[Event]


def result_correlation_id(workflow_id: str) -> str:
    """Correlation id of the RESULT reply the shard writes when a run closes."""
    return f"result/{workflow_id}"


def new_traceparent() -> str:
    """A fresh W3C trace context (version 00, sampled)."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def _traceparent(given: str | None) -> str:
    if given is None:
        return new_traceparent()
    if not _TRACEPARENT.match(given) or given.split("-")[1] == "0" * 32:
        raise ValueError(f"not a W3C traceparent: {given!r}")
    return given


def resolve_config(
    config: Settings | Mapping[str, Any], layout: TopicLayout | None
) -> tuple[dict[str, Any], TopicLayout]:
    """librdkafka settings and topic layout from a Settings or a config dict."""
    if isinstance(config, Settings):
        return config.kafka_config(), layout or TopicLayout(
            prefix=config.topic_prefix, shards=config.shards
        )
    return dict(config), layout or TopicLayout()


def workflow_result_type(workflow: str | Callable[..., Any] | type[Any]) -> Any:
    """What a run's result decodes into: the ``@workflow.defn`` target's return
    annotation, or None (plain JSON values) for a workflow named by a string."""
    if isinstance(workflow, str):
        return None
    from orchestrator.workflow import definition_of

    return definition_of(workflow).return_type


def workflow_name(workflow: str | Callable[..., Any] | type[Any]) -> str:
    """The workflow type name: a string as is, else the ``@workflow.defn`` name."""
    if isinstance(workflow, str):
        return workflow
    from orchestrator.workflow import definition_of

    return definition_of(workflow).name


@dataclass(frozen=True, slots=True)
class OutgoingCommand:
    """A command ready to produce: record, target partition, and its correlation id."""

    record: EncodedRecord
    partition: int
    correlation_id: str


@dataclass(frozen=True, slots=True)
class PauseInfo:
    """An operator's pause in force on a run: who paused it, why, and since when."""

    reason: str
    operator: str
    since: datetime


@dataclass(frozen=True, slots=True)
class PendingActivityInfo:
    """An activity of an open run that is scheduled and not finished. ``paused``: an
    operator paused its type on its task queue, so its attempt is held, unstarted."""

    activity_seq: int
    activity_type: str
    task_queue: str
    attempt: int
    paused: bool = False


@dataclass(frozen=True, slots=True)
class RepairInfo:
    """An operator's repair of a run's failed compensation: ``retry`` or ``skip`` (of
    the compensation ``activity_type``), who, why and when."""

    action: str
    activity_type: str
    reason: str
    operator: str
    at: datetime


@dataclass(frozen=True, slots=True)
class WorkflowDescription:
    """The latest snapshot of a workflow id, decoded. ``paused`` is set while an
    operator holds the run (its status stays RUNNING or COMPENSATING); ``repairs``
    lists operators' repairs of its failed compensations, oldest first."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    status: WorkflowStatus
    start_time: datetime
    close_time: datetime | None
    last_seq: int
    search_attributes: dict[str, Any] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)
    paused: PauseInfo | None = None
    repairs: list[RepairInfo] = field(default_factory=list)
    #: the version of the type's definition the run started on and is pinned to
    workflow_version: int = 1
    #: why the engine cannot drive the run (say, no worker holds its version); None
    #: when it can
    parked: str | None = None
    #: the run's priority and fairness key on flow-controlled queues, given by its
    #: start; its activities and children that name none take them
    priority: int = 0
    fairness_key: str = ""
    #: an open run's activities scheduled and not finished, by activity_seq (empty
    #: for a closed run, and from an engine older than this field)
    pending_activities: list[PendingActivityInfo] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        """True while the run is running or compensating."""
        return self.status in (WorkflowStatus.RUNNING, WorkflowStatus.COMPENSATING)


class CommandBuilder:
    """Builds command records and interprets replies for one deployment."""

    def __init__(
        self,
        wire: WireFormat,
        converter: DataConverter,
        shards: int,
        *,
        source: str,
        topic: str = "saga.commands",
    ) -> None:
        self.wire = wire
        self.converter = converter
        self.shards = shards
        self.source = source
        self.topic = topic  # the commands topic, for the send span

    def _out(
        self, command: Command, correlation_id: str, traceparent: str | None
    ) -> OutgoingCommand:
        given = None if traceparent is None else _traceparent(traceparent)
        attributes = tracing.kafka_attributes(
            self.topic,
            "send",
            **{"saga.workflow_id": command.workflow_id, "saga.command": type(command).__name__},
        )
        name = f"saga send {type(command).__name__}"
        with tracing.hop(name, tracing.PRODUCER, given, attributes, current=True) as hop:
            sent = hop.traceparent or given or new_traceparent()
        # ce_id = request id: the shard echoes either, so both choices agree
        record = self.wire.encode_command(
            command, ce_id=correlation_id, source=self.source, traceparent=sent
        )
        return OutgoingCommand(record, shard_for(command.workflow_id, self.shards), correlation_id)

    def start(
        self,
        workflow: str | Callable[..., Any] | type[Any],
        input: Any,
        *,
        id: str,
        task_queue: str,
        args: Sequence[Any] | None,
        id_reuse_policy: IdReusePolicy,
        search_attributes: Mapping[str, Any] | None,
        memo: Mapping[str, Any] | None,
        execution_timeout: timedelta | None,
        start_signal: str | None,
        start_signal_args: Sequence[Any],
        traceparent: str | None,
        priority: int = 0,
        fairness_key: str = "",
    ) -> OutgoingCommand:
        """A StartWorkflow command (optionally signal-with-start)."""
        if args is not None and input is not NO_INPUT:
            raise ValueError("pass either input or args=, not both")
        values = list(args) if args is not None else [] if input is NO_INPUT else [input]
        request_id = uuid.uuid4().hex
        plain = self.converter.payload_converter  # search attributes stay json/plain
        command = StartWorkflow(
            workflow_id=id,
            workflow_type=workflow_name(workflow),
            task_queue=task_queue,
            input=self.converter.to_payloads(values),
            id_reuse_policy=id_reuse_policy,
            signal_with_start=SignalWithStart(
                signal_name=start_signal, args=self.converter.to_payloads(start_signal_args)
            )
            if start_signal
            else None,
            search_attributes={k: plain.encode(v) for k, v in (search_attributes or {}).items()},
            memo={k: self.converter.to_payload(v) for k, v in (memo or {}).items()},
            execution_timeout_ms=_ms(execution_timeout),
            request_id=request_id,
            priority=priority,
            fairness_key=fairness_key,
        )
        return self._out(command, request_id, traceparent)

    def signal(
        self,
        workflow_id: str,
        run_id: str | None,
        name: str,
        args: Sequence[Any],
        tp: str | None,
        *,
        request_id: str | None = None,
    ) -> OutgoingCommand:
        """A SignalWorkflow command; ``request_id`` None: a fresh one (each call is a
        new signal, and a re-send of this record is applied once)."""
        request_id = request_id or uuid.uuid4().hex
        command = SignalWorkflow(
            workflow_id=workflow_id,
            signal_name=name,
            args=self.converter.to_payloads(args),
            run_id=run_id,
            request_id=request_id,
        )
        return self._out(command, request_id, tp)

    def cancel(
        self, workflow_id: str, run_id: str | None, reason: str, tp: str | None
    ) -> OutgoingCommand:
        """A CancelWorkflow command."""
        request_id = uuid.uuid4().hex
        command = CancelWorkflow(
            workflow_id=workflow_id, reason=reason, run_id=run_id, request_id=request_id
        )
        return self._out(command, request_id, tp)

    def terminate(
        self, workflow_id: str, run_id: str | None, reason: str, tp: str | None
    ) -> OutgoingCommand:
        """A TerminateWorkflow command."""
        request_id = uuid.uuid4().hex
        command = TerminateWorkflow(
            workflow_id=workflow_id, reason=reason, run_id=run_id, request_id=request_id
        )
        return self._out(command, request_id, tp)

    def pause(
        self, workflow_id: str, run_id: str | None, reason: str, operator: str
    ) -> OutgoingCommand:
        """A PauseWorkflow command."""
        return self._operator_command(PauseWorkflow, workflow_id, run_id, reason, operator)

    def unpause(
        self, workflow_id: str, run_id: str | None, reason: str, operator: str
    ) -> OutgoingCommand:
        """An UnpauseWorkflow command."""
        return self._operator_command(UnpauseWorkflow, workflow_id, run_id, reason, operator)

    def _operator_command(
        self,
        kind: type[PauseWorkflow] | type[UnpauseWorkflow],
        workflow_id: str,
        run_id: str | None,
        reason: str,
        operator: str,
    ) -> OutgoingCommand:
        request_id = uuid.uuid4().hex
        command = kind(
            workflow_id=workflow_id,
            reason=reason,
            operator=operator,
            run_id=run_id,
            request_id=request_id,
        )
        return self._out(command, request_id, None)

    def reset(
        self,
        workflow_id: str,
        run_id: str | None,
        reason: str,
        operator: str,
        *,
        event_seq: int | None,
        exclude_signals: bool,
        before_build: str | None = None,
    ) -> OutgoingCommand:
        """A ResetWorkflow command."""
        request_id = uuid.uuid4().hex
        command = ResetWorkflow(
            workflow_id=workflow_id,
            reason=reason,
            operator=operator,
            run_id=run_id,
            event_seq=event_seq,
            before_build=before_build,
            exclude_signals=exclude_signals,
            request_id=request_id,
        )
        return self._out(command, request_id, None)

    def repair(
        self,
        workflow_id: str,
        run_id: str | None,
        reason: str,
        operator: str,
        *,
        skip: str | None,
        retry: RetryPolicy | None,
    ) -> OutgoingCommand:
        """A RepairWorkflow command (a retry policy only with a retry, not a skip)."""
        if skip is not None and retry is not None:
            raise ValueError("a repair either skips a compensation or retries with a policy")
        request_id = uuid.uuid4().hex
        command = RepairWorkflow(
            workflow_id=workflow_id,
            run_id=run_id,
            skip=skip,
            retry_policy=retry.to_record() if retry is not None else None,
            reason=reason,
            operator=operator,
            request_id=request_id,
        )
        return self._out(command, request_id, None)

    def reset_run_id(self, reply: Reply) -> str:
        """The new run a reset started; raises as :meth:`reply_value` if refused."""
        self.reply_value(reply)
        if reply.run_id is None:
            raise OrchestratorError(f"reset of {reply.workflow_id!r}: the reply names no run")
        return reply.run_id

    def update(
        self, workflow_id: str, run_id: str | None, name: str, args: Sequence[Any], tp: str | None
    ) -> OutgoingCommand:
        """An UpdateWorkflow command; its reply's correlation id is the update id."""
        update_id = uuid.uuid4().hex
        command = UpdateWorkflow(
            workflow_id=workflow_id,
            update_id=update_id,
            update_name=name,
            args=self.converter.to_payloads(args),
            run_id=run_id,
        )
        return self._out(command, update_id, tp)

    def query(
        self, workflow_id: str, run_id: str | None, name: str, args: Sequence[Any], tp: str | None
    ) -> OutgoingCommand:
        """A QueryWorkflow command; its reply's correlation id is the query id."""
        return self._query(workflow_id, run_id, name, self.converter.to_payloads(args), tp)

    def read(
        self, workflow_id: str, run_id: str | None, name: str, after_seq: int = 0
    ) -> OutgoingCommand:
        """A built-in read (``__describe``, or one page of ``__history``); its argument
        bypasses the converter's codecs, since the engine reads it."""
        args = [after_seq_arg(after_seq)] if name == HISTORY_QUERY else []
        return self._query(workflow_id, run_id, name, args, None)

    def _query(
        self,
        workflow_id: str,
        run_id: str | None,
        name: str,
        args: list[Payload],
        tp: str | None,
    ) -> OutgoingCommand:
        query_id = uuid.uuid4().hex
        command = QueryWorkflow(
            workflow_id=workflow_id, query_id=query_id, query_name=name, args=args, run_id=run_id
        )
        return self._out(command, query_id, tp)

    def describe_read(self, workflow_id: str) -> OutgoingCommand:
        """The read of ``workflow_id``'s latest snapshot."""
        return self.read(workflow_id, None, DESCRIBE_QUERY)

    def history_read(self, workflow_id: str, run_id: str, after_seq: int) -> OutgoingCommand:
        """The read of one page of a run's events, those after ``after_seq``."""
        return self.read(workflow_id, run_id, HISTORY_QUERY, after_seq)

    def page(self, reply: Reply) -> HistoryPage | None:
        """The page a read's reply carries; None if the shard knows no such run."""
        if not reply.ok and reply.error is not None and reply.error.type == "WorkflowNotFound":
            return None
        if not reply.ok or reply.result is None:
            self.reply_value(reply)  # raises the refusal
        assert reply.result is not None
        return self.wire.decode_page(reply.result)

    def final_snapshot(self, reply: Reply) -> WorkflowSnapshot | None:
        """The snapshot a ``__describe`` reply carries when its run is final (else None:
        no such run, still open, or a refusal): ``result()`` then waits for the RESULT."""
        try:
            snapshot = self.page_snapshot(self.page(reply))
        except OrchestratorError:
            return None
        return snapshot if snapshot is not None and self.is_final(snapshot) else None

    def page_snapshot(self, page: HistoryPage | None) -> WorkflowSnapshot | None:
        """The snapshot a ``__describe`` page holds."""
        if page is None or not page.records:
            return None
        record = page.records[0]
        return self.wire.decode_snapshot(list(record.headers.items()), record.value).record

    def page_events(self, page: HistoryPage) -> list[Event]:
        """The events a ``__history`` page holds, by seq."""
        return [
            self.wire.decode_event(list(r.headers.items()), r.value).record.event
            for r in page.records
        ]

    # --- replies and snapshots --------------------------------------------------

    def reply_value(self, reply: Reply, result_type: Any = None) -> Any:
        """The value a waiting call returns, or the error it raises."""
        if reply.ok:
            return None if reply.result is None else self._decode(reply.result, result_type)
        cause = self.exception(reply.error) if reply.error is not None else None
        message = f"{reply.error.type}: {reply.error.message}" if reply.error else "failed"
        error: OrchestratorError
        if reply.kind is ReplyKind.UPDATE:
            error = UpdateRejectedError(f"update on {reply.workflow_id!r}: {message}")
        elif reply.kind is ReplyKind.QUERY:
            error = QueryError(f"query on {reply.workflow_id!r}: {message}")
        elif reply.kind is ReplyKind.RESULT:
            status = _CLOSED_STATUS_OF_FAILURE.get(
                reply.error.type if reply.error else "", "FAILED"
            )
            error = WorkflowFailedError(
                f"workflow {reply.workflow_id!r} did not complete: {message}", status=status
            )
        else:
            error = _refusal(reply, message)
        raise error from cause

    @staticmethod
    def is_final(snapshot: WorkflowSnapshot) -> bool:
        """True when the workflow id's last run closed (a run that continued as new is
        not the last: the next one is, or will be once it can start)."""
        return snapshot.status not in (
            WorkflowStatus.RUNNING,
            WorkflowStatus.COMPENSATING,
            WorkflowStatus.CONTINUED_AS_NEW,
        )

    def snapshot_value(self, snapshot: WorkflowSnapshot, result_type: Any = None) -> Any:
        """The result of a closed run from its snapshot, or the error it ended with."""
        if snapshot.status is WorkflowStatus.COMPLETED:
            return None if snapshot.result is None else self._decode(snapshot.result, result_type)
        f = snapshot.failure
        message = f"{f.type}: {f.message}" if f else snapshot.status.name
        error = WorkflowFailedError(
            f"workflow {snapshot.workflow_id!r} is {snapshot.status.name}: {message}",
            status=snapshot.status.name,
        )
        raise error from (self.exception(f) if f else None)

    def page_description(self, page: HistoryPage | None) -> WorkflowDescription | None:
        """What a ``__describe`` page says: the snapshot and the pending activities."""
        snapshot = self.page_snapshot(page)
        if page is None or snapshot is None:
            return None
        return self.describe(snapshot, page.pending_activities)

    def describe(
        self, snapshot: WorkflowSnapshot, pending: Sequence[PendingActivity] = ()
    ) -> WorkflowDescription:
        """A snapshot with its times and attributes decoded (and ``pending``, the
        unfinished activities the describe read's page carries)."""
        return WorkflowDescription(
            workflow_id=snapshot.workflow_id,
            run_id=snapshot.run_id,
            workflow_type=snapshot.workflow_type,
            task_queue=snapshot.task_queue,
            status=snapshot.status,
            start_time=_time(snapshot.start_time),
            close_time=_time(snapshot.close_time) if snapshot.close_time is not None else None,
            last_seq=snapshot.last_seq,
            search_attributes={
                k: self.converter.payload_converter.decode(v)
                for k, v in snapshot.search_attributes.items()
            },
            memo={k: self.converter.from_payload(v) for k, v in snapshot.memo.items()},
            paused=PauseInfo(
                reason=snapshot.paused.reason,
                operator=snapshot.paused.operator,
                since=_time(snapshot.paused.time),
            )
            if snapshot.paused is not None
            else None,
            repairs=[
                RepairInfo(
                    action=n.action,
                    activity_type=n.activity_type,
                    reason=n.reason,
                    operator=n.operator,
                    at=_time(n.time),
                )
                for n in snapshot.repairs
            ],
            workflow_version=snapshot.workflow_version,
            parked=snapshot.parked,
            priority=snapshot.priority,
            fairness_key=snapshot.fairness_key,
            pending_activities=[
                PendingActivityInfo(
                    activity_seq=a.activity_seq, activity_type=a.activity_type,
                    task_queue=a.task_queue, attempt=a.attempt, paused=a.paused,
                )
                for a in pending
            ],
        )

    def exception(self, failure: Failure) -> BaseException:
        """A recorded failure and its cause chain as the exceptions workflow code and
        the test environment see (one converter for all: ApplicationError with its
        type and details, ActivityTimeoutError, CancelledError), each with its
        ``remote_stack_trace``."""
        return from_failure(failure, self.converter)

    def compensation_errors(self, found: RunHistory) -> list[BaseException]:
        """The compensations' errors a COMPENSATION_FAILED run recorded."""
        last = found.events[-1] if found.events else None
        recorded = getattr(last, "compensation_failures", [])
        return [self.exception(f) for f in recorded]

    def _decode(self, payload: Payload, result_type: Any) -> Any:
        return self.converter.from_payload(payload, result_type)


_REFUSALS: Mapping[str, type[ApplicationError]] = {
    "WorkflowNotFound": WorkflowNotFoundError,
    "WorkflowAlreadyStarted": WorkflowAlreadyStartedError,
    "WorkflowClosed": WorkflowClosedError,
    "ActivityNotRunning": ActivityNotRunningError,
}


def _refusal(reply: Reply, message: str) -> ApplicationError:
    """The error a shard's refusal of a command becomes: a typed one for the common
    cases (still an ApplicationError of that ``type``)."""
    kind = reply.error.type if reply.error else None
    typed = _REFUSALS.get(kind or "")
    return typed(message) if typed is not None else ApplicationError(message, type=kind)


class ReplyBuffer:
    """Replies waiting to be claimed: those asked for, plus the latest RESULT replies.

    RESULT replies are kept (up to ``keep_results``) even when nobody waits yet,
    so ``result()`` called after a run closed still finds its reply.
    """

    def __init__(self, keep_results: int = 10_000, topic: str = "") -> None:
        self.keep_results = keep_results
        self.topic = topic
        self._wanted: set[str] = set()
        self._got: dict[str, Reply] = {}
        self._results: OrderedDict[str, Reply] = OrderedDict()
        #: the trace context each kept reply arrived with (its hop's span is made when
        #: the reply is taken: a RESULT nobody asks for makes none)
        self._traces: dict[int, str] = {}
        self.evicted = 0
        """RESULT replies dropped so far to keep the buffer bounded."""
        self.results_seen = 0
        """RESULT replies offered so far: a handle notes it when made, to tell a kept
        RESULT that came before it (maybe an earlier run's) from one that came after."""
        self._arrival: dict[int, int] = {}  # id(kept RESULT) -> results_seen when it came

    def want(self, correlation_id: str) -> None:
        """Keep the reply with this correlation id when it arrives."""
        self._wanted.add(correlation_id)

    def offer(self, reply: Reply, traceparent: str | None = None) -> bool:
        """Keep ``reply`` (which arrived with ``traceparent``) if someone wants it
        (True) or it is a RESULT.

        RESULT replies live only in the bounded ``keep_results`` buffer, wanted or
        not, so a long-running client (the HTTP API) does not keep one per workflow
        it ever touched.
        """
        if reply.kind is ReplyKind.RESULT:
            replaced = self._results.get(reply.correlation_id)
            if replaced is not None:
                self._arrival.pop(id(replaced), None)
                self._traces.pop(id(replaced), None)
            self.results_seen += 1
            self._arrival[id(reply)] = self.results_seen
            self._results[reply.correlation_id] = reply
            self._results.move_to_end(reply.correlation_id)
            while len(self._results) > self.keep_results:
                _, dropped = self._results.popitem(last=False)
                self._traces.pop(id(dropped), None)
                self._arrival.pop(id(dropped), None)
                self.evicted += 1
        elif reply.correlation_id in self._wanted:
            self._got[reply.correlation_id] = reply
        else:
            return False
        if traceparent is not None:
            self._traces[id(reply)] = traceparent
        return True

    def take_result(self, correlation_id: str, since: int) -> tuple[Reply | None, bool]:
        """A kept RESULT reply, and whether it came after ``since`` (a
        :attr:`results_seen`): one that came before may close an earlier run of the
        workflow id than the one now asked about. It stays kept (bounded by
        ``keep_results``), so every handle of the run gets it, not only the first."""
        kept = self._results.get(correlation_id)
        if kept is None:
            return None, False
        self._wanted.discard(correlation_id)
        parent = self._traces.pop(id(kept), None)
        if tracing.recording():
            self._received(kept, parent)
        return kept, self._arrival.get(id(kept), 0) > since

    def drop_result(self, correlation_id: str) -> None:
        """Forget a kept RESULT reply (one that may close an earlier run)."""
        dropped = self._results.pop(correlation_id, None)
        if dropped is not None:
            self._arrival.pop(id(dropped), None)
            self._traces.pop(id(dropped), None)

    def take(self, correlation_id: str) -> Reply | None:
        """The reply if it arrived; None otherwise. Other replies are then forgotten; a
        RESULT stays kept (bounded), for every handle of its run. With a tracing SDK,
        taking it is the reply's hop: a span, child of the decision that sent it."""
        reply = self._got.pop(correlation_id, None) or self._results.get(correlation_id)
        if reply is not None:
            self._wanted.discard(correlation_id)
            parent = self._traces.pop(id(reply), None)
            if tracing.recording():
                self._received(reply, parent)
        return reply

    def _received(self, reply: Reply, parent: str | None) -> None:
        attributes = tracing.kafka_attributes(
            self.topic,
            "receive",
            **{
                "saga.workflow_id": reply.workflow_id,
                "saga.run_id": reply.run_id,
                "saga.reply": reply.kind.name,
                "saga.ok": reply.ok,
            },
        )
        name = f"saga receive {reply.kind.name}"
        with tracing.hop(name, tracing.CONSUMER, parent, attributes, current=True) as hop:
            if not reply.ok and reply.error is not None:
                hop.fail(reply.error.message)

    def forget(self, correlation_id: str) -> None:
        """Stop waiting for a reply (timed out)."""
        self._wanted.discard(correlation_id)
        self._got.pop(correlation_id, None)


def _ms(delta: timedelta | None) -> int | None:
    return None if delta is None else round(delta.total_seconds() * 1000)


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
