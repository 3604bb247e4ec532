"""The activity worker: consumes a task queue, runs attempts, sends outcomes to the shards.

It reads ``<prefix>.tasks.<queue>`` in a consumer group and runs many tasks at once per
partition. A task's offset counts as finished only when its outcome record has been
acknowledged by the broker, and only the contiguous finished prefix of each partition
is committed: a crash re-delivers every task whose outcome may not have been written
(at least once, with the same idempotency key). An attempt that raised
``activity.CompleteAsync`` sends no outcome: its offset is finished at once, and the
holder of its task token reports it. Undecodable records go to ``<prefix>.dlq``. At
most ``max_in_flight`` tasks run at once; fetched tasks beyond that wait in a buffer,
and a full buffer pauses fetching until half of it is started.

Cancels (:mod:`orchestrator.worker.activity_cancels`): a cancel stops the attempt it
names if this worker runs it, and makes the worker skip the task (no outcome; its
offset is finished) if it comes later. Paused activity types
(:mod:`orchestrator.worker.activity_pauses`): the pauses topic is read whole before
the first task starts; a task of a paused type is held, not started (its offset
unfinished), and starts on unpause in the order it came; at most ``max_held`` are held,
and at that bound the worker stops fetching.

The parts, one module each beside this one: the options (``activity_options``); the
queue's consumer, its group callbacks, fencing and offsets (``activity_consumer``); the
fetched tasks not started yet (``activity_buffer``); the attempts running, each in its
trace span (``activity_attempts``; the call itself: ``activity_runner``); the records
sent (``activity_outcomes``); the counters and metrics (``activity_metrics``). This
module owns the poll loop and the lifecycle, and routes cancels and pauses to tasks.

Every Kafka call happens on the event loop thread (polls never block), so the
consumers, the producer and the rebalance callbacks need no locks. The exception: on
stop, the last commit and the close run on a helper thread, bounded, while the loop
thread waits for them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from orchestrator.config import Settings
from orchestrator.converter import DataConverter
from orchestrator.log.partitioner import shard_for
from orchestrator.log.producing import PROMPT_PRODUCER
from orchestrator.log.topics import TopicLayout
from orchestrator.metrics import ActivityMetrics
from orchestrator.serde.errors import RecordDecodeError
from orchestrator.serde.wire import EncodedRecord, WireFormat
from orchestrator.worker.activity_attempts import RunningAttempts
from orchestrator.worker.activity_buffer import TaskBuffer
from orchestrator.worker.activity_cancels import (
    AttemptCancels,
    CancelReader,
    CancelRegistry,
    attempt_key,
)
from orchestrator.worker.activity_consumer import TaskQueueConsumer
from orchestrator.worker.activity_metrics import (
    ActivityCounts,
    ActivityWorkerStats,
    partition_lags,
)
from orchestrator.worker.activity_options import ActivityWorkerOptions, buffer_bound
from orchestrator.worker.activity_outcomes import OutcomeSender, partitions_of_commands
from orchestrator.worker.activity_pauses import PauseReader
from orchestrator.worker.activity_runner import AttemptRunner, activity_definitions
from orchestrator.worker.group_watch import GroupWatch
from orchestrator.worker.shard.records import OutRecord, headers_of
from orchestrator.worker.task_handoff import HANDED, HandoffInbox, TaskHandoff

__all__ = ["ActivityWorker", "ActivityWorkerOptions", "ActivityWorkerStats"]

log = logging.getLogger(__name__)

_IDLE_SLEEP_S = (0.0005, 0.002)  # adaptive sleep between empty polls: min, max (latency)
#: with no attempt running, the loop waits inside librdkafka for this long at most: a
#: task that arrives wakes it at once, and an idle worker costs no CPU (spinning on the
#: adaptive sleep cost 5% of a core per idle worker)
_IDLE_BLOCK_S = 0.1
#: ... and while the engine of this process may hand a task over (task_handoff.py)
_AWAKE_BLOCK_S = 0.001
_SAMPLE_INTERVAL_S = 2.0  # lag and in-flight gauges, when metrics are exported


class ActivityWorker:
    """Runs the activities of one task queue; ``await run()`` until :meth:`stop`.

    ``config`` is a :class:`~orchestrator.config.Settings` (its Kafka settings and
    topic layout are used) or a librdkafka config dict (then pass ``layout``).
    ``activities`` are callables (``@activity.defn`` names them) or a name → callable
    mapping. ``group_id`` defaults to ``<prefix>.activities.<queue>``. ``metrics``: the
    process's activity metrics to update (``SagaMetrics().activities``), or None.
    ``handoff``: join it so that an engine worker of this process may hand this
    queue's tasks over without the queue (orchestrator/worker/task_handoff.py).
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
        handoff: TaskHandoff | None = None,
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
        self.options = opts = options or ActivityWorkerOptions()
        self.converter = converter or DataConverter()
        self.wire = wire or WireFormat(source=f"/saga/activity-worker/{task_queue}")
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}"
        self.activities = activity_definitions(activities)
        self._counts = ActivityCounts(task_queue, metrics)
        self.stats = self._counts.stats
        self.metrics = metrics
        self._stop = threading.Event()
        self._buffer = TaskBuffer(  # fetched, not started
            pause_at=buffer_bound(opts), pause_bytes=opts.max_buffered_bytes, max_held=opts.max_held
        )
        self._queue = TaskQueueConsumer(
            self._kafka,
            topic=self.topic,
            group_id=self.group_id,
            task_queue=task_queue,
            identity=self.identity,
            options=opts,
            counts=self._counts,
            dropped=self._buffer.drop,
        )
        self._cancels = AttemptCancels(
            CancelRegistry(opts.cancel_memory, opts.cancel_ttl_s), self._counts
        )
        self._pauses: PauseReader | None = None
        self._running = 0  # attempts running, as last seen by the loop
        #: the engine of this process hands this queue's tasks here (task_handoff.py)
        self._handoff = handoff
        self._inbox = HandoffInbox(self.topic, self._free_slots)
        self._thread: threading.Thread | None = None
        self._watch: GroupWatch | None = None  # on the queue's group, while running
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
        consumer = self._queue.open()
        loop = asyncio.get_running_loop()
        shards = await loop.run_in_executor(None, partitions_of_commands, producer, self.layout)
        sender = OutcomeSender(
            producer,
            self.layout,
            self.wire,
            shards=shards,
            task_topic=self.topic,
            finished=self._queue.offsets.finish,
            counts=self._counts,
        )
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
            await self._cancels.catch_up(cancels, opts.cancel_catch_up_s)
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
            sender.heartbeat,
            identity=self.identity,
            heartbeat_throttle_s=opts.heartbeat_throttle_s,
            default_start_to_close_s=opts.default_start_to_close_s,
        )
        attempts = RunningAttempts(
            runner,
            self._outcome_to(sender),
            self._cancels,
            self._counts,
            wire=self.wire,
            topic=self.topic,
            finished=self._queue.offsets.finish,
        )
        self._subscribe(loop)
        watch = self._watch = None
        if opts.group_watch_interval_s is not None:
            watch = self._watch = GroupWatch(
                self._kafka,
                self.group_id,
                self.topic,
                interval_s=opts.group_watch_interval_s,
                member_grace_s=2 * opts.session_timeout_ms / 1000,
            )
            watch.start()
        try:
            await self._consume(producer, attempts, sender, cancels)
            self._leave_handoff(producer)
            await self._drain(producer, attempts, cancels)
        finally:
            self._leave_handoff(producer)
            if watch is not None:
                await loop.run_in_executor(None, watch.stop)
            attempts.cancel_all()
            pool.shutdown(wait=False, cancel_futures=True)
            self._queue.close()
            cancels.close()
            pauses.close()
            producer.flush(5)
            sender.close()
            self._queue.closed()
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

    def held(self) -> dict[str, int]:
        """Tasks held now per paused activity type (a copy; safe from any thread)."""
        return self._buffer.held.counts()

    # --- the loop -----------------------------------------------------------------

    async def _consume(
        self,
        producer: Producer,
        attempts: RunningAttempts,
        sender: OutcomeSender,
        cancels: CancelReader,
    ) -> None:
        opts, buffer, queue = self.options, self._buffer, self._queue
        idle = _IDLE_SLEEP_S[0]
        next_commit = time.monotonic() + opts.commit_interval_s
        next_sample = time.monotonic()
        while not self._stop.is_set():
            consumer = queue.current
            assert consumer is not None  # set while the loop runs
            producer.poll(0)  # delivery callbacks: finished offsets
            self._cancels.apply(cancels.poll())  # before starting what they may cancel
            self._apply_pauses()
            for handed in self._inbox.take():
                self._launch_handed(handed, attempts, sender, producer)
            while len(buffer) and attempts.running < opts.max_in_flight:
                self._launch(buffer.next(), attempts, sender)
            self._running = attempts.running
            # a resumed partition costs a fetch round trip: pause only when a whole
            # buffer is waiting, resume while half of it is still there; a full held
            # buffer stops fetching until an unpause empties it
            if not queue.paused and buffer.full():
                queue.pause()
            elif queue.paused and buffer.low():
                queue.resume()
            # also serves rebalances; with nothing running, nothing else needs the loop
            waiting = not attempts.tasks and not len(buffer) and not self._stop.is_set()
            messages = await self._wait_for_tasks(consumer) if waiting else []
            messages += consumer.consume(opts.fetch_batch - len(messages), 0)
            if messages:
                self._inbox.wake()
            for msg in messages:
                if self._rejoin_if_fenced(msg):
                    break  # what else the fenced consumer fetched is not ours any more
                self._accept(msg)
            now = time.monotonic()
            if now >= next_commit:
                queue.commit(sync=False)
                self._look_after_member(consumer)  # as often as it commits
                next_commit = now + opts.commit_interval_s
            if self.metrics is not None and now >= next_sample:
                self._sample(consumer, attempts.running)
                next_sample = now + _SAMPLE_INTERVAL_S
            if messages or waiting:
                idle = _IDLE_SLEEP_S[0]
                await asyncio.sleep(0)
            else:
                await self._inbox.wait(idle)  # a task handed over ends it at once
                idle = min(idle * 2, _IDLE_SLEEP_S[1])

    async def _wait_for_tasks(self, consumer: Consumer) -> list[Message]:
        """Block in librdkafka until a record arrives or :data:`_IDLE_BLOCK_S` passes.
        ``poll`` returns at the first record; ``consume(n, timeout)`` would wait to fill
        its batch of n. While the engine of this process may hand a task over, wait on
        the loop instead, which an offer wakes (nothing wakes a wait inside the Kafka
        client), and look for fetched tasks every :data:`_AWAKE_BLOCK_S`."""
        if self._inbox.awake():
            await self._inbox.wait(_AWAKE_BLOCK_S)
            return []
        first = consumer.poll(_IDLE_BLOCK_S)
        return [] if first is None else [first]

    def _outcome_to(
        self, sender: OutcomeSender
    ) -> Callable[[str, EncodedRecord, tuple[int, int]], None]:
        """Where an attempt's outcome goes: a handed task's back to the engine of this
        process in memory if it still serves the run's shard, any other to Kafka."""
        handoff, inbox = self._handoff, self._inbox
        if handoff is None:
            return sender.outcome

        def send(workflow_id: str, record: EncodedRecord, finishes: tuple[int, int]) -> None:
            # the run's next step comes right after this outcome: stay awake for it,
            # however long this attempt ran since the worker last fetched or took a task
            inbox.wake()
            handed = finishes[0] == HANDED
            if not handed or not handoff.give_back(shard_for(workflow_id, sender.shards), record):
                sender.outcome(workflow_id, record, finishes)

        return send

    def _subscribe(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start consuming the queue, and take tasks handed over by the engine."""
        self._queue.subscribe()
        if self._handoff is not None:
            self._inbox.bind(loop)
            self._handoff.join(self._inbox)
        log.info("activity worker %s consuming %s", self.identity, self.topic)

    def _free_slots(self) -> int:
        """Attempts this worker would start now (read by the engine's thread)."""
        return self.options.max_in_flight - self._running - len(self._buffer)

    def _leave_handoff(self, producer: Producer) -> None:
        """Take no more handed tasks; send those not started to the queue."""
        if self._handoff is None:
            return
        self._handoff.leave(self._inbox)
        for record in self._inbox.close():
            self._to_queue(producer, record)

    def _to_queue(self, producer: Producer, record: OutRecord) -> None:
        """Send a handed task through the queue after all (any worker of it may run it)."""
        headers: list[tuple[str, str | bytes | None]] = list(record.headers)
        producer.produce(record.topic, key=record.key, value=record.value, headers=headers)

    async def _drain(
        self, producer: Producer, attempts: RunningAttempts, cancels: CancelReader
    ) -> None:
        if self._queue.current is not None:
            self._queue.pause()
        deadline = time.monotonic() + self.options.drain_timeout_s
        while attempts.tasks and time.monotonic() < deadline:
            producer.poll(0)
            self._cancels.apply(cancels.poll())  # a draining attempt can still be cancelled
            await asyncio.sleep(0.005)
        if attempts.tasks:
            log.warning("drain timed out: cancelling %d running task(s)", len(attempts.tasks))
            attempts.cancel_all()
            await asyncio.gather(*attempts.tasks, return_exceptions=True)
        producer.flush(10)  # deliveries of what was produced mark their offsets finished

    def _sample(self, consumer: Consumer, running: int) -> None:
        """Lag (end of log - position) of each assigned partition, and the slots in use."""
        lags = partition_lags(consumer, self.topic, self._queue.offsets.assigned)
        paused = [] if self._pauses is None else self._pauses.table.paused(self.task_queue)
        self._counts.sample(
            lags, running, len(self._buffer), [p.activity_type for p in paused],
            self._buffer.held.counts(),
        )

    def _apply_pauses(self) -> None:
        """Read new pause records; give the held tasks of unpaused types back, ahead of
        the buffer (they came first)."""
        pauses = self._pauses
        if pauses is None or not pauses.poll():
            return
        for activity_type in list(self._buffer.held.counts()):
            if pauses.table.is_paused(self.task_queue, activity_type):
                continue
            released = self._buffer.release(activity_type)
            log.info("activity type %s unpaused: starting %d held task(s)",
                     activity_type, len(released))
            self.stats.released += len(released)

    def _look_after_member(self, consumer: Consumer) -> None:
        """Tell the group watch the queue consumer's member id (from this thread only:
        see group_watch.py); replace the consumer if the watch found it gone from the
        group. What it fetched and did not finish is read again by the next owner."""
        watch = self._watch
        if watch is None:
            return
        watch.note_member(consumer.memberid())
        if watch.member_lost.is_set():
            watch.member_lost.clear()
            self._queue.replace()

    def _rejoin_if_fenced(self, msg: Message) -> bool:
        """If ``msg`` says the group fenced the queue's consumer, replace it (see
        :meth:`TaskQueueConsumer.rejoin_if_fenced`) and say so."""
        return self._queue.rejoin_if_fenced(msg)

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
        self._queue.offsets.start(partition, offset)
        self.stats.received += 1
        self._buffer.add(msg)

    def _launch_handed(
        self,
        handed: OutRecord,
        attempts: RunningAttempts,
        sender: OutcomeSender,
        producer: Producer,
    ) -> None:
        """Start a task the engine of this process handed over, as :meth:`_launch` does
        a fetched one; it has no offset. One of a paused type goes to the queue, to be
        held there in order with the others."""
        self.stats.received += 1
        self.stats.handed += 1
        try:
            decoded = self.wire.decode_task(handed.headers, handed.value)
        except RecordDecodeError:  # the engine encoded it: not expected
            log.exception("handed task on %s not decodable: sent to the queue", self.topic)
            self._to_queue(producer, handed)
            return
        record = decoded.record
        if attempt_key(record) in self._cancels:
            self._counts.skipped()
            return
        pauses = self._pauses
        if pauses is not None and pauses.table.is_paused(self.task_queue, record.activity_type):
            self._to_queue(producer, handed)
            return
        attempts.start(
            record, partition=HANDED, offset=HANDED,
            traceparent=decoded.cloud_event.traceparent,
        )

    def _launch(self, msg: Message, attempts: RunningAttempts, sender: OutcomeSender) -> None:
        """Start a buffered task, or skip it (cancelled), hold it (its type is paused) or
        dead-letter it (undecodable)."""
        partition, offset = msg.partition() or 0, msg.offset() or 0
        try:
            decoded = self.wire.decode_task(headers_of(msg), msg.value())
        except RecordDecodeError as exc:
            self.stats.started += 1
            sender.dead_letter(msg, partition, offset, str(exc))
            return
        record = decoded.record
        key = attempt_key(record)
        if key in self._cancels:
            # the engine stopped waiting before it started: no call, no outcome
            self._counts.skipped()
            self._queue.offsets.finish(partition, offset)
            return
        pauses = self._pauses
        if pauses is not None and pauses.table.is_paused(self.task_queue, record.activity_type):
            # not started: its offset stays unfinished until it runs after the unpause
            self._buffer.held.hold(record.activity_type, msg)
            self.stats.held += 1
            return
        attempts.start(
            record, partition=partition, offset=offset,
            traceparent=decoded.cloud_event.traceparent,
        )
