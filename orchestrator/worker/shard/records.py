"""What a shard handler hands the processor, and what restore hands a handler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from confluent_kafka import Message

Headers: TypeAlias = list[tuple[str, bytes | None]]


def headers_of(msg: Message) -> Headers:
    """A message's headers as a list of (name, value) pairs (empty when it has none)."""
    raw = msg.headers()
    if raw is None:
        return []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), v.encode() if isinstance(v, str) else v) for k, v in pairs]


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to write in the current transaction. ``partition=None``: key-based."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One raw record of a history partition, as restore read it (value None = tombstone)."""

    key: bytes
    value: bytes | None
    offset: int
    headers: Headers = field(default_factory=list)
