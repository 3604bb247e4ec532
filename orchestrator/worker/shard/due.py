"""Things due at a time, kept in the shard store: workflow timers and retention ends.

Both are indexes by due time in RocksDB, read from the front in bounded batches, so a
million sleeping runs cost disk, not memory, and a wake-up storm fires in slices. Only
the earliest due time is cached. Like every write of a live shard they go through the
:class:`~orchestrator.worker.shard.view.StoreView`: a timer popped for firing, or
cancelled, by a decision whose transaction fails is still in the store afterwards.
A timer is valid while its ``u`` entry names the same due time; a due entry that no
longer matches (cancelled, re-armed) is skipped and removed when reached.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.engine.commands import StartTimer
from orchestrator.worker.shard import store as keys
from orchestrator.worker.shard.view import StoreView

_UNKNOWN = -1


@dataclass(frozen=True, slots=True)
class DueTimer:
    workflow_id: str
    run_id: str
    timer_id: str
    due: int


@dataclass(frozen=True, slots=True)
class DueExpiry:
    workflow_id: str
    run_id: str
    last_seq: int


class _DueIndex:
    """The earliest due time of one index, cached until the front changes.

    The index is read like a queue, from its front, and each entry read is deleted. The
    deletes stay in RocksDB as tombstones until a compaction, and a seek to the prefix
    steps over all of them: in a wake-up storm of 12,500 timers per shard each read of
    the front cost more than the firing it led to. So the index remembers the key it
    consumed last (its *floor*: nothing before it is left) and reads from there, until
    an entry is added below it.
    """

    prefix = b""

    def __init__(self, view: StoreView) -> None:
        self._view = view
        self._next: int | None = _UNKNOWN
        self._floor: bytes | None = None

    def forget(self) -> None:
        """Entries were written around the index (a restore): read its front again."""
        self._next = _UNKNOWN
        self._floor = None

    def _added(self, key: bytes, due: int) -> None:
        if self._floor is not None and key < self._floor:
            self._floor = None
        if self._next is None or (self._next != _UNKNOWN and due < self._next):
            self._next = due

    def next_due(self) -> int | None:
        if self._next == _UNKNOWN:
            first = next(self._view.scan(self.prefix, 1, start=self._floor), None)
            self._next = keys.read_u64(first[0], 1) if first is not None else None
        return self._next

    def _front(self, now_ms: int, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` entries due at ``now_ms``, removed from the index."""
        due = self.next_due()
        if due is None or due > now_ms:
            return []
        out = []
        for key, value in list(self._view.scan(self.prefix, limit, start=self._floor)):
            if keys.read_u64(key, 1) > now_ms:
                break
            self._view.delete(key)
            out.append((key, value))
        if out:
            self._floor = out[-1][0] + b"\x00"  # the smallest key after the last one read
        self._next = _UNKNOWN
        return out


class TimerIndex(_DueIndex):
    """Pending timers of a shard's runs (sleeps, activity timeouts, retry backoffs)."""

    prefix = b"t"

    def set(self, workflow_id: str, run_id: str, timer_id: str, due: int) -> None:
        self._view.put(keys.timer_key(workflow_id, run_id, timer_id), keys.u64(due))
        due_key = keys.timer_due_key(due, workflow_id, run_id, timer_id)
        self._view.put(due_key, b"")
        self._added(due_key, due)

    def cancel(self, workflow_id: str, run_id: str, timer_id: str) -> None:
        self._view.delete(keys.timer_key(workflow_id, run_id, timer_id))

    def discard(self, timer: DueTimer) -> None:
        """Remove a timer that is firing (a replay just before registered it again)."""
        self._view.delete(keys.timer_key(timer.workflow_id, timer.run_id, timer.timer_id))
        self._view.delete(
            keys.timer_due_key(timer.due, timer.workflow_id, timer.run_id, timer.timer_id)
        )

    def clear_run(self, workflow_id: str, run_id: str) -> None:
        """Forget a run's timers that the store holds (its due entries go stale and
        are skipped). Entries written by generations not applied yet are this shard's
        own current decisions: they are left to be replaced or to come due."""
        prefix = b"u" + keys.run_prefix(workflow_id, run_id)
        for key, _ in list(self._view.store.scan(prefix)):
            self._view.delete(key)

    def clear_timers(self, workflow_id: str, run_id: str, timer_ids: Iterable[str]) -> None:
        """:meth:`clear_run` for a run whose timers can only be ``timer_ids``: point
        reads of those keys instead of a scan (an iterator and a seek per closed run)."""
        store, view = self._view.store, self._view
        for timer_id in timer_ids:
            key = keys.timer_key(workflow_id, run_id, timer_id)
            if store.get(key) is not None:
                view.delete(key)

    def replace_run(self, workflow_id: str, run_id: str, timers: list[StartTimer]) -> None:
        """After a replay: the run's timers are exactly those its code holds now."""
        self.clear_run(workflow_id, run_id)
        for timer in timers:
            self.set(workflow_id, run_id, timer.timer_id, timer.fire_at)

    def pop_due(self, now_ms: int, limit: int) -> list[DueTimer]:
        """Up to ``limit`` valid timers due at ``now_ms``, removed from the index."""
        out: list[DueTimer] = []
        for key, _ in self._front(now_ms, limit):
            at = keys.read_u64(key, 1)
            workflow_id, run_id, end = keys.parse_run(key, 9)
            timer_id = key[end:].decode()
            current = self._view.get(keys.timer_key(workflow_id, run_id, timer_id))
            if current is None or keys.read_u64(current) != at:
                continue  # cancelled or re-armed
            self._view.delete(keys.timer_key(workflow_id, run_id, timer_id))
            out.append(DueTimer(workflow_id, run_id, timer_id, at))
        return out


class ExpiryIndex(_DueIndex):
    """When each closed run's retention ends (its records are then tombstoned)."""

    prefix = b"r"

    def add(self, expires: int, workflow_id: str, run_id: str, last_seq: int) -> None:
        key = keys.expiry_key(expires, workflow_id, run_id)
        self._view.put(key, keys.u64(last_seq))
        self._added(key, expires)

    def pop_due(self, now_ms: int, limit: int) -> list[DueExpiry]:
        out: list[DueExpiry] = []
        for key, value in self._front(now_ms, limit):
            workflow_id, run_id, _ = keys.parse_run(key, 9)
            out.append(DueExpiry(workflow_id, run_id, keys.read_u64(value)))
        return out
