"""What a shard handler hands the processor, and what restore hands a handler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from confluent_kafka import Message

Headers: TypeAlias = list[tuple[str, str | bytes | None]]


def headers_of(msg: Message) -> Headers:
    """A message's headers as a list of (name, value) pairs (empty when it has none)."""
    raw = msg.headers()
    if raw is None:
        return []
    return list(raw.items()) if isinstance(raw, dict) else [(str(k), v) for k, v in raw]


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
