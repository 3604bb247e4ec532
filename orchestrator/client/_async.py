"""The asyncio client on aiokafka: the same commands and correlation as the blocking one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.helpers import create_ssl_context

from orchestrator.batch.spec import (
    BATCH_TASK_QUEUE,
    BATCH_WORKFLOW,
    BatchFilter,
    BatchOperation,
    batch_workflow_id,
)
from orchestrator.client._activities import complete_command, fail_command, heartbeat_command
from orchestrator.client._batch import AsyncBatchHandle, new_batch
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
from orchestrator.client._pauses import fold_pauses, pause_record
from orchestrator.client._schedules import AsyncScheduleHandle, new_schedule
from orchestrator.config import Settings
from orchestrator.converter import DataConverter
from orchestrator.engine.events import Event
from orchestrator.engine.stack import STACK_QUERY, TaskStack
from orchestrator.exceptions import WorkflowFailedError
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

__all__ = ["AsyncClient", "AsyncWorkflowHandle", "aiokafka_options"]

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")
_TIMEOUT_S = 30.0

# librdkafka name -> aiokafka keyword, for what the clients need (security included)
_PLAIN_OPTIONS = {
    "bootstrap.servers": "bootstrap_servers",
    "client.id": "client_id",
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "sasl.kerberos.service.name": "sasl_kerberos_service_name",
    "request.timeout.ms": "request_timeout_ms",
}
_SSL_FILES = {
    "ssl.ca.location": "cafile",
    "ssl.certificate.location": "certfile",
    "ssl.key.location": "keyfile",
    "ssl.key.password": "password",
}


def aiokafka_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """aiokafka keyword arguments equivalent to a librdkafka config (SASL/SSL included).

    Settings aiokafka has no equivalent for are ignored; their names (never their
    values) are logged once.
    """
    out: dict[str, Any] = {}
    ssl: dict[str, Any] = {}
    ignored: list[str] = []
    for name, value in config.items():
        if name in _PLAIN_OPTIONS:
            out[_PLAIN_OPTIONS[name]] = int(value) if name.endswith(".ms") else value
        elif name in _SSL_FILES:
            ssl[_SSL_FILES[name]] = value
        else:
            ignored.append(name)
    if ssl or str(out.get("security_protocol", "")).upper() in ("SSL", "SASL_SSL"):
        out["ssl_context"] = create_ssl_context(**ssl)
    if ignored:
        log.info("settings without an aiokafka equivalent, ignored: %s", sorted(ignored))
    return out


class AsyncClient:
    """Starts and talks to workflows from asyncio. Create with ``await AsyncClient.connect()``.

    Arguments as for :class:`~orchestrator.client.Client`.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        listener: AIOKafkaConsumer,
        options: dict[str, Any],
        layout: TopicLayout,
        builder: CommandBuilder,
        *,
        kafka_config: Mapping[str, Any],
    ) -> None:
        self._producer = producer
        self._listener = listener
        self._options = options
        self._kafka = dict(kafka_config)  # librdkafka names: the flow-control verbs use them
        self.layout = layout
        self.builder = builder
        self._replies = ReplyBuffer(topic=self.layout.replies)
        self._arrived = asyncio.Condition()
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="saga-replies")

    @classmethod
    async def connect(
        cls,
        config: Settings | Mapping[str, Any],
        *,
        layout: TopicLayout | None = None,
        converter: DataConverter | None = None,
        wire: WireFormat | None = None,
        source: str = "/saga/client",
    ) -> AsyncClient:
        """Connect, read the commands topic's partition count and follow replies from the end."""
        kafka, layout = resolve_config(config, layout)
        options = aiokafka_options(kafka)
        producer = AIOKafkaProducer(**options, enable_idempotence=True, linger_ms=1)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()  # a failed start leaves its client open otherwise
            raise
        listener = AIOKafkaConsumer(
            **{"fetch_max_wait_ms": REPLY_FETCH_WAIT_MS, **options},
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        try:
            await listener.start()
            shards = len(await producer.partitions_for(layout.commands) or ())
            replies = sorted(await producer.partitions_for(layout.replies) or ())
            tps = [TopicPartition(layout.replies, p) for p in replies]
            listener.assign(tps)
            await listener.seek_to_end(*tps)
            for tp in tps:  # resolve the end now, so nothing sent from here on is missed
                await listener.position(tp)
        except BaseException:
            await listener.stop()
            await producer.stop()
            raise
        if not shards or not replies:
            await listener.stop()
            await producer.stop()
            raise WorkflowNotFoundError(
                f"topics {layout.commands} / {layout.replies} do not exist; start a worker"
            )
        builder = CommandBuilder(
            wire or WireFormat(source=source),
            converter or DataConverter(),
            shards,
            source=source,
            topic=layout.commands,
        )
        return cls(producer, listener, options, layout, builder, kafka_config=kafka)

    @overload
    async def start(
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
    ) -> AsyncWorkflowHandle[R]: ...
    @overload
    async def start(
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
    ) -> AsyncWorkflowHandle[Any]: ...
    async def start(
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
    ) -> AsyncWorkflowHandle[Any]:
        """Send a start command (returns once Kafka has it); see ``Client.start``.

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
            await self._send(out)
        else:
            reply = await self._request(out, wait_started)
            self.builder.reply_value(reply)  # raises when the shard refused the start
            handle.run_id = reply.run_id
        # The reply listener was at the end of the replies topic before this start, and
        # the run this start maps to is open (new, or running already; a refusal raised
        # above or needs a reuse policy other than the default): its RESULT reply comes
        # after now, so result() need not scan history for an earlier close.
        if wait_started is not None or id_reuse_policy is IdReusePolicy.ALLOW_DUPLICATE:
            handle._evicted_at_start = self._replies.evicted
        return handle

    async def create_schedule(
        self,
        schedule_id: str,
        spec: ScheduleSpec,
        action: ScheduleAction,
        policy: SchedulePolicy | None = None,
        *,
        paused: bool = False,
        note: str = "",
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> AsyncScheduleHandle:
        """Create a schedule (docs/schedules.md) and wait until its run has started.

        ValueError lists what is wrong with the spec or policy. Creating an id whose
        schedule exists leaves that schedule as it is (change it with ``update``).
        """
        workflow_id, state = new_schedule(
            schedule_id, spec, action, policy, paused=paused, note=note
        )
        handle = await self.start(
            SCHEDULE_WORKFLOW, state, id=workflow_id, task_queue=SCHEDULE_TASK_QUEUE,
            wait_started=timeout,
        )
        return AsyncScheduleHandle(handle, schedule_id)

    async def start_batch(
        self,
        batch_id: str,
        operation: BatchOperation,
        filter: BatchFilter,
        *,
        rate: float = 10.0,
        page_size: int = 100,
        allow_all: bool = False,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> AsyncBatchHandle:
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
        handle = await self.start(
            BATCH_WORKFLOW, state, id=workflow_id, task_queue=BATCH_TASK_QUEUE,
            id_reuse_policy=IdReusePolicy.REJECT_DUPLICATE, wait_started=timeout,
        )
        return AsyncBatchHandle(handle, batch_id)

    def batch_handle(self, batch_id: str) -> AsyncBatchHandle:
        """A handle to an existing batch (no I/O)."""
        return AsyncBatchHandle(self.get_handle(batch_workflow_id(batch_id)), batch_id)

    def schedule_handle(self, schedule_id: str) -> AsyncScheduleHandle:
        """A handle to an existing schedule (no I/O)."""
        return AsyncScheduleHandle(self.get_handle(schedule_workflow_id(schedule_id)), schedule_id)

    async def complete_activity(
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
        await self._deliver(out, wait)

    async def fail_activity(
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
        await self._deliver(out, wait)

    async def heartbeat_activity(
        self, token: str, *details: Any, wait: float | None = 10.0
    ) -> None:
        """Heartbeat the attempt ``token`` names (keeps its heartbeat timeout from
        passing; ``details`` go to a retry). Answered and refused like
        :meth:`complete_activity`."""
        out = heartbeat_command(self.builder, token, details, reply=wait is not None)
        await self._deliver(out, wait)

    # --- flow control of task queues (docs/flow-control.md) ---------------------
    # the blocking client's calls (confluent-kafka), on a thread: one implementation

    async def configure_task_queue(self, config: FlowConfig) -> None:
        """Put ``config.queue`` under flow control, or change its settings: creates its
        backlog and state topics and writes the config. A ``saga dispatcher`` for the
        queue must run, or its tasks wait in the backlog."""
        from orchestrator.flow.configs import configure_queue

        await asyncio.to_thread(
            configure_queue, self._kafka, self.layout, config, wire=self.builder.wire
        )

    async def remove_task_queue_flow_control(self, queue: str) -> None:
        """Send ``queue``'s new tasks straight to its topic again."""
        from orchestrator.flow.configs import write_config

        await asyncio.to_thread(
            write_config, self._kafka, self.layout, None, queue, wire=self.builder.wire
        )

    async def describe_task_queue(
        self, queue: str
    ) -> tuple[FlowConfig | None, FlowState | None]:
        """``queue``'s flow control (None: none) and its dispatcher's last committed
        state (None: nothing released yet), as
        :meth:`~orchestrator.client.Client.describe_task_queue` returns them."""
        from orchestrator.flow.configs import describe_queue

        return await asyncio.to_thread(describe_queue, self._kafka, self.layout, queue)

    # --- pausing activity types (docs/operations.md) -------------------------------

    async def pause_activity_type(
        self, task_queue: str, activity_type: str, *, reason: str = "",
        operator: str | None = None,
    ) -> ActivityPause:
        """Pause ``activity_type`` on ``task_queue``: its workers hold its tasks (no
        attempt starts, none fails) until :meth:`unpause_activity_type`. Returns the
        record written, once Kafka has it. ``operator`` defaults to the login name."""
        record = pause_record(
            task_queue, activity_type, paused=True, reason=reason, operator=operator
        )
        await self._write_pause(record)
        return record

    async def unpause_activity_type(
        self, task_queue: str, activity_type: str, *, reason: str = "",
        operator: str | None = None,
    ) -> ActivityPause:
        """Unpause ``activity_type`` on ``task_queue``: the held tasks start."""
        record = pause_record(
            task_queue, activity_type, paused=False, reason=reason, operator=operator
        )
        await self._write_pause(record)
        return record

    async def paused_activity_types(self, task_queue: str | None = None) -> list[ActivityPause]:
        """The activity types paused now (of one queue, or of every queue)."""
        topic = self.layout.activity_pauses
        reader = AIOKafkaConsumer(
            **self._options, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await reader.start()
        try:
            tp = TopicPartition(topic, 0)
            reader.assign([tp])
            end = (await reader.end_offsets([tp]))[tp]
            # an explicit offset: seek_to_beginning() can lose a race with the reset
            # the assignment starts, and leave the reader at the end
            reader.seek(tp, (await reader.beginning_offsets([tp]))[tp])
            records: list[ActivityPause] = []
            while await reader.position(tp) < end:
                batch = await reader.getmany(tp, timeout_ms=1000)
                for msg in batch.get(tp, []):
                    if msg.value is None:
                        continue
                    headers = [(k, v) for k, v in msg.headers]
                    records.append(self.builder.wire.decode_pause(headers, msg.value).record)
        finally:
            await reader.stop()
        return fold_pauses(records, task_queue)

    async def _write_pause(self, record: ActivityPause) -> None:
        encoded = self.builder.wire.encode_pause(record)
        await self._producer.send_and_wait(
            self.layout.activity_pauses, value=encoded.value, key=encoded.key,
            headers=[(k, v) for k, v in encoded.headers], partition=0,
        )

    @overload
    def get_handle(
        self, workflow_id: str, run_id: str | None = None, *, result_type: type[R]
    ) -> AsyncWorkflowHandle[R]: ...
    @overload
    def get_handle(
        self, workflow_id: str, run_id: str | None = None, *, result_type: Any = None
    ) -> AsyncWorkflowHandle[Any]: ...
    def get_handle(
        self, workflow_id: str, run_id: str | None = None, *, result_type: Any = None
    ) -> AsyncWorkflowHandle[Any]:
        """A handle to an existing workflow id (no I/O). ``result_type`` is what
        :meth:`AsyncWorkflowHandle.result` decodes the result into (default: plain JSON values)."""
        return AsyncWorkflowHandle(self, workflow_id, run_id, result_type=result_type)

    async def close(self) -> None:
        """Flush pending commands and stop following replies. Calls still waiting for
        a reply raise ReplyTimeoutError."""
        if self._closed:
            return
        self._closed = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        async with self._arrived:
            self._arrived.notify_all()
        await self._listener.stop()
        await self._producer.stop()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- machinery --------------------------------------------------------------

    async def _send(self, out: OutgoingCommand) -> None:
        record = out.record
        await self._producer.send_and_wait(
            self.layout.commands,
            value=record.value,
            key=record.key,
            partition=out.partition,
            headers=list(record.headers),
        )

    async def _deliver(self, out: OutgoingCommand, wait: float | None) -> None:
        """Send; with ``wait`` seconds, wait for the reply and raise if it refused."""
        if wait is None:
            await self._send(out)
        else:
            self.builder.reply_value(await self._request(out, wait))

    async def _request(self, out: OutgoingCommand, timeout: float | None) -> Reply:  # noqa: ASYNC109
        self._replies.want(out.correlation_id)
        try:
            await self._send(out)
            return await self._wait(out.correlation_id, timeout, "reply")
        finally:
            self._replies.forget(out.correlation_id)

    async def _wait(
        self,
        correlation_id: str,
        timeout: float | None,  # noqa: ASYNC109 - the same bound as the blocking client
        what: str,
        *also: str,
    ) -> Reply:
        """The reply to ``correlation_id`` (or to any of ``also``, whichever comes first)."""

        async def arrival() -> Reply:
            async with self._arrived:
                while True:
                    for wanted in (correlation_id, *also):
                        reply = self._replies.take(wanted)
                        if reply is not None:
                            return reply
                    if self._closed:
                        raise ReplyTimeoutError("client closed while waiting for a reply")
                    await self._arrived.wait()

        try:
            return await asyncio.wait_for(arrival(), timeout)
        except ReplyTimeoutError:
            raise
        except TimeoutError:
            raise ReplyTimeoutError(
                f"no {what} for {correlation_id!r} on {self.layout.replies} within "
                f"{timeout:.1f}s; is an engine worker running for prefix {self.layout.prefix!r}?"
            ) from None

    async def _listen(self) -> None:
        wire = self.builder.wire
        while True:
            batches = await self._listener.getmany(timeout_ms=200)
            if not batches:
                continue
            async with self._arrived:
                for messages in batches.values():
                    for msg in messages:
                        try:
                            reply = wire.decode_reply(msg.headers, msg.value)
                        except RecordDecodeError as exc:
                            log.warning("undecodable reply skipped: %s", exc)
                            continue
                        self._replies.offer(reply.record, reply.cloud_event.traceparent)
                self._arrived.notify_all()

    async def _snapshot(self, workflow_id: str, timeout: float) -> WorkflowSnapshot | None:  # noqa: ASYNC109
        """The latest snapshot of ``workflow_id``, read from the shard that owns it."""
        b = self.builder
        return b.page_snapshot(b.page(await self._request(b.describe_read(workflow_id), timeout)))

    async def fetch_history(
        self,
        workflow_id: str,
        run_id: str | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109 - same API as the blocking client
    ) -> RunHistory:
        """One run's events (the latest run's by default), read page by page from the
        shard that owns the workflow id; ReplyTimeoutError if no engine worker answers."""
        b = self.builder
        deadline = time.monotonic() + timeout
        snapshot = await self._snapshot(workflow_id, timeout)
        chosen = run_id or (snapshot.run_id if snapshot is not None else None)
        events: list[Event] = []
        after: int | None = 0
        while chosen is not None and after is not None:
            left = max(0.0, deadline - time.monotonic())
            read = b.history_read(workflow_id, chosen, after)
            page = b.page(await self._request(read, left))
            if page is None:
                break
            events += b.page_events(page)
            after = page.next_seq
        return RunHistory(snapshot, chosen, events)


class AsyncWorkflowHandle(Generic[R]):
    """One workflow id (and optionally one run of it), for asyncio callers."""

    def __init__(
        self, client: AsyncClient, workflow_id: str, run_id: str | None = None,
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

    async def signal(
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
        await self.client._deliver(out, wait)

    async def cancel(
        self, reason: str = "", *, traceparent: str | None = None, wait: float | None = None
    ) -> None:
        """Request cancellation: the workflow sees it and its compensations run."""
        b = self.client.builder
        out = b.cancel(self.workflow_id, self.run_id, reason, traceparent)
        await self.client._deliver(out, wait)

    async def terminate(
        self, reason: str, *, traceparent: str | None = None, wait: float | None = None
    ) -> None:
        """Stop the run at once; no workflow code or compensation runs."""
        b = self.client.builder
        out = b.terminate(self.workflow_id, self.run_id, reason, traceparent)
        await self.client._deliver(out, wait)

    async def pause(
        self, reason: str = "", *, operator: str = "", wait: float | None = None
    ) -> None:
        """Pause the run: it decides and schedules nothing until :meth:`unpause`.

        Signals, updates, activity outcomes and timers that come meanwhile are
        recorded in history and applied, in order, on unpause; queries still answer.
        ``reason`` and ``operator`` are recorded with the pause. Pausing a paused run
        changes nothing. ``wait`` as for :meth:`signal`.
        """
        out = self.client.builder.pause(self.workflow_id, self.run_id, reason, operator)
        await self.client._deliver(out, wait)

    async def unpause(
        self, reason: str = "", *, operator: str = "", wait: float | None = None
    ) -> None:
        """Unpause the run: what it held since the pause is applied, in order."""
        out = self.client.builder.unpause(self.workflow_id, self.run_id, reason, operator)
        await self.client._deliver(out, wait)

    async def stack(self, *, timeout: float = 10.0) -> list[TaskStack]:  # noqa: ASYNC109
        """Where each task of the open run waits: its workflow-code frames (file, line,
        function) and what it awaits (activity, timer and due time, signal,
        condition), read by the engine off the suspended coroutines (the reserved
        query ``__stack``). Raises QueryError, naming why, for a closed or parked
        run too."""
        answer = await self.query(STACK_QUERY, timeout=timeout)
        return [TaskStack.from_json(task) for task in answer]

    async def repair(
        self,
        reason: str = "",
        *,
        skip: str | None = None,
        retry: RetryPolicy | None = None,
        operator: str = "",
        timeout: float = 30.0,  # noqa: ASYNC109 - same API as the blocking client
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
        b.reply_value(await self.client._request(out, timeout))

    async def reset(
        self,
        reason: str = "",
        *,
        event_seq: int | None = None,
        before_build: str | None = None,
        exclude_signals: bool = False,
        operator: str = "",
        timeout: float = 30.0,  # noqa: ASYNC109 - same API as the blocking client
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
        return b.reset_run_id(await self.client._request(out, timeout))

    async def update(
        self,
        name: str,
        *args: Any,
        timeout: float = 30.0,  # noqa: ASYNC109 - same API as the blocking client
        result_type: Any = None,
        traceparent: str | None = None,
    ) -> Any:
        """Run an update handler and return its result (UpdateRejectedError if refused)."""
        b = self.client.builder
        out = b.update(self.workflow_id, self.run_id, name, args, traceparent)
        return b.reply_value(await self.client._request(out, timeout), result_type)

    async def query(
        self,
        name: str,
        *args: Any,
        timeout: float = 10.0,  # noqa: ASYNC109 - same API as the blocking client
        result_type: Any = None,
        traceparent: str | None = None,
    ) -> Any:
        """Ask a query handler (QueryError if it fails)."""
        b = self.client.builder
        out = b.query(self.workflow_id, self.run_id, name, args, traceparent)
        return b.reply_value(await self.client._request(out, timeout), result_type)

    @overload
    async def result(self, timeout: float | None = None) -> R: ...  # noqa: ASYNC109
    @overload
    async def result(
        self, timeout: float | None = None, *, result_type: type[T]  # noqa: ASYNC109
    ) -> T: ...
    async def result(self, timeout: float | None = None, *, result_type: Any = None) -> Any:  # noqa: ASYNC109
        """Wait for the run to close: its result, or WorkflowFailedError (after
        COMPENSATION_FAILED, with the compensations' errors in ``compensation_errors``,
        read from history in the time ``timeout`` leaves, 30 s without one: empty
        when that read got no answer in time)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            hint = self.result_type if result_type is None else result_type
            return await self._result(timeout, hint)
        except WorkflowFailedError as exc:
            if exc.status == "COMPENSATION_FAILED":
                left = _TIMEOUT_S if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    found = await self.client.fetch_history(self.workflow_id, self.run_id, left)
                except ReplyTimeoutError:
                    raise exc from exc.__cause__  # no time left to read the errors
                exc.compensation_errors = self.client.builder.compensation_errors(found)
            raise

    async def _result(self, timeout: float | None, result_type: Any) -> Any:  # noqa: ASYNC109
        client, b = self.client, self.client.builder
        started = time.monotonic()
        correlation = result_correlation_id(self.workflow_id)
        client._replies.want(correlation)
        reply, fresh = client._replies.take_result(correlation, self._results_seen_at_creation)
        if reply is not None and not fresh:  # kept from before this handle: maybe an
            client._replies.drop_result(correlation)  # earlier run's; ask the owner (below)
        elif reply is not None:
            return b.reply_value(reply, result_type)
        elif self._evicted_at_start == client._replies.evicted:
            return b.reply_value(await client._wait(correlation, timeout, "result"), result_type)
        # the run may have closed before this client saw it: ask the owner for the
        # snapshot, and take whichever comes first, that answer or the RESULT reply
        read = b.describe_read(self.workflow_id)
        client._replies.want(read.correlation_id)
        try:
            await client._send(read)
            reply = await client._wait(correlation, timeout, "result", read.correlation_id)
            if reply.correlation_id == read.correlation_id:
                snapshot = b.final_snapshot(reply)
                if snapshot is not None:
                    client._replies.forget(correlation)
                    return b.snapshot_value(snapshot, result_type)
                left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
                reply = await client._wait(correlation, left, "result")
            return b.reply_value(reply, result_type)
        finally:
            client._replies.forget(read.correlation_id)

    async def describe(self, timeout: float = 10.0) -> WorkflowDescription:  # noqa: ASYNC109
        """The latest snapshot of this workflow id (WorkflowNotFoundError if none), as the
        shard that owns it has it."""
        b = self.client.builder
        page = b.page(await self.client._request(b.describe_read(self.workflow_id), timeout))
        described = b.page_description(page)
        if described is None:
            raise WorkflowNotFoundError(f"no snapshot of workflow {self.workflow_id!r}")
        return described
