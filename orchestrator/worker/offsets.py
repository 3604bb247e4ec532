"""Which offsets an at-least-once consumer may commit while many records are in flight.

Records of a partition are started in offset order but may finish in any order.
Kafka's committed offset means "every record before this one is done", so a
partition may only commit up to its first unfinished record. Offsets are not
contiguous integers (transaction markers and compaction leave gaps), so the
tracker reasons about the records it was actually given, never about ``offset + 1``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["ContiguousOffsetTracker", "PartitionOffsets"]

P = TypeVar("P", bound=Hashable)


class PartitionOffsets:
    """Started and finished offsets of one partition (started in increasing order)."""

    __slots__ = ("_last_started", "_started", "_unfinished")

    def __init__(self) -> None:
        self._started: deque[int] = deque()  # started offsets, oldest first; head unfinished
        self._unfinished: set[int] = set()
        self._last_started: int | None = None

    def start(self, offset: int) -> None:
        """Record that ``offset`` was handed out; offsets must increase."""
        if self._last_started is not None and offset <= self._last_started:
            raise ValueError(
                f"offset {offset} started after {self._last_started}: offsets must increase"
            )
        self._last_started = offset
        self._started.append(offset)
        self._unfinished.add(offset)

    def finish(self, offset: int) -> bool:
        """Record that ``offset`` is done; False if it was not in flight (ignored)."""
        if offset not in self._unfinished:
            return False
        self._unfinished.discard(offset)
        started = self._started
        while started and started[0] not in self._unfinished:
            started.popleft()
        return True

    def committable(self) -> int | None:
        """Next offset to read after the finished prefix (None before any start)."""
        if self._started:
            return self._started[0]
        return None if self._last_started is None else self._last_started + 1

    @property
    def in_flight(self) -> int:
        """Started and not yet finished."""
        return len(self._unfinished)


class ContiguousOffsetTracker(Generic[P]):
    """Per-partition :class:`PartitionOffsets`, keyed by any hashable partition id.

    ``committable()`` maps each partition to the offset to commit (Kafka semantics:
    the next offset to read), the first unfinished one or one past the last
    started. It never moves past a record that has not finished.
    """

    def __init__(self) -> None:
        self._partitions: dict[P, PartitionOffsets] = {}

    def start(self, partition: P, offset: int) -> None:
        """Record that ``offset`` of ``partition`` was handed out."""
        offsets = self._partitions.get(partition)
        if offsets is None:
            offsets = self._partitions[partition] = PartitionOffsets()
        offsets.start(offset)

    def finish(self, partition: P, offset: int) -> bool:
        """Record that ``offset`` is done; False when not in flight (e.g. partition revoked)."""
        offsets = self._partitions.get(partition)
        return offsets is not None and offsets.finish(offset)

    def committable(self) -> dict[P, int]:
        """The offset to commit for every partition that has started a record."""
        out: dict[P, int] = {}
        for partition, offsets in self._partitions.items():
            position = offsets.committable()
            if position is not None:
                out[partition] = position
        return out

    def drop(self, partition: P) -> None:
        """Forget a partition (revoked); later finishes for it are ignored."""
        self._partitions.pop(partition, None)

    def in_flight(self, partition: P | None = None) -> int:
        """Unfinished records of one partition, or of all."""
        if partition is not None:
            offsets = self._partitions.get(partition)
            return 0 if offsets is None else offsets.in_flight
        return sum(o.in_flight for o in self._partitions.values())

    def partitions(self) -> list[P]:
        """Partitions currently tracked."""
        return list(self._partitions)
