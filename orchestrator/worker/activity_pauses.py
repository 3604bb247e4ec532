"""Paused activity types: the control topic, the table read from it, the held tasks.

An operator pauses activity type T on task queue Q (``saga activity pause``): a
:class:`~orchestrator.serde.records.ActivityPause` record is written to
``<prefix>.activity-pauses`` (compacted, one partition, key ``{Q}/{T}``). Every
activity worker of Q reads the topic whole with its own consumer, outside any
group, before it starts any task (a pause survives a worker restart), and keeps
tailing it. A task of a paused type is not started: the worker holds it in a
:class:`HeldTasks` buffer, its offset stays unfinished (so it is never committed
past, and a crash re-delivers it), and tasks of other types keep flowing. On
unpause the held tasks start, in the order they came, per type.

Memory: the held buffer is bounded (``max_held``). When it is full the worker
stops fetching from its queue until an unpause frees it: other types then wait
too, which is the price of not dropping or re-writing tasks. See
docs/operations.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from orchestrator.log.control_reader import fetched, reader_config, require_partitions
from orchestrator.log.headers import headers_of
from orchestrator.log.topics import TopicLayout
from orchestrator.serde.errors import RecordDecodeError
from orchestrator.serde.records import ActivityPause
from orchestrator.serde.wire import WireFormat

__all__ = [
    "HeldTasks",
    "PauseFollower",
    "PauseReader",
    "PauseTable",
    "read_pauses",
    "write_pause",
]

log = logging.getLogger(__name__)

_METADATA_TIMEOUT_S = 30.0
T = TypeVar("T")

PauseKey = tuple[str, str]
"""(task queue, activity type)."""


class PauseTable:
    """The latest :class:`ActivityPause` of every (queue, activity type) read so far."""

    def __init__(self) -> None:
        self._latest: dict[PauseKey, ActivityPause] = {}

    def apply(self, record: ActivityPause) -> bool:
        """Take a record; True when it changes whether its type is paused."""
        key = (record.task_queue, record.activity_type)
        before = self._latest.get(key)
        self._latest[key] = record
        was = before is not None and before.paused
        return was != record.paused

    def is_paused(self, task_queue: str, activity_type: str) -> bool:
        """Whether tasks of ``activity_type`` on ``task_queue`` must not start now."""
        record = self._latest.get((task_queue, activity_type))
        return record is not None and record.paused

    def unpaused_at(self, task_queue: str, activity_type: str) -> int | None:
        """Epoch ms of the type's last unpause, None if never unpaused (or paused now)."""
        record = self._latest.get((task_queue, activity_type))
        if record is None or record.paused:
            return None
        return record.time

    def paused(self, task_queue: str | None = None) -> list[ActivityPause]:
        """The paused types (of one queue, or all), sorted by queue then type."""
        records = list(self._latest.values())  # one C call: safe beside a writer thread
        return sorted(
            (r for r in records
             if r.paused and (task_queue is None or r.task_queue == task_queue)),
            key=lambda r: (r.task_queue, r.activity_type),
        )


