"""Things due at a time, kept in the shard store: workflow timers and retention ends.

Both are indexes by due time in RocksDB, read from the front in bounded batches, so a
million sleeping runs cost disk, not memory, and a wake-up storm fires in slices. Only
the earliest due time is cached. Entries are written at once (before the transaction
that decided them commits); a timer is valid while its ``u`` entry names the same due
time, and the shard checks every popped entry against the run's recorded state, so an
entry of a decision that was rolled back fires into nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.worker.shard import store as keys
from orchestrator.worker.shard.store import ShardStore

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


class TimerIndex:
    """Pending timers of a shard's runs (sleeps, activity timeouts, retry backoffs)."""

    def __init__(self, store: ShardStore) -> None:
        self._store = store
        self._next: int | None = _UNKNOWN

    def set(self, workflow_id: str, run_id: str, timer_id: str, due: int) -> None:
        self._store.put(keys.timer_key(workflow_id, run_id, timer_id), keys.u64(due))
        self._store.put(keys.timer_due_key(due, workflow_id, run_id, timer_id), b"")
        if self._next is None or (self._next != _UNKNOWN and due < self._next):
            self._next = due

    def cancel(self, workflow_id: str, run_id: str, timer_id: str) -> None:
        self._store.delete(keys.timer_key(workflow_id, run_id, timer_id))

    def discard(self, timer: DueTimer) -> None:
        """Remove a timer that is firing (a replay just before re-registered it)."""
        self._store.delete(keys.timer_key(timer.workflow_id, timer.run_id, timer.timer_id))
        self._store.delete(
            keys.timer_due_key(timer.due, timer.workflow_id, timer.run_id, timer.timer_id)
        )

    def clear_run(self, workflow_id: str, run_id: str) -> None:
        """Forget every timer of a run (its due entries go stale and are skipped)."""
        self._store.delete_prefix(b"u" + keys.run_prefix(workflow_id, run_id))

    def next_due(self) -> int | None:
        if self._next == _UNKNOWN:
            first = self._store.first(b"t")
            self._next = keys.read_u64(first[0], 1) if first is not None else None
        return self._next

    def pop_due(self, now_ms: int, limit: int) -> list[DueTimer]:
        """Up to ``limit`` valid timers due at ``now_ms``, removed from the index."""
        due = self.next_due()
        if due is None or due > now_ms:
            return []
        out: list[DueTimer] = []
        for key, _ in list(self._store.scan(b"t", limit)):
            at = keys.read_u64(key, 1)
            if at > now_ms:
                break
            self._store.delete(key)
            workflow_id, run_id, end = keys.parse_run(key, 9)
            timer_id = key[end:].decode()
            current = self._store.get(keys.timer_key(workflow_id, run_id, timer_id))
            if current is None or keys.read_u64(current) != at:
                continue  # cancelled, replaced or of a rolled-back decision
            self._store.delete(keys.timer_key(workflow_id, run_id, timer_id))
            out.append(DueTimer(workflow_id, run_id, timer_id, at))
        self._next = _UNKNOWN
        return out


class ExpiryIndex:
    """When each closed run's retention ends (its records are then tombstoned)."""

    def __init__(self, store: ShardStore) -> None:
        self._store = store
        self._next: int | None = _UNKNOWN

    def add(self, expires: int, workflow_id: str, run_id: str, last_seq: int) -> None:
        self._store.put(keys.expiry_key(expires, workflow_id, run_id), keys.u64(last_seq))
        if self._next is None or (self._next != _UNKNOWN and expires < self._next):
            self._next = expires

    def next_due(self) -> int | None:
        if self._next == _UNKNOWN:
            first = self._store.first(b"r")
            self._next = keys.read_u64(first[0], 1) if first is not None else None
        return self._next

    def pop_due(self, now_ms: int, limit: int) -> list[DueExpiry]:
        due = self.next_due()
        if due is None or due > now_ms:
            return []
        out: list[DueExpiry] = []
        for key, value in list(self._store.scan(b"r", limit)):
            if keys.read_u64(key, 1) > now_ms:
                break
            self._store.delete(key)
            workflow_id, run_id, _ = keys.parse_run(key, 9)
            out.append(DueExpiry(workflow_id, run_id, keys.read_u64(value)))
        self._next = _UNKNOWN
        return out
