"""The task queue's consumer: its group membership, its offsets and whether it fetches.

One consumer (group per task queue, cooperative-sticky) reads the queue's topic with
``read_committed``. A task's offset is started when it is fetched and finished when
its outcome is acknowledged; only the contiguous finished prefix of each partition is
committed (:class:`~orchestrator.worker.offsets.ContiguousOffsetTracker`), on an
interval, on revocation and on close. When the group fences the consumer
(orchestrator/worker/fencing.py), or the group watch finds it gone from the group
(orchestrator/worker/group_watch.py), it is replaced by a new one that joins again;
the old one's callbacks are ignored from then on.

Used on the worker's event loop thread, except for the close: the last commit and
the close run on a helper thread, bounded, while the loop thread waits for them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition

from orchestrator.worker.activity_metrics import ActivityCounts
from orchestrator.worker.activity_options import ActivityWorkerOptions
from orchestrator.worker.fencing import (
    FenceLimit,
    close_in_background,
    fences_the_consumer,
    finish_within,
)
from orchestrator.worker.membership import LEAVE_TIMEOUT_S, GroupConsumer, member_config
from orchestrator.worker.offsets import ContiguousOffsetTracker

__all__ = ["TaskOffsets", "TaskQueueConsumer"]

#: the worker's own logger, so that its lines keep their name
log = logging.getLogger("orchestrator.worker.activity_worker")

#: how long a stopping worker waits for its last commit and for leaving the group
_CLOSE_TIMEOUT_S = LEAVE_TIMEOUT_S + 5.0


class TaskOffsets:
    """The partitions of one topic this worker holds, the offsets started and finished
    in each, and what was last committed of each."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.assigned: set[int] = set()
        self._tracker: ContiguousOffsetTracker[int] = ContiguousOffsetTracker()
        self._committed: dict[int, int] = {}

    def start(self, partition: int, offset: int) -> None:
        """A task was fetched: its offset is unfinished."""
        self._tracker.start(partition, offset)

    def finish(self, partition: int, offset: int) -> None:
        """A task is done with (its outcome acknowledged, or none is due)."""
        self._tracker.finish(partition, offset)

    def due(self, only: Iterable[int] | None = None) -> list[TopicPartition]:
        """The offsets to commit: each partition's finished prefix, where it moved since
        the last commit (of ``only`` these partitions, if given)."""
        wanted = set(only) if only is not None else None
        return [
            TopicPartition(self.topic, p, o)
            for p, o in self._tracker.committable().items()
            if (wanted is None or p in wanted) and self._committed.get(p, -1) < o
        ]

    def committed(self, offsets: Iterable[TopicPartition]) -> None:
        """``offsets`` were committed."""
        for tp in offsets:
            self._committed[tp.partition] = tp.offset

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget partitions no longer held (revoked, lost, or of a fenced consumer)."""
        for p in partitions:
            self._tracker.drop(p)
            self._committed.pop(p, None)
            self.assigned.discard(p)


class TaskQueueConsumer:
    """The group consumer of one task queue, replaced when the group fences it.

    ``dropped(partitions)`` is called when partitions are no longer held, so that the
    worker forgets the tasks it fetched from them. :attr:`current` is None until
    :meth:`open` and after :meth:`closed`.
    """

    def __init__(
        self,
        kafka: Mapping[str, Any],
        *,
        topic: str,
        group_id: str,
        task_queue: str,
        identity: str,
        options: ActivityWorkerOptions,
        counts: ActivityCounts,
        dropped: Callable[[set[int]], None],
    ) -> None:
        self._kafka = kafka
        self.topic = topic
        self.group_id = group_id
        self.identity = identity
        self.options = options
        self.offsets = TaskOffsets(topic)
        self.current: Consumer | None = None
        self.paused = False
        self._counts = counts
        self._dropped = dropped
        self._fences = FenceLimit(
            f"the consumer of task queue {task_queue!r}", options.group_instance_id
        )

    def open(self) -> Consumer:
        """Create the consumer (it joins the group at :meth:`subscribe`)."""
        self.current = self._new_consumer()
        return self.current

    def subscribe(self) -> None:
        """Join the group, with this object's rebalance callbacks."""
        consumer = self.current
        assert consumer is not None  # opened first
        consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    def rejoin_if_fenced(self, msg: Message) -> bool:
        """If ``msg`` says the group fenced our consumer (orchestrator/worker/fencing.py),
        replace it with a new one that joins again, and say so. The tasks it had fetched
        are dropped (the attempts running go on, but their offsets are not committed:
        the partitions' next owner runs them again, as after a lost assignment)."""
        error = msg.error()
        if error is None or not fences_the_consumer(error):
            return False
        self._fences.fenced(error)  # raises if fenced over and over
        self.replace()
        return True

    def replace(self) -> None:
        """Join the group again with a new consumer (the old one is fenced, or no longer
        a member: orchestrator/worker/group_watch.py). What the old one had fetched and
        not finished is read again by the partitions' next owner."""
        old = self.current
        if old is None:
            return
        self._forget(sorted(self.offsets.assigned))
        self.current = self._new_consumer()  # from now on, old's callbacks are ignored
        self.subscribe()
        # not waited for: see ShardProcessor._replace_consumer
        close_in_background(old, "replaced-consumer-close")

    def commit(self, *, sync: bool, only: Iterable[int] | None = None) -> None:
        """Commit what is due (a failed commit is retried at the next one)."""
        consumer = self.current
        if consumer is None:
            return
        offsets = self.offsets.due(only)
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
        self._counts.stats.commits += 1
        self.offsets.committed(offsets)

    def pause(self) -> None:
        """Stop fetching (every assigned partition, and those assigned later)."""
        if self.paused:
            return
        self.paused = True
        self._counts.stats.pauses += 1
        if self.current is not None:
            with contextlib.suppress(Exception):
                self.current.pause(self.current.assignment())

    def resume(self) -> None:
        """Fetch again."""
        self.paused = False
        if self.current is not None:
            with contextlib.suppress(Exception):
                self.current.resume(self.current.assignment())

    def close(self) -> None:
        """Commit the finished offsets and leave the group, both bounded: with a broker
        down, a synchronous commit or a close can block in librdkafka."""
        consumer = self.current
        if consumer is None:
            return

        def commit_and_close() -> None:
            self.commit(sync=True)
            consumer.close()  # its revocation runs here, while the loop waits for it

        finish_within(commit_and_close, "activity-consumer-close", _CLOSE_TIMEOUT_S)

    def closed(self) -> None:
        """The worker is done with the consumer."""
        self.current = None

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

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self.current:
            return  # a fenced consumer closing, or a stopped worker's
        self.offsets.assigned.update(tp.partition for tp in partitions)
        log.info("assigned %s", sorted(tp.partition for tp in partitions))
        if self.paused:
            consumer.incremental_assign(partitions)
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self.current:
            return
        revoked = [tp.partition for tp in partitions]
        log.info("revoked %s", sorted(revoked))
        self.commit(sync=True, only=revoked)
        self._forget(revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if consumer is not self.current:
            return
        lost = [tp.partition for tp in partitions]
        log.warning("lost %s (their running tasks will be re-delivered elsewhere)", sorted(lost))
        self._forget(lost)

    def _forget(self, partitions: list[int]) -> None:
        self._dropped(set(partitions))
        self.offsets.drop(partitions)
