"""A worker's look at its consumer group: partitions no member owns are handed out
again, and the worker's own consumer, gone from the group, is replaced.

Kafka's coordinator does not rebalance when a static member rejoins a stable group
(KIP-345: the member gets its previous assignment back, which is the point). With
the cooperative protocol a rebalance takes two rounds: in the first, members give up
the partitions that move; in the second, those are assigned. A static member killed
between the two rounds and restarted under its instance id rejoins a group that is
stable again: it gets its first-round assignment, no second round happens, and the
partitions it gave up belong to nobody until some member joins or leaves. For an
engine that means shards nobody serves; tests/integration/test_group_watch.py
reproduces it with two plain consumers.

Each worker therefore looks at its group now and then (a background thread with its
own admin client, off the worker's loop). When the same partitions are unowned in two
looks in a row while the group is stable, it makes the group rebalance: a short-lived
dynamic member joins with the same subscription and leaves again once it has an
assignment. The group's leader then assigns every partition; the partitions the
short-lived member was given for that moment are handed on when it leaves (it never
consumes or commits).

The same looks catch a worker whose own consumer is no longer a member. A consumer
fenced by the group is dead for good, and librdkafka says so once (a fatal error the
worker acts on: orchestrator/worker/fencing.py); should that word ever be lost, or the
consumer stop being a member in some way not yet seen, the worker would keep a consumer
that fetches nothing, and own nothing, for good. The worker tells its watch the member
id its consumer has (:meth:`GroupWatch.note_member`, from the consumer's own thread: a
``memberid()`` from another thread waited up to 36 s on the consumer's fetches); a watch
that finds the group settled (stable or empty) without that member in looks
``member_grace_s`` apart sets :attr:`GroupWatch.member_lost`, and the worker joins again
with a new consumer. While the group rebalances nothing is concluded: a member joining
a slow rebalance has no id until it ends.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

__all__ = ["GroupWatch", "unowned"]

log = logging.getLogger(__name__)


def unowned(
    state: ConsumerGroupState, assigned: Iterable[int], partitions: int
) -> frozenset[int]:
    """Partitions of a topic with ``partitions`` partitions that a stable group assigns
    to none of its members (``assigned``: every member's partitions of the topic);
    none while the group is rebalancing."""
    if state is not ConsumerGroupState.STABLE:
        return frozenset()
    return frozenset(range(partitions)) - set(assigned)


class GroupWatch:
    """Watches one consumer group's assignment of one topic (see the module docstring)."""

    def __init__(
        self,
        kafka_config: Mapping[str, Any],
        group_id: str,
        topic: str,
        *,
        interval_s: float = 15.0,
        kick_timeout_s: float = 20.0,
        member_grace_s: float | None = None,
    ) -> None:
        """``member_grace_s``: how long the settled group may go without the member
        last given to :meth:`note_member` before :attr:`member_lost` is set (None:
        the worker's membership is not watched)."""
        self._config = dict(kafka_config)
        self.group_id = group_id
        self.topic = topic
        self.interval_s = interval_s
        self.kick_timeout_s = kick_timeout_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._suspect: frozenset[int] = frozenset()
        self.kicks = 0
        """How many times this watch made the group rebalance."""
        self.member_grace_s = member_grace_s
        self._ours = ""  # the member id the worker's consumer has, as last told
        self._absent: tuple[str, float] | None = None  # our member id, missing since
        self.member_lost = threading.Event()
        """Set when the worker's consumer has not been a member of the settled group
        for ``member_grace_s``; the worker clears it as it replaces the consumer."""

    def note_member(self, member_id: str | None) -> None:
        """The member id the worker's consumer has now (None: none), from its thread."""
        self._ours = member_id or ""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"group-watch-{self.topic}")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop looking. Waits briefly: a look blocked on an unreachable broker must not
        hold up the worker's shutdown (the thread is a daemon; it ends with the process)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def _run(self) -> None:
        admin = AdminClient(self._config)
        while not self._stop.wait(self.interval_s):
            try:
                self.look(admin)
            except (KafkaException, RuntimeError) as exc:
                log.debug("group %s not looked at this time: %s", self.group_id, exc)

    def look(self, admin: AdminClient) -> frozenset[int]:
        """One look at the group; makes it rebalance when the same partitions were
        unowned in the previous look too. Returns the partitions unowned now."""
        group = admin.describe_consumer_groups([self.group_id], request_timeout=10)
        description = group[self.group_id].result()
        topic = admin.list_topics(self.topic, timeout=10).topics.get(self.topic)
        partitions = len(topic.partitions) if topic is not None and topic.error is None else 0
        assigned = [
            tp.partition
            for member in description.members
            if member.assignment is not None
            for tp in member.assignment.topic_partitions
            if tp.topic == self.topic
        ]
        if self.member_grace_s is not None:
            self._look_for_member(description.state, {m.member_id for m in description.members})
        orphans: frozenset[int] = frozenset()  # a group with no member: nobody to give to
        if description.members:
            orphans = unowned(description.state, assigned, partitions)
        if orphans and orphans == self._suspect and not self._stop.is_set():
            log.warning(
                "partitions %s of %s have been owned by no member of group %s for %.0f s: "
                "making the group rebalance",
                sorted(orphans),
                self.topic,
                self.group_id,
                self.interval_s,
            )
            self.kick()
            orphans = frozenset()
        self._suspect = orphans
        return orphans

    def _look_for_member(self, state: ConsumerGroupState, members: set[str]) -> None:
        """Note whether the worker's consumer is a member; set :attr:`member_lost` once
        the settled group has gone without it for ``member_grace_s``."""
        if state not in (ConsumerGroupState.STABLE, ConsumerGroupState.EMPTY):
            self._absent = None  # members come and go during a rebalance
            return
        ours = self._ours
        if ours in members:
            self._absent = None
            return
        now = time.monotonic()
        if self._absent is None or self._absent[0] != ours:
            self._absent = (ours, now)  # a new id is judged from its first look
            return
        missing_s = now - self._absent[1]
        grace_s = self.member_grace_s
        if grace_s is not None and missing_s >= grace_s and not self._stop.is_set():
            log.error(
                "this worker's consumer (member id %r) has not been a member of group %s "
                "for %.0f s: joining again with a new one",
                ours,
                self.group_id,
                missing_s,
            )
            self._absent = None
            self.member_lost.set()

    def kick(self) -> None:
        """Join the group with a short-lived dynamic member and leave it again."""
        consumer = Consumer(
            {
                **self._config,
                "group.id": self.group_id,
                "client.id": f"group-watch-{uuid.uuid4().hex[:8]}",
                "partition.assignment.strategy": "cooperative-sticky",
                "enable.auto.commit": False,
                "session.timeout.ms": 6_000,
            }
        )
        joined = threading.Event()
        consumer.subscribe([self.topic], on_assign=lambda _c, _p: joined.set())
        try:
            waited = 0.0
            while not joined.is_set() and waited < self.kick_timeout_s:
                consumer.poll(0.1)  # callbacks only: it never reads a record it gets
                waited += 0.1
        finally:
            consumer.close()  # a dynamic member: leaving is a second rebalance
        self.kicks += 1