class HeldTasks(Generic[T]):
    """Tasks of paused types, held in arrival order per type, at most ``max_held``.

    The worker checks :attr:`full` before it fetches more: the bound is enforced by
    not reading, never by dropping. Not thread-safe (the worker's loop thread only).
    """

    def __init__(self, max_held: int) -> None:
        if max_held < 1:
            raise ValueError("max_held must be >= 1")
        self.max_held = max_held
        self._by_type: OrderedDict[str, deque[T]] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def full(self) -> bool:
        """Whether the buffer holds ``max_held`` tasks or more (fetching must stop)."""
        return self._count >= self.max_held

    def hold(self, activity_type: str, task: T) -> None:
        """Hold ``task`` behind the earlier ones of its type."""
        self._by_type.setdefault(activity_type, deque()).append(task)
        self._count += 1

    def count(self, activity_type: str) -> int:
        """Tasks held for one type."""
        held = self._by_type.get(activity_type)
        return 0 if held is None else len(held)

    def counts(self) -> dict[str, int]:
        """Tasks held per type."""
        items = list(self._by_type.items())  # one C call: safe to read from another thread
        return {t: len(q) for t, q in items}

    def release(self, activity_type: str) -> list[T]:
        """Every held task of ``activity_type``, oldest first; they are no longer held."""
        held = self._by_type.pop(activity_type, None)
        if held is None:
            return []
        self._count -= len(held)
        return list(held)

    def discard(self, keep: Callable[[T], bool]) -> int:
        """Forget the tasks for which ``keep`` is False (e.g. of revoked partitions)."""
        dropped = 0
        for activity_type in list(self._by_type):
            held = self._by_type[activity_type]
            kept = deque(t for t in held if keep(t))
            dropped += len(held) - len(kept)
            if kept:
                self._by_type[activity_type] = kept
            else:
                del self._by_type[activity_type]
        self._count -= dropped
        return dropped

    def __iter__(self) -> Iterator[T]:
        for held in self._by_type.values():
            yield from held


