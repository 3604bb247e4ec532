"""The activity worker's cancel channel: which attempts the engine has cancelled.

The engine writes an :class:`~orchestrator.serde.records.ActivityCancel` to
``<prefix>.activity-cancels`` (one partition) in the transaction that records
``ActivityCancelRequested``. Every activity worker process reads that topic whole
with its own consumer, outside any group: the cancel must reach whichever process
of the queue's group holds the attempt, and a group would give it to one member.
Records of other queues are skipped by their key (``{task_queue}/{workflow_id}``)
without being decoded.

A cancel can come before its task: tasks and cancels are on different topics, and
a task may wait in the worker's buffer, in the queue's lag or in a flow-control
backlog. So the worker remembers the cancels of its queue in a
:class:`CancelRegistry`, bounded in size and in age, and skips a task found there
when it comes to start it. At start-up the reader first reads back
``lookback_s`` of the topic (by timestamp), so that the cancels of tasks waiting
for this worker are known before it starts any of them. :class:`AttemptCancels`
takes each cancel read where it goes: to the attempts running here, and into the
registry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, cast

from confluent_kafka import Consumer, TopicPartition

from orchestrator.log.control_reader import fetched, reader_config, require_partitions
from orchestrator.log.headers import headers_of
from orchestrator.serde.errors import RecordDecodeError
from orchestrator.serde.records import ActivityCancel, ActivityTask
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.activity_metrics import ActivityCounts
from orchestrator.worker.activity_runner import AttemptCancel

__all__ = ["AttemptCancels", "AttemptKey", "CancelReader", "CancelRegistry", "attempt_key"]

log = logging.getLogger(__name__)
#: the activity worker's logger: what it does about a cancel is logged under its name
worker_log = logging.getLogger("orchestrator.worker.activity_worker")

AttemptKey = tuple[str, str, int, int]
"""One attempt: workflow id, run id, activity seq, attempt (a task token's fields)."""

_METADATA_TIMEOUT_S = 30.0


def attempt_key(record: ActivityTask | ActivityCancel) -> AttemptKey:
    """The attempt a task or a cancel names."""
    return (record.workflow_id, record.run_id, record.activity_seq, record.attempt)


class CancelRegistry:
    """Cancelled attempts this worker may still be given or be running.

    At most ``max_entries`` (the oldest go first) for at most ``ttl_s`` seconds each:
    a task that comes later than that after its cancel runs, and its result is
    ignored by the engine as before this channel existed. Not thread-safe: the
    worker's event loop thread is the only user.
    """

    def __init__(
        self,
        max_entries: int = 10_000,
        ttl_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or ttl_s <= 0:
            raise ValueError("a cancel registry needs max_entries >= 1 and ttl_s > 0")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._added: OrderedDict[AttemptKey, float] = OrderedDict()  # oldest first
        self.evicted = 0
        """Entries dropped because the registry was full (not by age)."""

    def __len__(self) -> int:
        return len(self._added)

    def add(self, key: AttemptKey) -> None:
        """Remember that attempt ``key`` is cancelled."""
        now = self._clock()
        self._added[key] = now
        self._added.move_to_end(key)
        self._expire(now)
        while len(self._added) > self.max_entries:
            self._added.popitem(last=False)
            self.evicted += 1

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple):
            return False
        attempt = cast("AttemptKey", key)
        added = self._added.get(attempt)
        if added is None:
            return False
        if self._clock() - added > self.ttl_s:
            del self._added[attempt]
            return False
        return True

    def _expire(self, now: float) -> None:
        limit = now - self.ttl_s
        while self._added:
            key, added = next(iter(self._added.items()))
            if added >= limit:
                return
            del self._added[key]


class CancelReader:
    """Tails ``topic`` (every partition, no consumer group) for ``task_queue``'s cancels.

    ``kafka`` is the worker's librdkafka config (security settings included); every
    call happens on the worker's event loop thread except :meth:`open`, which may
    block on metadata and belongs in an executor.
    """

    def __init__(
        self,
        kafka: Mapping[str, Any],
        topic: str,
        task_queue: str,
        wire: WireFormat,
        *,
        lookback_s: float,
        client_id: str,
        fetch_wait_max_ms: int = 50,
    ) -> None:
        self.topic = topic
        self.task_queue = task_queue
        self.wire = wire
        self.lookback_s = lookback_s
        self._prefix = f"{task_queue}/".encode()
        self._config = reader_config(
            kafka, topic, client_id=client_id, fetch_wait_max_ms=fetch_wait_max_ms
        )
        self._consumer: Consumer | None = None
        self._ends: dict[int, int] = {}
        self.read = 0
        """Records read (every queue's)."""
        self.undecodable = 0

    def open(self) -> None:
        """Assign every partition from ``lookback_s`` ago (by timestamp) and note where
        each partition ends now, for :meth:`caught_up`."""
        consumer = Consumer(self._config)
        try:
            partitions = require_partitions(consumer, self.topic, _METADATA_TIMEOUT_S)
            since_ms = int((time.time() - self.lookback_s) * 1000)
            wanted = [TopicPartition(self.topic, p, since_ms) for p in partitions]
            starts = consumer.offsets_for_times(wanted, timeout=_METADATA_TIMEOUT_S)
            assignment = []
            for tp in starts:
                _, high = consumer.get_watermark_offsets(tp, timeout=_METADATA_TIMEOUT_S)
                # -1: nothing written since then; start at the end
                start = tp.offset if tp.offset >= 0 else high
                if start < high:
                    self._ends[tp.partition] = high
                assignment.append(TopicPartition(self.topic, tp.partition, start))
            consumer.assign(assignment)
        except BaseException:
            consumer.close()
            raise
        self._consumer = consumer

    def caught_up(self) -> bool:
        """Whether every partition has been read up to where it ended at :meth:`open`."""
        consumer = self._consumer
        if consumer is None or not self._ends:
            return True
        positions = consumer.position([TopicPartition(self.topic, p) for p in self._ends])
        return all(tp.offset >= self._ends[tp.partition] for tp in positions)

    def poll(self, limit: int = 500, timeout_s: float = 0.0) -> list[ActivityCancel]:
        """This queue's cancels among the records waiting now (or within ``timeout_s``)."""
        consumer = self._consumer
        if consumer is None:
            return []
        found: list[ActivityCancel] = []
        for msg in fetched(consumer, self.topic, limit, timeout_s):
            self.read += 1
            key = msg.key()
            if key is None or not key.startswith(self._prefix):
                continue  # another queue's
            try:
                cancel = self.wire.decode_cancel(headers_of(msg), msg.value()).record
            except RecordDecodeError as exc:
                self.undecodable += 1
                log.warning("cancel record %s/%s/%s skipped: %s",
                            self.topic, msg.partition(), msg.offset(), exc)
                continue
            if cancel.task_queue == self.task_queue:
                found.append(cancel)
        return found

    def close(self) -> None:
        """Leave the topic (nothing to commit: the reader keeps no offsets)."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class AttemptCancels:
    """The attempts a cancel can reach at one worker: those running here, which it
    stops, and the tasks not started yet, which the ``registry`` remembers for the
    worker to skip. Not thread-safe: the worker's event loop thread only."""

    def __init__(self, registry: CancelRegistry, counts: ActivityCounts) -> None:
        self.registry = registry
        self._counts = counts
        #: attempts started here and not finished (a re-delivered task may run twice)
        self._running: dict[AttemptKey, list[AttemptCancel]] = {}

    def __contains__(self, key: object) -> bool:
        """Whether attempt ``key`` was cancelled (recently enough to be remembered)."""
        return key in self.registry

    def started(self, key: AttemptKey) -> AttemptCancel:
        """Attempt ``key`` starts here: the handle a cancel will pull."""
        cancel = AttemptCancel()
        self._running.setdefault(key, []).append(cancel)
        return cancel

    def finished(self, key: AttemptKey, cancel: AttemptCancel) -> None:
        """The attempt given ``cancel`` at :meth:`started` is over."""
        twins = self._running.get(key, [])
        if cancel in twins:
            twins.remove(cancel)
        if not twins:
            self._running.pop(key, None)

    def running(self, key: AttemptKey) -> int:
        """How many attempts ``key`` runs here now."""
        return len(self._running.get(key, []))

    def apply(self, cancels: list[ActivityCancel]) -> None:
        """Remember each cancel, and stop the attempt it names if it is running here."""
        for cancel in cancels:
            key = attempt_key(cancel)
            self.registry.add(key)
            self._counts.cancel_received()
            for running in self._running.get(key, []):
                if running.requested:
                    continue
                worker_log.info("cancelling activity %s attempt %d (%s)",
                                cancel.activity_type, cancel.attempt, "/".join(map(str, key[:3])))
                running.cancel()
                self._counts.cancel_stopped()

    async def catch_up(self, reader: CancelReader, within_s: float) -> None:
        """Apply the recent cancels ``reader`` reads back, before any task starts; past
        ``within_s``, give up with a warning."""
        deadline = time.monotonic() + within_s
        while not reader.caught_up():
            self.apply(reader.poll(timeout_s=0.05))
            if time.monotonic() >= deadline:
                worker_log.warning(
                    "cancels of the last %.0fs not all read in %.0fs; starting anyway",
                    reader.lookback_s, within_s,
                )
                return
            await asyncio.sleep(0)
        self.apply(reader.poll())
