"""The orchestrator's topics, created on demand and checked at start-up.

``<prefix>.commands`` and ``<prefix>.history`` have one partition per execution
shard and must agree, because owning partition p of commands is owning shard p of
history. History is compacted (every event has its own key; tombstones reclaim
closed executions); the other topics are time-retained. ``<prefix>.activity-cancels``
(one partition) carries the engine's cancels of running activity attempts to every
activity worker (docs/architecture.md, "Cancelling a running activity").
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

DAY_MS = 24 * 3600 * 1000
_TIMEOUT_S = 30.0


#: (prefix, queue) -> topic name, for names already checked
_TASK_TOPICS: dict[tuple[str, str], str] = {}


class TopicLayoutError(RuntimeError):
    """An existing topic does not fit the layout (cleanup policy or partition count)."""


@dataclass(frozen=True)
class TopicSpec:
    """One topic: name, partitions, and the configs that must hold for it."""

    name: str
    partitions: int
    config: Mapping[str, str]
    #: configs checked against an existing topic (the rest are only set at creation)
    enforced: tuple[str, ...] = ("cleanup.policy",)


@dataclass(frozen=True)
class TopicLayout:
    """Topic names and configs for one orchestrator deployment (one prefix)."""

    prefix: str = "saga"
    shards: int = 8
    replication_factor: int = -1  # -1: the broker's default.replication.factor
    task_queue_partitions: int | None = None  # default: same as shards
    history_config: Mapping[str, str] = field(default_factory=dict)

    @property
    def commands(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def history(self) -> str:
        return f"{self.prefix}.history"

    @property
    def replies(self) -> str:
        return f"{self.prefix}.replies"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def activity_cancels(self) -> str:
        """Where the engine writes the cancels of running activity attempts, for the
        activity workers (one partition; every worker reads it whole, outside any
        group). Not under :attr:`task_prefix`: a cancel must never be sent ahead of
        the transaction that decides it, as early dispatch sends tasks."""
        return f"{self.prefix}.activity-cancels"

    @property
    def activity_pauses(self) -> str:
        """The compacted topic of paused activity types (one partition, key
        ``{task_queue}/{activity_type}``): activity workers and engine workers read
        it whole, outside any group."""
        return f"{self.prefix}.activity-pauses"

    @property
    def task_prefix(self) -> str:
        """What every task queue's topic name starts with."""
        return f"{self.prefix}.tasks."

    def task_queue(self, queue: str) -> str:
        """The topic of task queue ``queue`` (checked once per name: every task asks)."""
        key = (self.prefix, queue)
        topic = _TASK_TOPICS.get(key)
        if topic is None:
            if not queue or any(c in queue for c in "/\\ \t\n") or queue in (".", ".."):
                raise ValueError(f"invalid task queue name {queue!r}")
            topic = f"{self.task_prefix}{queue}"
            if len(_TASK_TOPICS) < 10_000:  # a deployment's queues: never unbounded
                _TASK_TOPICS[key] = topic
        return topic

    @property
    def flow_control(self) -> str:
        """The compacted topic of the task queues' flow-control configs (key: queue)."""
        return f"{self.prefix}.flow-control"

    def backlog(self, queue: str) -> str:
        """Where the engine writes the tasks of a flow-controlled queue, for its dispatcher."""
        return f"{self.task_queue(queue)}.backlog"

    def flow_state(self, queue: str) -> str:
        """The compacted topic of a flow-controlled queue's dispatcher state."""
        return f"{self.task_queue(queue)}.flow-state"

    def flow_specs(self, queue: str) -> list[TopicSpec]:
        """The topics flow control of ``queue`` needs: one partition each, so one
        dispatcher owns the queue and its rate limit is global."""
        compact = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0",
                   "segment.ms": str(3600 * 1000)}
        return [
            TopicSpec(self.flow_control, 1, compact),
            TopicSpec(self.backlog(queue), 1, {"cleanup.policy": "delete",
                                              "retention.ms": str(7 * DAY_MS)}),
            TopicSpec(self.flow_state(queue), 1, compact),
        ]

    def specs(self, task_queues: Iterable[str] = ()) -> list[TopicSpec]:
        """Every topic this deployment needs, with its configs."""
        delete = {"cleanup.policy": "delete"}
        history = {
            "cleanup.policy": "compact",
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": str(DAY_MS),  # tombstones stay a day for slow readers
            "segment.ms": str(DAY_MS),
            **self.history_config,
        }
        queue_partitions = self.task_queue_partitions or self.shards
        return [
            TopicSpec(self.commands, self.shards, {**delete, "retention.ms": str(7 * DAY_MS)}),
            TopicSpec(self.history, self.shards, history),
            TopicSpec(self.replies, self.shards, {**delete, "retention.ms": str(DAY_MS)}),
            TopicSpec(self.dlq, 1, {**delete, "retention.ms": str(30 * DAY_MS)}),
            TopicSpec(self.activity_cancels, 1, {**delete, "retention.ms": str(DAY_MS)}),
            TopicSpec(self.activity_pauses, 1, {"cleanup.policy": "compact",
                                                "min.compaction.lag.ms": "0"}),
            *(
                TopicSpec(
                    self.task_queue(q),
                    queue_partitions,
                    {**delete, "retention.ms": str(7 * DAY_MS)},
                )
                for q in sorted(set(task_queues))
            ),
        ]