class PauseReader:
    """Reads ``<prefix>.activity-pauses`` from its beginning, then tails it.

    ``task_queue``: only that queue's records are kept (by key, before decoding);
    None keeps every queue's (the engine worker's case). Every call happens on the
    caller's loop thread except :meth:`open`, which may block on metadata.
    """

    def __init__(
        self,
        kafka: Mapping[str, Any],
        topic: str,
        wire: WireFormat,
        *,
        task_queue: str | None,
        client_id: str,
        fetch_wait_max_ms: int = 50,
    ) -> None:
        self.topic = topic
        self.wire = wire
        self.table = PauseTable()
        self._prefix = None if task_queue is None else f"{task_queue}/".encode()
        self._config = reader_config(
            kafka, topic, client_id=client_id, fetch_wait_max_ms=fetch_wait_max_ms
        )
        self._consumer: Consumer | None = None
        self._end = 0
        self.undecodable = 0

    def open(self, timeout_s: float = _METADATA_TIMEOUT_S) -> None:
        """Assign the topic's partition from its beginning; note where it ends now.
        ``timeout_s`` bounds each metadata request."""
        consumer = Consumer(self._config)
        try:
            require_partitions(consumer, self.topic, timeout_s)
            _, self._end = consumer.get_watermark_offsets(
                TopicPartition(self.topic, 0), timeout=timeout_s
            )
            consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        except BaseException:
            consumer.close()
            raise
        self._consumer = consumer

    def caught_up(self) -> bool:
        """Whether the topic has been read up to where it ended at :meth:`open`."""
        consumer = self._consumer
        if consumer is None or self._end <= 0:
            return True
        (position,) = consumer.position([TopicPartition(self.topic, 0)])
        return position.offset >= self._end

    def poll(self, limit: int = 500, timeout_s: float = 0.0) -> list[ActivityPause]:
        """Records waiting now (or within ``timeout_s``), applied to :attr:`table`."""
        consumer = self._consumer
        if consumer is None:
            return []
        found: list[ActivityPause] = []
        for msg in fetched(consumer, self.topic, limit, timeout_s):
            key, value = msg.key(), msg.value()
            if value is None or key is None:
                continue  # a tombstone (written by hand): nothing to apply
            if self._prefix is not None and not key.startswith(self._prefix):
                continue
            try:
                record = self.wire.decode_pause(headers_of(msg), value).record
            except RecordDecodeError as exc:
                self.undecodable += 1
                log.warning("pause record %s/%s skipped: %s", self.topic, msg.offset(), exc)
                continue
            self.table.apply(record)
            found.append(record)
        return found

    def catch_up(self, deadline_s: float) -> bool:
        """Block until :meth:`caught_up` (True) or ``deadline_s`` seconds pass (False)."""
        deadline = time.monotonic() + deadline_s
        while not self.caught_up():
            if time.monotonic() >= deadline:
                return False
            self.poll(timeout_s=0.05)
        self.poll()
        return True

    def close(self) -> None:
        """Leave the topic (the reader keeps no offsets)."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class PauseFollower:
    """Follows every queue's pauses on a thread, for the engine worker's shards.

    :attr:`table` exists from the start (empty); :meth:`start` reads the topic to its
    end (each step bounded by ``catch_up_s``) before it returns, so shards started
    afterwards know the pauses before their timers fire, then follows it on a
    thread. The table is written by that thread and read by shards (one dict item at
    a time: no lock). A missing topic is logged and looked for again: without it no
    pause is known, and timeouts behave as if nothing were paused.
    """

    def __init__(
        self,
        kafka: Mapping[str, Any],
        layout: TopicLayout,
        *,
        catch_up_s: float = 10.0,
        interval_s: float = 0.2,
    ) -> None:
        self._reader = PauseReader(
            kafka, layout.activity_pauses, WireFormat(), task_queue=None,
            client_id="activity-pauses-engine",
        )
        self.table = self._reader.table
        self._catch_up_s = catch_up_s
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._open = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Read the topic to its end (bounded), then follow it on a thread."""
        self._open = self._try_open()
        if self._open and not self._reader.catch_up(self._catch_up_s):
            log.warning("%s not read to its end in %.0fs", self._reader.topic, self._catch_up_s)
        self._thread = threading.Thread(target=self._follow, name="activity-pauses", daemon=True)
        self._thread.start()

    def _try_open(self) -> bool:
        try:
            self._reader.open(self._catch_up_s)
        except (RuntimeError, KafkaException) as exc:
            log.warning("activity-type pauses not followed yet: %s", exc)
            return False
        return True

    def _follow(self) -> None:
        try:
            while not self._stop.wait(0 if self._open else 5.0):
                if not self._open:
                    self._open = self._try_open()
                    continue
                self._reader.poll(timeout_s=self._interval_s)
        except Exception:
            log.exception("following activity-type pauses stopped")
        finally:
            self._reader.close()

    def close(self) -> None:
        """Stop following."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        else:
            self._reader.close()


def write_pause(
    kafka: Mapping[str, Any],
    layout: TopicLayout,
    record: ActivityPause,
    wire: WireFormat | None = None,
    producer: Producer | None = None,
) -> None:
    """Write a pause or unpause, encoded by ``wire`` (default: a new WireFormat), with
    ``producer`` (default: a new one; a caller's connected producer saves the half
    second a new one can take to send its first record); returns once the broker has
    acknowledged it, KafkaException if it refused it."""
    if producer is None:
        producer = Producer({**kafka, "enable.idempotence": True})
    encoded = (wire or WireFormat()).encode_pause(record)
    refused: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            refused.append(err)

    producer.produce(
        layout.activity_pauses,
        key=encoded.key,
        value=encoded.value,
        headers=list[tuple[str, str | bytes | None]](encoded.headers),
        partition=0,
        on_delivery=delivered,
    )
    if producer.flush(30) != 0:
        raise RuntimeError(
            f"pause of {record.activity_type!r} on {record.task_queue!r} not acknowledged "
            "by Kafka in 30 s"
        )
    if refused:
        raise KafkaException(refused[0])


def read_pauses(
    kafka: Mapping[str, Any],
    layout: TopicLayout,
    task_queue: str | None = None,
    *,
    timeout_s: float = 30.0,
) -> list[ActivityPause]:
    """The activity types paused now (of one queue, or all), read from the topic."""
    reader = PauseReader(
        kafka, layout.activity_pauses, WireFormat(), task_queue=task_queue,
        client_id="activity-pauses-read",
    )
    reader.open()
    try:
        if not reader.catch_up(timeout_s):
            raise RuntimeError(f"{layout.activity_pauses} not read to its end in {timeout_s} s")
        return reader.table.paused(task_queue)
    finally:
        reader.close()
