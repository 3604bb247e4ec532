"""The activity worker: consumes a task queue, runs attempts, sends outcomes to the shards.

One consumer (group per task queue, cooperative-sticky) reads
``<prefix>.tasks.<queue>`` with ``read_committed`` (tasks are written inside the
shard processor's transactions). Many tasks run at once per partition; a task's
offset counts as finished only when its outcome record has been acknowledged by
the broker, and only the contiguous finished prefix of each partition is
committed (:class:`~orchestrator.worker.offsets.ContiguousOffsetTracker`). A crash
therefore re-delivers every task whose outcome may not have been written: at
least once, with the same idempotency key.

Outcomes and heartbeats go to ``<prefix>.commands``, keyed by workflow id, on the
partition ``shard_for(workflow_id, N)`` chosen explicitly. An attempt that raised
``activity.CompleteAsync`` sends none: its offset is finished at once, and the
holder of its task token sends the outcome later. Records that cannot be
decoded go to ``<prefix>.dlq`` (reason in ``saga.dlq.reason``) and are committed
past. At most ``max_in_flight`` tasks run at once; fetched tasks beyond that wait
in a buffer, and a full buffer pauses fetching until half of it is started.

Cancels: a second consumer, outside the group, tails ``<prefix>.activity-cancels``
(:mod:`orchestrator.worker.activity_cancels`). A cancel stops the attempt it names
if this worker runs it, and makes the worker skip the task (no outcome; its offset
is finished) if it comes later; the stopped attempt's outcome is a non-retryable
``ActivityCancelled`` failure, which the engine ignores.

Paused activity types: a third consumer, outside the group, reads
``<prefix>.activity-pauses`` whole before the first task starts, then tails it
(:mod:`orchestrator.worker.activity_pauses`). A task of a type paused on this
queue is held, not started: no attempt, no outcome, its offset unfinished. Other
types keep flowing. On unpause the held tasks start in the order they came. At
most ``max_held`` tasks are held; at that bound the worker stops fetching.

Fenced: when the group fences the task queue's consumer (a static member whose
``group_instance_id`` another consumer joined under, orchestrator/worker/fencing.py),
the worker replaces it with a new one that joins again, as the engine does.

Every Kafka call happens on the event loop thread (polls never block), so the
consumers, the producer and the rebalance callbacks need no locks. The exception: on
stop, the last commit and the close run on a helper thread, bounded, while the loop
thread waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from orchestrator import tracing
from orchestrator.config import Settings
from orchestrator.converter import DataConverter
from orchestrator.engine.events import Failure
from orchestrator.log.partitioner import shard_for
from orchestrator.log.producing import PROMPT_PRODUCER
from orchestrator.log.topics import TopicLayout
from orchestrator.metrics import ActivityMetrics, dlq_reason_label
from orchestrator.serde.errors import RecordDecodeError, RecordEncodeError
from orchestrator.serde.records import (
    ActivityCancel,
    ActivityHeartbeat,
    ActivityTask,
    ActivityTaskFailed,
)
from orchestrator.serde.wire import EncodedRecord, WireFormat
from orchestrator.worker.activity_cancels import (
    AttemptKey,
    CancelReader,
    CancelRegistry,
    attempt_key,
)
from orchestrator.worker.activity_pauses import HeldTasks, PauseReader
from orchestrator.worker.activity_runner import (
    ActivityOutcome,
    AttemptCancel,
    AttemptRunner,
    activity_definitions,
    is_cancellation,
    is_timeout,
)
from orchestrator.worker.fencing import (
    FenceLimit,
    close_in_background,
    fences_the_consumer,
    finish_within,
)
from orchestrator.worker.group_watch import GroupWatch
from orchestrator.worker.membership import LEAVE_TIMEOUT_S, GroupConsumer, member_config
from orchestrator.worker.offsets import ContiguousOffsetTracker
from orchestrator.worker.shard.dlq import REASON_HEADER, SOURCE_HEADER
from orchestrator.worker.shard.records import headers_of

__all__ = ["ActivityWorker", "ActivityWorkerOptions", "ActivityWorkerStats"]

log = logging.getLogger(__name__)

_IDLE_SLEEP_S = (0.0005, 0.002)  # adaptive sleep between empty polls: min, max (latency)
#: with no attempt running, the loop waits inside librdkafka for this long at most: a
#: task that arrives wakes it at once, and an idle worker costs no CPU (spinning on the
#: adaptive sleep cost 5% of a core per idle worker)
_IDLE_BLOCK_S = 0.1
_METADATA_TIMEOUT_S = 30.0
#: how long a stopping worker waits for its last commit and for leaving the group
_CLOSE_TIMEOUT_S = LEAVE_TIMEOUT_S + 5.0
_SAMPLE_INTERVAL_S = 2.0  # lag and in-flight gauges, when metrics are exported


class _Out(NamedTuple):
    """A record to produce whose key or value may be absent (dead letters)."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityWorkerOptions:
    """Tuning of an :class:`ActivityWorker`."""

    max_in_flight: int = 256
    """Tasks running at once (all partitions); fetched tasks beyond it wait in a buffer."""
    max_buffered: int | None = None
    """Fetching pauses when this many fetched tasks wait to start (default: the larger
    of 2,000 and ``max_in_flight``) and resumes at half of it. librdkafka drops what it
    had prefetched for a paused partition and fetches it again on resume, so a buffer
    that fills often costs throughput: at 256 the three-step benchmark's max rate fell
    from ~460 to ~290 sagas/s (docs/benchmarks.md)."""
    max_buffered_bytes: int = 32 * 1024 * 1024
    """Fetching also pauses while the waiting tasks' records hold this many bytes (large
    inputs), and resumes at half of it."""
    sync_threads: int = 16
    """Threads for sync activities (abandoned timed-out calls keep theirs until they return)."""
    drain_timeout_s: float = 30.0
    """On stop, how long running tasks may finish; the rest are cancelled and re-delivered."""
    commit_interval_s: float = 0.2
    heartbeat_throttle_s: float = 1.0
    """At most one heartbeat record per attempt per this period (latest details win)."""
    default_start_to_close_s: float | None = None
    """For tasks without a start-to-close timeout."""
    session_timeout_ms: int = 10_000
    """A dead worker's partitions move after this long (unless it is restarted sooner
    under the same ``group_instance_id``)."""
    group_instance_id: str | None = None
    """Join the group as this static member (KIP-345), so that a worker restarted under
    the same id takes its partitions back at once instead of after the session timeout.
    Give only an id that is stable across restarts and unique in the group (``saga
    worker --worker-id W`` uses ``W.tasks.<queue>``); None: a dynamic member."""
    fetch_batch: int = 500
    fetch_wait_max_ms: int = 50
    """How long a fetch may wait at the broker for new tasks. A ``read_committed``
    fetch that arrives while the transaction writing its tasks is open can wait this
    long after the commit (librdkafka's default is 500 ms): tasks written in a
    transaction (a dispatcher's releases, the engine's without early dispatch) then
    start up to that late. 50 ms costs an idle worker 20 fetches a second."""
    cancel_memory: int = 10_000
    """At most this many cancels are remembered for tasks not started yet (oldest
    forgotten first)."""
    cancel_ttl_s: float = 600.0
    """A cancel is remembered this long: a task started later than that after its
    cancel runs (its outcome is ignored by the engine). Also how far back the worker
    reads the cancels topic when it starts."""
    cancel_catch_up_s: float = 10.0
    """At start, how long the worker may spend reading the cancels of the last
    ``cancel_ttl_s`` before it starts tasks."""
    max_held: int = 10_000
    """At most this many tasks of paused activity types are held; at that bound the
    worker stops fetching from its queue (every type waits) until an unpause."""
    pause_catch_up_s: float = 10.0
    """At start, how long the worker may spend reading ``<prefix>.activity-pauses``
    before it starts tasks (past it, it starts anyway and logs a warning)."""
    group_watch_interval_s: float | None = 15.0
    """How often the worker checks that every partition of its queue has an owner in
    the group, and makes the group rebalance if some stay unowned (a static member
    restarted in the middle of a rebalance: orchestrator/worker/group_watch.py);
    None: never."""


