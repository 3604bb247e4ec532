"""What a shard handler hands the processor, and what restore hands a handler."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.log.headers import Headers, headers_of

__all__ = ["Headers", "HistoryEntry", "OutRecord", "headers_of"]


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
