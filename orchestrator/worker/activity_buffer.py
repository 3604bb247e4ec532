"""Fetched tasks not started yet: waiting for a free slot, or held while their type is
paused; and whether the worker must stop fetching more.

Fetching pauses when ``pause_at`` tasks, or records of ``pause_bytes`` bytes, wait, or
when the held tasks reach their bound; it resumes once the waiting ones are down to
half of both bounds and the held ones are below theirs. A resumed partition costs a
fetch round trip (librdkafka drops what it had prefetched), hence the gap between the
two thresholds. Not thread-safe: the worker's loop thread only (and its close, while
the loop thread waits).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection

from confluent_kafka import Message

from orchestrator.worker.activity_pauses import HeldTasks

__all__ = ["TaskBuffer"]


class TaskBuffer:
    """Fetched task records waiting to start, in order, and those held per paused type."""

    def __init__(self, *, pause_at: int, pause_bytes: int, max_held: int) -> None:
        self.pause_at = pause_at
        self.pause_bytes = pause_bytes
        self.held: HeldTasks[Message] = HeldTasks(max_held)
        self._waiting: deque[Message] = deque()
        self._bytes = 0  # of the waiting records' values

    def __len__(self) -> int:
        """Tasks waiting to start (not the held ones)."""
        return len(self._waiting)

    @property
    def bytes(self) -> int:
        """Bytes of the waiting records' values."""
        return self._bytes

    def add(self, msg: Message) -> None:
        """A fetched task waits behind the others."""
        self._waiting.append(msg)
        self._bytes += _size(msg)

    def next(self) -> Message:
        """The task that waited longest; it no longer waits (IndexError if none)."""
        msg = self._waiting.popleft()
        self._bytes -= _size(msg)
        return msg

    def release(self, activity_type: str) -> list[Message]:
        """Give the held tasks of an unpaused type back, ahead of the waiting ones (they
        came first), in the order they came; returns them."""
        released = self.held.release(activity_type)
        self._waiting.extendleft(reversed(released))
        self._bytes += sum(_size(m) for m in released)
        return released

    def drop(self, partitions: Collection[int]) -> None:
        """Forget the tasks of ``partitions``, waiting or held (no longer ours)."""
        self._waiting = deque(m for m in self._waiting if m.partition() not in partitions)
        self._bytes = sum(_size(m) for m in self._waiting)
        self.held.discard(lambda m: m.partition() not in partitions)

    def full(self) -> bool:
        """Whether fetching must pause."""
        waiting = len(self._waiting)
        return waiting >= self.pause_at or self._bytes >= self.pause_bytes or self.held.full

    def low(self) -> bool:
        """Whether paused fetching may resume."""
        return (
            len(self._waiting) <= self.pause_at // 2
            and self._bytes <= self.pause_bytes // 2
            and not self.held.full
        )


def _size(msg: Message) -> int:
    value = msg.value()
    return len(value) if value is not None else 0
