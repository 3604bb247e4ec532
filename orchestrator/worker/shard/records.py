"""Records crossing the shard layer: commands in, records out, history read by restore.

Plain values, no Kafka client types: the processor adapts confluent-kafka's messages
at its edge, so shard handlers run (and are tested) without a broker."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import Message

from orchestrator.log.headers import Headers, headers_of

__all__ = ["Headers", "HistoryEntry", "InRecord", "OutRecord", "ShardStateLost", "headers_of"]


class ShardStateLost(Exception):  # noqa: N818 - names what happened, like KeyError
    """A shard handler's local state cannot be trusted any more (its store failed a
    read or write): the processor rebuilds the shard from the log instead of
    dead-lettering the command that met it."""


@dataclass(frozen=True, slots=True)
class InRecord:
    """A command record as consumed from ``<prefix>.commands``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)

    @classmethod
    def of(cls, msg: Message) -> InRecord:
        """The record of a fetched message (which always has topic, partition, offset)."""
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        return cls(topic, partition, offset, msg.key(), msg.value(), headers_of(msg))


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to write in the current transaction. ``partition=None``: key-based."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: Headers = field(default_factory=list)
    #: an activity task whose attempt has a short engine timer that retries it if the
    #: task is lost: the engine may hand it to a worker of its own process instead of
    #: the queue (orchestrator/worker/task_handoff.py)
    handoff: bool = False


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One raw record of a history partition, as restore read it (value None = tombstone)."""

    key: bytes
    value: bytes | None
    offset: int
    headers: Headers = field(default_factory=list)