def ensure_topics(
    admin: AdminClient,
    layout: TopicLayout,
    task_queues: Iterable[str] = (),
    extra: Iterable[TopicSpec] = (),
) -> None:
    """Create missing topics; refuse existing ones that break the layout.

    ``extra``: more topics to create and check (e.g. :meth:`TopicLayout.flow_specs`).

    Raises :class:`TopicLayoutError` naming every mismatch: a wrong cleanup policy,
    or commands/history partition counts that differ from each other.
    """
    specs = [*layout.specs(task_queues), *extra]
    existing = admin.list_topics(timeout=_TIMEOUT_S).topics
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, layout.replication_factor, config=dict(s.config))
                for s in missing
            ],
            operation_timeout=_TIMEOUT_S,
            request_timeout=_TIMEOUT_S,
        )
        for future in futures.values():
            try:
                future.result(_TIMEOUT_S)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # a concurrent worker won
                    raise
        _wait_visible(admin, [s.name for s in missing])
    _check(admin, specs, layout)


def _wait_visible(admin: AdminClient, names: list[str]) -> None:
    """Wait until new topics have leaders: creation returns before brokers learn of them."""
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        topics = admin.list_topics(timeout=_TIMEOUT_S).topics
        pending = [
            n
            for n in names
            if n not in topics
            or topics[n].error is not None
            or any(p.leader < 0 for p in topics[n].partitions.values())
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TopicLayoutError(f"topics not ready after {_TIMEOUT_S:.0f}s: {pending}")
        time.sleep(0.1)


def _describe_configs(admin: AdminClient, names: list[str]) -> dict[str, dict[str, Any]]:
    """Each topic's configs. A topic created a moment ago may be unknown to the broker
    that answers (on a cluster, metadata reaches the brokers one by one): asked again
    until the timeout."""
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
        described = admin.describe_configs(resources, request_timeout=_TIMEOUT_S)
        try:
            return {r.name: f.result(_TIMEOUT_S) for r, f in described.items()}
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def _check(admin: AdminClient, specs: list[TopicSpec], layout: TopicLayout) -> None:
    problems: list[str] = []
    topics = admin.list_topics(timeout=_TIMEOUT_S).topics
    partitions = {s.name: len(topics[s.name].partitions) for s in specs if s.name in topics}
    if partitions.get(layout.commands) != partitions.get(layout.history):
        problems.append(
            f"{layout.commands} has {partitions.get(layout.commands)} partitions but "
            f"{layout.history} has {partitions.get(layout.history)}: shards must line up"
        )
    by_name = {s.name: s for s in specs}
    for name, actual in _describe_configs(admin, [s.name for s in specs]).items():
        spec = by_name[name]
        for key in spec.enforced:
            want, have = spec.config.get(key), actual[key].value if key in actual else None
            if want is not None and have != want:
                problems.append(f"{spec.name} has {key}={have}, expected {want}")
    if problems:
        raise TopicLayoutError("topic layout mismatch:\n  " + "\n  ".join(problems))