@dataclass(slots=True)
class ActivityWorkerStats:
    """Counters, for tests and metrics."""

    received: int = 0
    started: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    pending: int = 0
    """Attempts that raised CompleteAsync (no outcome sent; completed by token)."""
    dead_lettered: int = 0
    cancels_received: int = 0
    """Cancels of this queue read from the cancels topic."""
    cancelled: int = 0
    """Running attempts stopped by a cancel."""
    skipped: int = 0
    """Tasks not started because they were cancelled first."""
    held: int = 0
    """Tasks held because their activity type was paused (counted when held)."""
    released: int = 0
    """Held tasks given back to the worker by an unpause."""
    heartbeats: int = 0
    commits: int = 0
    pauses: int = 0


class ActivityWorker:
    """Runs the activities of one task queue; ``await run()`` until :meth:`stop`.

    ``config`` is a :class:`~orchestrator.config.Settings` (its Kafka settings and
    topic layout are used) or a librdkafka config dict (then pass ``layout``).
    ``activities`` are callables (``@activity.defn`` names them) or a name → callable
    mapping. ``group_id`` defaults to ``<prefix>.activities.<queue>``. ``metrics``: the
    process's activity metrics to update (``SagaMetrics().activities``), or None.
    """

    def __init__(
        self,
        config: Settings | Mapping[str, Any],
        task_queue: str,
        activities: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]],
        *,
        layout: TopicLayout | None = None,
        group_id: str | None = None,
        options: ActivityWorkerOptions | None = None,
        converter: DataConverter | None = None,
        wire: WireFormat | None = None,
        identity: str | None = None,
        metrics: ActivityMetrics | None = None,
    ) -> None:
        if isinstance(config, Settings):
            self._kafka = config.kafka_config()
            layout = layout or TopicLayout(prefix=config.topic_prefix, shards=config.shards)
        else:
            self._kafka = dict(config)
        self.layout = layout or TopicLayout()
        self.task_queue = task_queue
        self.topic = self.layout.task_queue(task_queue)
        self.group_id = group_id or f"{self.layout.prefix}.activities.{task_queue}"
        self.options = options or ActivityWorkerOptions()
        self.converter = converter or DataConverter()
        self.wire = wire or WireFormat(source=f"/saga/activity-worker/{task_queue}")
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}"
        self.activities = activity_definitions(activities)
        self.stats = ActivityWorkerStats()
        self.metrics = metrics
        self._lag_exported: set[int] = set()
        self._held_exported: set[str] = set()
        self._stop = threading.Event()
        self._tracker: ContiguousOffsetTracker[int] = ContiguousOffsetTracker()
        self._committed: dict[int, int] = {}
        self._assigned: set[int] = set()
        self._paused = False
        self._running = 0
        self._backlog: deque[Message] = deque()  # fetched, not started
        self._backlog_bytes = 0  # of their records' values
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancels = CancelRegistry(self.options.cancel_memory, self.options.cancel_ttl_s)
        self._held: HeldTasks[Message] = HeldTasks(self.options.max_held)
        self._pauses: PauseReader | None = None
        #: attempts started here and not finished (a re-delivered task may run twice)
        self._running_attempts: dict[AttemptKey, list[AttemptCancel]] = {}
        self._shards = 0
        self._consumer: Consumer | None = None
        self._fences = FenceLimit(
            f"the consumer of task queue {task_queue!r}", self.options.group_instance_id
        )
        self._producer: Producer | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # --- lifecycle ---------------------------------------------------------------

    def stop(self) -> None:
        """Ask for a graceful shutdown (thread-safe): stop fetching, drain, commit, close."""
        self._stop.set()

    async def run(self) -> None:
        """Consume and run tasks until :meth:`stop`; then drain and close."""
        opts = self.options
        producer = Producer(
            {
                **self._kafka,
                **PROMPT_PRODUCER,
                "client.id": f"activity-worker-{self.identity}",
            }
        )
        consumer = self._new_consumer()
        self._producer, self._consumer = producer, consumer
        loop = asyncio.get_running_loop()
        self._shards = await loop.run_in_executor(None, self._partitions_of_commands, producer)
        cancels = CancelReader(
            self._kafka,
            self.layout.activity_cancels,
            self.task_queue,
            self.wire,
            lookback_s=opts.cancel_ttl_s,
            client_id=f"activity-cancels-{self.identity}",
            fetch_wait_max_ms=opts.fetch_wait_max_ms,
        )
        pauses = PauseReader(
            self._kafka,
            self.layout.activity_pauses,
            self.wire,
            task_queue=self.task_queue,
            client_id=f"activity-pauses-{self.identity}",
            fetch_wait_max_ms=opts.fetch_wait_max_ms,
        )
        self._pauses = pauses
        try:
            await loop.run_in_executor(None, cancels.open)
            await loop.run_in_executor(None, pauses.open)
            await self._catch_up(cancels)
            if not await loop.run_in_executor(None, pauses.catch_up, opts.pause_catch_up_s):
                log.warning("%s not read to its end in %.0fs; starting anyway",
                            pauses.topic, opts.pause_catch_up_s)
        except BaseException:
            cancels.close()
            pauses.close()
            consumer.close()
            raise
        pool = ThreadPoolExecutor(opts.sync_threads, thread_name_prefix="activity")
        runner = AttemptRunner(
            self.activities,
            self.converter,
            pool,
            self._send_heartbeat,
            identity=self.identity,
            heartbeat_throttle_s=opts.heartbeat_throttle_s,
            default_start_to_close_s=opts.default_start_to_close_s,
        )
        self._subscribe(consumer)
        log.info("activity worker %s consuming %s", self.identity, self.topic)
        watch = None
        if opts.group_watch_interval_s is not None:
            watch = GroupWatch(
                self._kafka, self.group_id, self.topic, interval_s=opts.group_watch_interval_s
            )
            watch.start()
        try:
            await self._consume(producer, runner, cancels)
            await self._drain(producer, cancels)
        finally:
            if watch is not None:
                await loop.run_in_executor(None, watch.stop)
            for task in self._tasks:
                task.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            self._close_consumer()
            cancels.close()
            pauses.close()
            producer.flush(5)
            self._producer = self._consumer = None
            log.info("activity worker %s stopped: %s", self.identity, self.stats)

    def start(self) -> ActivityWorker:
        """Run in a background thread with its own event loop; ``stop()`` ends it."""

        def target() -> None:
            try:
                asyncio.run(self.run())
            except BaseException as exc:  # surfaced to the owner through .error
                self.error = exc
                raise

        self._thread = threading.Thread(target=target, name="activity-worker", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for a :meth:`start`-ed worker to finish."""
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> ActivityWorker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.join(self.options.drain_timeout_s + 15)

    # --- the task queue's consumer --------------------------------------------------

    def _new_consumer(self) -> Consumer:
        opts = self.options
        return GroupConsumer(  # leaves the group on close, static member or not
            {
                **self._kafka,
                "group.id": self.group_id,
                **member_config(opts.group_instance_id),
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": opts.session_timeout_ms,
                "fetch.wait.max.ms": opts.fetch_wait_max_ms,
                "client.id": f"activity-worker-{self.identity}",
            }
        )

    def _subscribe(self, consumer: Consumer) -> None:
        consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def _rejoin_if_fenced(self, msg: Message) -> bool:
        """If ``msg`` says the group fenced our consumer (orchestrator/worker/fencing.py),
        replace it with a new one that joins again, and say so. The tasks it had fetched
        are dropped (the attempts running go on, but their offsets are not committed:
        the partitions' next owner runs them again, as after a lost assignment)."""
        error = msg.error()
        if error is None or not fences_the_consumer(error):
            return False
        self._fences.fenced(error)  # raises if fenced over and over
        old = self._consumer
        if old is None:
            return True
        self._forget(sorted(self._assigned))
        self._consumer = self._new_consumer()  # from now on, old's callbacks are ignored
        self._subscribe(self._consumer)
        # not waited for: see ShardProcessor._replace_fenced_consumer
        close_in_background(old, "fenced-consumer-close")
        return True

    def _close_consumer(self) -> None:
        """Commit the finished offsets and leave the group, both bounded: with a broker
        down, a synchronous commit or a close can block in librdkafka."""
        consumer = self._consumer
        if consumer is None:
            return

        def commit_and_close() -> None:
            self._commit(sync=True)
            consumer.close()  # its revocation runs here, while the loop waits for it

        finish_within(commit_and_close, "activity-consumer-close", _CLOSE_TIMEOUT_S)

    # --- the loop -----------------------------------------------------------------

    async def _catch_up(self, cancels: CancelReader) -> None:
        """Read the recent cancels before any task starts (bounded by cancel_catch_up_s)."""
        deadline = time.monotonic() + self.options.cancel_catch_up_s
        while not cancels.caught_up():
            self._apply_cancels(cancels.poll(timeout_s=0.05))
            if time.monotonic() >= deadline:
                log.warning("cancels of the last %.0fs not all read in %.0fs; starting anyway",
                            self.options.cancel_ttl_s, self.options.cancel_catch_up_s)
                return
            await asyncio.sleep(0)
        self._apply_cancels(cancels.poll())

    def _apply_cancels(self, cancels: list[ActivityCancel]) -> None:
        """Remember each cancel, and stop the attempt it names if it is running here."""
        for cancel in cancels:
            key = attempt_key(cancel)
            self._cancels.add(key)
            self.stats.cancels_received += 1
            if self.metrics is not None:
                self.metrics.cancels.labels(self.task_queue, "received").inc()
            for running in self._running_attempts.get(key, []):
                if running.requested:
                    continue
                log.info("cancelling activity %s attempt %d (%s)",
                         cancel.activity_type, cancel.attempt, "/".join(map(str, key[:3])))
                running.cancel()
                if self.metrics is not None:
                    self.metrics.cancels.labels(self.task_queue, "stopped").inc()

    async def _consume(
        self,
        producer: Producer,
        runner: AttemptRunner,
        cancels: CancelReader,
    ) -> None:
        opts = self.options
        pause_at = buffer_bound(opts)
        pause_bytes = opts.max_buffered_bytes
        idle = _IDLE_SLEEP_S[0]
        next_commit = time.monotonic() + opts.commit_interval_s
        next_sample = time.monotonic()
        while not self._stop.is_set():
            consumer = self._consumer
            assert consumer is not None  # set while the loop runs
            producer.poll(0)  # delivery callbacks: finished offsets
            self._apply_cancels(cancels.poll())  # before starting what they may cancel
            self._apply_pauses()
            while self._backlog and self._running < opts.max_in_flight:
                started = self._backlog.popleft()
                self._backlog_bytes -= _size(started)
                self._launch(started, runner)
            # a resumed partition costs a fetch round trip: pause only when a whole
            # buffer is waiting, resume while half of it is still there; a full held
            # buffer stops fetching until an unpause empties it
            waiting_n, waiting_bytes = len(self._backlog), self._backlog_bytes
            full = waiting_n >= pause_at or waiting_bytes >= pause_bytes or self._held.full
            if not self._paused and full:
                self._pause(consumer)
            elif (self._paused and waiting_n <= pause_at // 2
                  and waiting_bytes <= pause_bytes // 2 and not self._held.full):
                self._resume(consumer)
            # also serves rebalances; with nothing running, nothing else needs the loop
            waiting = not self._tasks and not self._backlog and not self._stop.is_set()
            messages = self._wait_for_tasks(consumer) if waiting else []
            messages += consumer.consume(opts.fetch_batch - len(messages), 0)
            for msg in messages:
                if self._rejoin_if_fenced(msg):
                    break  # what else the fenced consumer fetched is not ours any more
                self._accept(msg)
            now = time.monotonic()
            if now >= next_commit:
                self._commit(sync=False)
                next_commit = now + opts.commit_interval_s
            if self.metrics is not None and now >= next_sample:
                self._sample(consumer, self.metrics)
                next_sample = now + _SAMPLE_INTERVAL_S
            if messages or waiting:
                idle = _IDLE_SLEEP_S[0]
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(idle)
                idle = min(idle * 2, _IDLE_SLEEP_S[1])

    @staticmethod
    def _wait_for_tasks(consumer: Consumer) -> list[Message]:
        """Block in librdkafka until a record arrives or :data:`_IDLE_BLOCK_S` passes.
        ``poll`` returns at the first record; ``consume(n, timeout)`` would wait to fill
        its batch of n."""
        first = consumer.poll(_IDLE_BLOCK_S)
        return [] if first is None else [first]

    async def _drain(self, producer: Producer, cancels: CancelReader) -> None:
        if self._consumer is not None:
            self._pause(self._consumer)
        deadline = time.monotonic() + self.options.drain_timeout_s
        while self._tasks and time.monotonic() < deadline:
            producer.poll(0)
            self._apply_cancels(cancels.poll())  # a draining attempt can still be cancelled
            await asyncio.sleep(0.005)
        if self._tasks:
            log.warning("drain timed out: cancelling %d running task(s)", len(self._tasks))
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        producer.flush(10)  # deliveries of what was produced mark their offsets finished

    def _apply_pauses(self) -> None:
        """Read new pause records; give the held tasks of unpaused types back, ahead of
        the buffer (they came first)."""
        pauses = self._pauses
        if pauses is None or not pauses.poll():
            return
        for activity_type in list(self._held.counts()):
            if pauses.table.is_paused(self.task_queue, activity_type):
                continue
            released = self._held.release(activity_type)
            log.info("activity type %s unpaused: starting %d held task(s)",
                     activity_type, len(released))
            self.stats.released += len(released)
            self._backlog.extendleft(reversed(released))
            self._backlog_bytes += sum(_size(m) for m in released)

    def held(self) -> dict[str, int]:
        """Tasks held now per paused activity type (a copy; safe from any thread)."""
        return self._held.counts()

    def _accept(self, msg: Message) -> None:
        """Buffer a fetched record; its offset is now unfinished until its outcome is acked."""
        error = msg.error()
        if error is not None:
            if error.code() == KafkaError._FATAL:
                # a fatal error other than a fencing (see _rejoin_if_fenced): this
                # consumer fetches nothing more, so stop
                raise KafkaException(error)
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error on %s: %s", self.topic, error)
            return
        partition, offset = msg.partition(), msg.offset()
        if partition is None or offset is None:
            return
        self._tracker.start(partition, offset)
        self.stats.received += 1
        self._backlog.append(msg)
        self._backlog_bytes += _size(msg)

    def _launch(self, msg: Message, runner: AttemptRunner) -> None:
        partition, offset = msg.partition() or 0, msg.offset() or 0
        try:
            decoded = self.wire.decode_task(headers_of(msg), msg.value())
        except RecordDecodeError as exc:
            self.stats.started += 1
            self._dead_letter(msg, partition, offset, str(exc))
            return
        if attempt_key(decoded.record) in self._cancels:
            # the engine stopped waiting before it started: no call, no outcome
            self.stats.skipped += 1
            if self.metrics is not None:
                self.metrics.cancels.labels(self.task_queue, "skipped").inc()
            self._tracker.finish(partition, offset)
            return
        pauses, activity_type = self._pauses, decoded.record.activity_type
        if pauses is not None and pauses.table.is_paused(self.task_queue, activity_type):
            # not started: its offset stays unfinished until it runs after the unpause
            self._held.hold(activity_type, msg)
            self.stats.held += 1
            return
        self.stats.started += 1
        if self.metrics is not None:
            record = decoded.record
            waited = max(0.0, time.time() - record.scheduled_time / 1000)
            self.metrics.schedule_to_start.labels(record.activity_type).observe(waited)
            if record.attempt > 1:
                self.metrics.retries.labels(record.activity_type).inc()
        self._running += 1
        key, cancel = attempt_key(decoded.record), AttemptCancel()
        self._running_attempts.setdefault(key, []).append(cancel)  # a cancel reaches it
        task = asyncio.get_running_loop().create_task(
            self._run_task(
                partition,
                offset,
                decoded.cloud_event.traceparent,
                decoded.record,
                runner,
                cancel=cancel,
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

        def forget(_: asyncio.Task[None]) -> None:
            twins = self._running_attempts.get(key, [])
            if cancel in twins:
                twins.remove(cancel)
            if not twins:
                self._running_attempts.pop(key, None)

        task.add_done_callback(forget)

    async def _run_task(
        self,
        partition: int,
        offset: int,
        traceparent: str | None,
        task: ActivityTask,
        runner: AttemptRunner,
        *,
        cancel: AttemptCancel,
    ) -> None:
        began = time.monotonic()
        attributes = (  # built only for an SDK that records them
            tracing.kafka_attributes(
                self.topic,
                "process",
                **{
                    "messaging.destination.partition.id": str(partition),
                    "messaging.kafka.offset": offset,
                    "saga.workflow_id": task.workflow_id,
                    "saga.run_id": task.run_id,
                    "saga.activity_type": task.activity_type,
                    "saga.activity_seq": task.activity_seq,
                    "saga.attempt": task.attempt,
                },
            )
            if tracing.recording()
            else {}
        )
        name = f"saga activity {task.activity_type}"
        with tracing.hop(name, tracing.CONSUMER, traceparent, attributes) as hop:
            traceparent = hop.traceparent or traceparent  # the outcome is this span's child
            try:
                ran = await runner.run(task, cancel)
                if ran is None:  # CompleteAsync: the task token's holder reports it
                    hop.set("saga.outcome", "pending")
                    self._count_pending(task)
                    self._tracker.finish(partition, offset)
                    return
                outcome: ActivityOutcome = ran
                record = self._encode(task, outcome, traceparent)
            except RecordEncodeError as exc:  # e.g. a result over the record size limit
                outcome = runner.failed(task, Failure(message=str(exc), type="RecordEncodeError"))
                record = self._encode(task, outcome, traceparent)
            except Exception as exc:
                log.exception("activity task %s: worker error", task.idempotency_key)
                outcome = runner.failed(task, Failure(message=repr(exc), type="WorkerError"))
                record = self._encode(task, outcome, traceparent)
            finally:
                self._running -= 1
            if is_cancellation(outcome):
                hop.set("saga.outcome", "cancelled")
            elif isinstance(outcome, ActivityTaskFailed):
                hop.set("saga.outcome", "timed_out" if is_timeout(outcome) else "failed")
                hop.set("error.type", outcome.failure.type or "ActivityError")
                hop.fail(outcome.failure.message)
            else:
                hop.set("saga.outcome", "completed")
        self._count(task, outcome, time.monotonic() - began)
        self._produce(
            self.layout.commands, self._shard(task.workflow_id), record, (partition, offset)
        )

    def _encode(
        self, task: ActivityTask, outcome: ActivityOutcome, traceparent: str | None
    ) -> EncodedRecord:
        ce_id = f"{task.idempotency_key}/{task.attempt}/outcome"  # the same on re-delivery
        return self.wire.encode_command(outcome, ce_id=ce_id, traceparent=traceparent)

    def _count(self, task: ActivityTask, outcome: ActivityOutcome, seconds: float) -> None:
        if is_cancellation(outcome):
            self.stats.cancelled += 1
            kind = "cancelled"
        elif is_timeout(outcome):
            self.stats.timed_out += 1
            kind = "timed_out"
        elif isinstance(outcome, ActivityTaskFailed):
            self.stats.failed += 1
            kind = "failed_non_retryable" if outcome.failure.non_retryable else "failed"
        else:
            self.stats.completed += 1
            kind = "completed"
        metrics = self.metrics
        if metrics is None:
            return
        name = task.activity_type
        metrics.start_to_close.labels(name).observe(seconds)
        metrics.attempts.labels(name, kind).inc()
        if isinstance(outcome, ActivityTaskFailed) and kind != "cancelled":
            failure = outcome.failure
            retryable = "false" if failure.non_retryable else "true"
            metrics.failures.labels(name, failure.type, retryable).inc()

    def _count_pending(self, task: ActivityTask) -> None:
        self.stats.pending += 1
        if self.metrics is not None:
            self.metrics.attempts.labels(task.activity_type, "pending").inc()

    def _sample(self, consumer: Consumer, metrics: ActivityMetrics) -> None:
        """Lag (end of log - position) of each assigned partition, and the slots in use."""
        lags: dict[int, int] = {}
        if self._assigned:
            try:
                positions = consumer.position(
                    [TopicPartition(self.topic, p) for p in sorted(self._assigned)]
                )
                for tp in positions:
                    _, end = consumer.get_watermark_offsets(tp, cached=True)
                    if tp.offset >= 0 and end >= 0:
                        lags[tp.partition] = max(0, end - tp.offset)
            except KafkaException as exc:
                log.debug("lag unknown this time: %s", exc)
        self._lag_exported = metrics.sample(
            self.task_queue, lags, self._lag_exported, self._running, len(self._backlog)
        )
        paused = [] if self._pauses is None else self._pauses.table.paused(self.task_queue)
        self._held_exported = metrics.sample_pauses(
            self.task_queue, [p.activity_type for p in paused], self._held.counts(),
            self._held_exported,
        )

    # --- producing ------------------------------------------------------------------

    def _produce(
        self,
        topic: str,
        partition: int,
        record: _Out | EncodedRecord,
        finishes: tuple[int, int] | None,
    ) -> None:
        """Produce; once acknowledged, ``finishes`` (task partition, offset) is done."""
        producer = self._producer
        if producer is None:
            return

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                # idempotent retries are exhausted; try again rather than lose an outcome
                log.warning("produce to %s failed (%s); retrying", topic, err)
                self._produce(topic, partition, record, finishes)
                return
            if finishes is not None:
                self._tracker.finish(*finishes)

        while True:
            try:
                producer.produce(
                    topic,
                    value=record.value,
                    key=record.key,
                    partition=partition,
                    headers=list[tuple[str, str | bytes | None]](record.headers),
                    on_delivery=delivered,
                )
            except BufferError:  # local queue full: serve callbacks, then retry
                producer.poll(0.05)
            else:
                return

    def _send_heartbeat(self, beat: ActivityHeartbeat) -> None:
        self.stats.heartbeats += 1
        record = self.wire.encode_command(beat)
        self._produce(self.layout.commands, self._shard(beat.workflow_id), record, None)

    def _dead_letter(self, msg: Message, partition: int, offset: int, reason: str) -> None:
        self.stats.dead_lettered += 1
        if self.metrics is not None:
            self.metrics.dead_letters.labels("activity_worker", dlq_reason_label(reason)).inc()
        log.warning("task record %s/%d/%d to the DLQ: %s", self.topic, partition, offset, reason)
        # the original key, value and headers, plus why and where from
        headers = [(k, v) for k, v in headers_of(msg) if v is not None]
        headers.append((REASON_HEADER, reason.encode()[:4096]))
        headers.append((SOURCE_HEADER, f"{self.topic}/{partition}/{offset}".encode()))
        record = _Out(msg.key(), msg.value(), headers)
        self._produce(self.layout.dlq, 0, record, (partition, offset))

    def _shard(self, workflow_id: str) -> int:
        return shard_for(workflow_id, self._shards)

    def _partitions_of_commands(self, producer: Producer) -> int:
        topic = self.layout.commands
        metadata = producer.list_topics(topic, timeout=_METADATA_TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise RuntimeError(f"topic {topic} is missing; create the topics first")
        return len(metadata.partitions)

    # --- offsets, assignment, backpressure -----------------------------------------

    def _commit(self, *, sync: bool, only: Iterable[int] | None = None) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        wanted = set(only) if only is not None else None
        offsets = [
            TopicPartition(self.topic, p, o)
            for p, o in self._tracker.committable().items()
            if (wanted is None or p in wanted) and self._committed.get(p, -1) < o
        ]
        if not offsets:
            return
        try:
            if sync:
                consumer.commit(offsets=offsets, asynchronous=False)
            else:
                consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as exc:  # noqa: BLE001 - a failed commit is retried at the next interval
            log.warning("commit of %s failed: %s", offsets, exc)
            return
        self.stats.commits += 1
        for tp in offsets:
            self._committed[tp.partition] = tp.offset

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return  # a fenced consumer closing, or a stopped worker's
        self._assigned.update(tp.partition for tp in partitions)
        log.info("assigned %s", sorted(tp.partition for tp in partitions))
        if self._paused:
            consumer.incremental_assign(partitions)
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return
        revoked = [tp.partition for tp in partitions]
        log.info("revoked %s", sorted(revoked))
        self._commit(sync=True, only=revoked)
        self._forget(revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self._consumer:
            return
        lost = [tp.partition for tp in partitions]
        log.warning("lost %s (their running tasks will be re-delivered elsewhere)", sorted(lost))
        self._forget(lost)

    def _forget(self, partitions: list[int]) -> None:
        gone = set(partitions)
        self._backlog = deque(m for m in self._backlog if m.partition() not in gone)
        self._backlog_bytes = sum(_size(m) for m in self._backlog)
        self._held.discard(lambda m: m.partition() not in gone)
        for p in partitions:
            self._tracker.drop(p)
            self._committed.pop(p, None)
            self._assigned.discard(p)

    def _pause(self, consumer: Consumer) -> None:
        if self._paused:
            return
        self._paused = True
        self.stats.pauses += 1
        with contextlib.suppress(Exception):
            consumer.pause(consumer.assignment())

    def _resume(self, consumer: Consumer) -> None:
        self._paused = False
        with contextlib.suppress(Exception):
            consumer.resume(consumer.assignment())


#: the smallest buffer of fetched tasks before fetching pauses (see ``max_buffered``)
_MIN_BUFFER = 2000


def buffer_bound(options: ActivityWorkerOptions) -> int:
    """How many fetched tasks may wait to start before fetching pauses."""
    if options.max_buffered is not None:
        return options.max_buffered
    return max(_MIN_BUFFER, options.max_in_flight)


def _size(msg: Message) -> int:
    value = msg.value()
    return len(value) if value is not None else 0
