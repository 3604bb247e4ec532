"""The dispatcher of one flow-controlled task queue (``saga dispatcher``).

It reads ``<prefix>.tasks.<queue>.backlog`` (one partition: one owner, the process
holding the transactional id ``<prefix>.dispatch.<queue>``; a new one fences the
last), keeps the unreleased tasks in a
:class:`~orchestrator.flow.scheduler.FlowScheduler`, and every cycle releases the
tasks it picks to ``<prefix>.tasks.<queue>``, where activity workers read them as
from any queue. Records are forwarded byte for byte (headers included).

Exactly once: each cycle's releases and the new :class:`FlowState` (on the queue's
compacted state topic) go in one Kafka transaction. Releases are out of order, so
the state records the lowest unreleased backlog offset (``low``), the next offset
to read (``position``) and which offsets in ``[low, position)`` are still pending;
a restore reads from ``low`` and skips every other offset below ``position``. The
transactional id is fixed per queue, so a new dispatcher fences a stale one.

Rate limits survive a restart: the state carries the bucket levels and their wall
clock time; a new dispatcher starts from them (refilled by the time since), never
from full buckets.

The window: tasks released but not finished by the workers are counted from the
workers' committed offsets (group ``<prefix>.activities.<queue>``), per partition;
a release goes to the partition with the fewest. A restarted dispatcher starts
counting from zero, so it may exceed the window once, by at most the window.

Cancels: the dispatcher tails ``<prefix>.activity-cancels`` as the activity workers
do (:mod:`orchestrator.worker.activity_cancels`) and drops a backlog task whose
attempt was cancelled, when it reads it or when its turn comes, instead of
releasing it; it leaves the backlog like a released task (the state's pending
offsets). A task dropped at its turn has used its rate token.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from orchestrator.flow.configs import FlowConfigWatcher, read_state
from orchestrator.flow.scheduler import FlowConfig, FlowScheduler, Pending
from orchestrator.log.headers import Headers, headers_of
from orchestrator.log.topics import TopicLayout
from orchestrator.serde.errors import RecordDecodeError
from orchestrator.serde.records import ActivityCancel, FlowState
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.activity_cancels import (
    AttemptKey,
    CancelReader,
    CancelRegistry,
    attempt_key,
)

log = logging.getLogger("orchestrator.flow.dispatcher")


_CANCEL_TTL_S = 24 * 3600.0
"""How long the dispatcher remembers a cancel (the cancels topic keeps a day)."""
_CANCEL_CATCH_UP_S = 10.0

_MAX_KEYS = 5_000
"""Fairness keys whose counters and bucket levels a state record keeps at most."""

V = TypeVar("V", int, float)


def _top(values: Mapping[str, V], n: int, *, lowest: bool = False) -> dict[str, V]:
    """``values`` if it has at most ``n`` entries, else the ``n`` largest (or lowest)."""
    if len(values) <= n:
        return dict(values)
    ranked = sorted(values.items(), key=lambda kv: kv[1], reverse=not lowest)
    return dict(ranked[:n])


@dataclass(frozen=True, slots=True)
class _Task:
    key: bytes | None
    value: bytes
    headers: Headers
    ce_id: str
    attempt: AttemptKey


class PendingOffsets:
    """Unreleased backlog offsets as a flat sorted list of runs: ``[s0, e0, s1, e1, ...]``.

    Offsets arrive in increasing order. A run holds only offsets added and not yet
    removed: offsets that hold no task (transaction markers) break a run rather than
    join it, so none of them is left pending after every task is released."""

    def __init__(self, runs: list[int] | None = None) -> None:
        self.runs: list[int] = list(runs or [])

    def add(self, offset: int) -> None:
        """``offset`` is pending (greater than every offset added before)."""
        if self.runs and self.runs[-1] == offset:
            self.runs[-1] = offset + 1
        else:
            self.runs += [offset, offset + 1]

    def __contains__(self, offset: int) -> bool:
        i = bisect.bisect_right(self.runs, offset)
        return i % 2 == 1

    def remove(self, offset: int) -> None:
        """``offset`` was released (it must be pending)."""
        i = bisect.bisect_right(self.runs, offset) - 1
        start, end = self.runs[i], self.runs[i + 1]
        if start == offset and end == offset + 1:
            del self.runs[i : i + 2]
        elif start == offset:
            self.runs[i] = offset + 1
        elif end == offset + 1:
            self.runs[i + 1] = offset
        else:
            self.runs[i + 1 : i + 1] = [offset, offset + 1]

    def low(self, position: int) -> int:
        """The lowest pending offset, or ``position`` if none."""
        return self.runs[0] if self.runs else position


class Dispatcher:
    """Releases one queue's backlog under its flow control (module doc)."""

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        layout: TopicLayout,
        queue: str,
        *,
        cycle_s: float = 0.02,
        state_interval_s: float = 1.0,
        worker_group: str | None = None,
        clock: Callable[[], float] = time.time,
        on_state: Callable[[FlowState], None] | None = None,
    ) -> None:
        """``clock``: wall-clock seconds (bucket levels are persisted against it).
        ``on_state``: called with each state committed (metrics)."""
        self.kafka = dict(kafka_config)
        self.layout = layout
        self.queue = queue
        self.cycle_s = cycle_s
        self.state_interval_s = state_interval_s
        self.worker_group = worker_group or f"{layout.prefix}.activities.{queue}"
        self.clock = clock
        self.on_state = on_state
        self.wire = WireFormat()
        self.backlog = layout.backlog(queue)
        self.target = layout.task_queue(queue)
        self.scheduler: FlowScheduler[_Task] | None = None
        self.pending = PendingOffsets()
        self.position = 0
        self._restored_below = 0
        self._ce_ids: set[str] = set()
        self._unstarted: dict[int, deque[int]] = {}
        self._dirty = False
        self._next_state = 0.0
        #: the last cycle found the window full: the workers' offsets (committed every
        #: 0.2 s) are asked again after ``cycle_s``, not at once in a 1 ms loop
        self._window_full = False
        #: cancels of this queue's attempts; a backlog task can wait long (rate limits)
        self._cancels = CancelRegistry(max_entries=50_000, ttl_s=_CANCEL_TTL_S)
        self.dropped = 0
        """Backlog tasks not released because their attempt was cancelled."""

    # --- run ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Dispatch until ``stop`` is set."""
        watcher = FlowConfigWatcher(self.kafka, self.layout)
        config = watcher.configs.get(self.queue)
        if config is None:
            watcher.close()
            raise RuntimeError(
                f"task queue {self.queue!r} has no flow control: `saga queue configure` it first"
            )
        self.config = config
        group = f"{self.layout.prefix}.dispatch.{self.queue}"
        producer = Producer(
            {
                **self.kafka,
                "transactional.id": group,
                "enable.idempotence": True,
                "linger.ms": 2,
            }
        )
        producer.init_transactions(30)  # fences a dispatcher still running under this id
        # ownership is the transactional id, not a consumer group: starting fences
        # the previous owner at once (no session timeout to wait out after a kill -9)
        consumer = Consumer(
            {
                **self.kafka,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.partition.eof": False,
                # the engine writes the backlog in transactions: a fetch that arrives
                # while one is open must not wait out librdkafka's 500 ms default
                "fetch.wait.max.ms": 10,
            }
        )
        offsets = Consumer(
            {**self.kafka, "group.id": self.worker_group, "enable.auto.commit": False}
        )
        partitions = len(
            consumer.list_topics(self.target, timeout=10).topics[self.target].partitions
        )
        self._unstarted = {p: deque() for p in range(partitions)}
        cancels = self._open_cancels()
        self._restore(consumer)
        try:
            while not stop.is_set():
                if cancels is not None:
                    self._note_cancels(cancels.poll())
                latest = watcher.configs.get(self.queue)
                if latest is not None and latest != config and self.scheduler is not None:
                    config = self.config = latest
                    self.scheduler.reconfigure(config, self.clock())
                wait = self.cycle_s
                if self.scheduler is not None and len(self.scheduler) and not self._window_full:
                    wait = min(wait, max(0.001, self.scheduler.wait_s(self.clock())))
                for msg in consumer.consume(1000, wait):
                    self._read(msg)
                if self.scheduler is not None:
                    self._cycle(producer, consumer, offsets, config)
        finally:
            if cancels is not None:
                cancels.close()
            watcher.close()
            offsets.close()
            consumer.close()
            producer.flush(5)

    def _open_cancels(self) -> CancelReader | None:
        """Read the last day of this queue's cancels (bounded in time) and keep tailing
        them; None without the topic (a layout created before it: run `saga topics`),
        in which case the workers alone skip cancelled tasks."""
        cancels = CancelReader(
            self.kafka,
            self.layout.activity_cancels,
            self.queue,
            self.wire,
            lookback_s=_CANCEL_TTL_S,
            client_id=f"dispatcher-cancels-{self.queue}",
        )
        try:
            cancels.open()
        except RuntimeError as exc:
            log.warning("dispatching %s without its cancels: %s", self.queue, exc)
            return None
        deadline = time.monotonic() + _CANCEL_CATCH_UP_S
        while not cancels.caught_up() and time.monotonic() < deadline:
            self._note_cancels(cancels.poll(timeout_s=0.05))
        return cancels

    def _note_cancels(self, cancels: list[ActivityCancel]) -> None:
        for cancel in cancels:
            self._cancels.add(attempt_key(cancel))

    def _restore(self, consumer: Consumer) -> None:
        """Start from the last committed state (read after fencing the previous owner,
        whose open transaction that aborted)."""
        config = self.config
        state = read_state(self.kafka, self.layout, self.queue)
        now = self.clock()
        if state is None:
            self.scheduler = FlowScheduler(config, now)
            self.pending = PendingOffsets()
            self.position = self._restored_below = 0
        else:
            # bucket levels as of the state's time; the scheduler refills them from then
            self.scheduler = FlowScheduler(
                config,
                state.time_ms / 1000,
                queue_tokens=state.queue_tokens,
                key_tokens=state.key_tokens,
            )
            c = self.scheduler.counters
            c.released, c.throttled_queue, c.window_full = (
                state.released,
                state.throttled,
                state.window_full,
            )
            c.released_keys, c.throttled_keys = (
                dict(state.released_keys),
                dict(state.throttled_keys),
            )
            self.pending = PendingOffsets(state.pending)
            self.position = self._restored_below = state.position
        self._ce_ids.clear()
        low = self.pending.low(self.position)
        consumer.assign([TopicPartition(self.backlog, 0, low)])
        log.info(
            "dispatching %s from backlog offset %d (read up to %d before)",
            self.queue,
            low,
            self.position,
        )

    def _read(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("reading %s: %s", self.backlog, err)
            return
        if self.scheduler is None:
            return
        offset = msg.offset() or 0
        restored = offset < self._restored_below
        if restored and offset not in self.pending:
            return  # released (or skipped) before the restart
        value = msg.value()
        headers = headers_of(msg)
        try:
            task = self.wire.decode_task(headers, value).record
            ce_id = (dict(headers).get("ce_id") or b"").decode()
        except RecordDecodeError as exc:
            log.warning("undecodable task at %s offset %d skipped: %s", self.backlog, offset, exc)
            self._done_unread(offset, restored)
            return
        if ce_id and ce_id in self._ce_ids:
            self._done_unread(offset, restored)  # the same attempt written twice (early dispatch)
            return
        if attempt_key(task) in self._cancels:
            self.dropped += 1
            self._done_unread(offset, restored)  # cancelled before its turn: never released
            return
        if not restored:
            self.pending.add(offset)
            self.position = offset + 1
        self._ce_ids.add(ce_id)
        assert value is not None
        self.scheduler.add(
            Pending(
                offset=offset,
                priority=task.priority,
                key=task.fairness_key,
                item=_Task(msg.key(), value, headers, ce_id, attempt_key(task)),
                enqueued=time.monotonic(),
            )
        )

    def _done_unread(self, offset: int, restored: bool) -> None:
        if restored:
            self.pending.remove(offset)
        else:
            self.position = offset + 1
        self._dirty = True

    # --- one dispatch cycle -----------------------------------------------------------

    def _room(self, offsets: Consumer, config: FlowConfig) -> int | None:
        if config.window <= 0:
            return None
        parts = [TopicPartition(self.target, p) for p in self._unstarted]
        try:
            committed = offsets.committed(parts, timeout=5)
        except KafkaException as exc:  # the last counts hold until the next cycle asks
            log.warning("reading the workers' offsets on %s failed: %s", self.target, exc)
            committed = []
        for tp in committed:
            done = self._unstarted[tp.partition]
            while done and done[0] < tp.offset:
                done.popleft()
        return max(0, config.window - self.unstarted())

    def unstarted(self) -> int:
        """Released tasks the workers have not finished (as last measured)."""
        return sum(len(d) for d in self._unstarted.values())

    def _cycle(
        self, producer: Producer, consumer: Consumer, offsets: Consumer, config: FlowConfig
    ) -> None:
        scheduler = self.scheduler
        assert scheduler is not None
        now = self.clock()
        batch: list[Pending[_Task]] = []
        if len(scheduler):
            room = self._room(offsets, config)
            batch = scheduler.next_batch(now, room) if room is None or room > 0 else []
            self._window_full = room == 0
            if room == 0:
                scheduler.counters.window_full += 1
        if not batch:
            # the state also goes out now and then while tasks wait (describe, metrics)
            if time.monotonic() < self._next_state:
                return
            if not self._dirty and not len(scheduler):
                self._next_state = time.monotonic() + self.state_interval_s
                return
        delivered: list[tuple[int, int]] = []

        def report(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                delivered.append((msg.partition() or 0, msg.offset() or 0))

        try:
            producer.begin_transaction()
            for pending in batch:
                task = pending.item
                if task.attempt in self._cancels:  # cancelled while it waited its turn
                    self._drop(scheduler, pending)
                    continue
                partition = min(self._unstarted, key=lambda p: len(self._unstarted[p]))
                self._unstarted[partition].append(-1)  # placeholder until delivered
                producer.produce(
                    self.target,
                    key=task.key,
                    value=task.value,
                    headers=list(task.headers),
                    partition=partition,
                    on_delivery=report,
                )
                self.pending.remove(pending.offset)
                self._ce_ids.discard(task.ce_id)
            low = self.pending.low(self.position)
            state = self._state(scheduler, now, low)
            encoded = self.wire.encode_flow(state, f"{self.queue}/{state.time_ms}/{low}")
            producer.produce(
                self.layout.flow_state(self.queue),
                key=encoded.key,
                value=encoded.value,
                headers=list(encoded.headers),
                partition=0,
            )
            producer.commit_transaction(30)
        except KafkaException as exc:
            # fenced (another dispatcher took over) or the broker failed: this process
            # ends; a new one restores from the last committed state
            log.warning(
                "release of %d tasks of %s failed, restoring: %s", len(batch), self.queue, exc
            )
            with contextlib.suppress(KafkaException):
                producer.abort_transaction(10)
            raise
        for d in self._unstarted.values():
            while d and d[-1] == -1:
                d.pop()
        for partition, offset in sorted(delivered):
            self._unstarted[partition].append(offset)
        self._dirty = False
        self._next_state = time.monotonic() + self.state_interval_s
        if self.on_state is not None:
            self.on_state(state)

    def _drop(self, scheduler: FlowScheduler[_Task], pending: Pending[_Task]) -> None:
        """Take a cancelled task out of the backlog without releasing it (the scheduler
        counted it released when it picked it: that is undone)."""
        self.pending.remove(pending.offset)
        self._ce_ids.discard(pending.item.ce_id)
        c = scheduler.counters
        c.released -= 1
        left = c.released_keys.get(pending.key, 1) - 1
        if left > 0:
            c.released_keys[pending.key] = left
        else:
            c.released_keys.pop(pending.key, None)
        self.dropped += 1

    def _state(self, scheduler: FlowScheduler[_Task], now: float, low: int) -> FlowState:
        queue_tokens, key_tokens = scheduler.bucket_state(now)
        c = scheduler.counters
        return FlowState(
            queue=self.queue,
            time_ms=int(now * 1000),
            low=low,
            position=self.position,
            pending=list(self.pending.runs),
            queue_tokens=queue_tokens,
            # bounded, so that the record stays far below Kafka's 1 MiB whatever the
            # number of keys: the emptiest buckets (a restart must not refill those),
            # the largest counts (what describe and the metrics show)
            key_tokens=_top(key_tokens, _MAX_KEYS, lowest=True),
            released=c.released,
            released_keys=_top(c.released_keys, _MAX_KEYS),
            throttled=c.throttled_queue,
            throttled_keys=_top(c.throttled_keys, _MAX_KEYS),
            window_full=c.window_full,
            waiting=_top({f"{p}/{k}": n for (p, k), n in scheduler.pending().items()}, _MAX_KEYS),
            unstarted=self.unstarted(),
        )
