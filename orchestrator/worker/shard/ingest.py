"""Restore: history records streamed into the shard store, in batches, no replay.

A new owner reads its partition from the store's checkpoint (0 for a new store) to the
log's end and hands the records here a batch at a time; each batch is one atomic
store write that also moves the checkpoint, so a crash mid-restore resumes where it
was. Nothing is replayed here: runs that the records touched are put in the store's
recovery set, and the shard recovers them in bounded slices once it serves again (to
recompute their timers, unpark them, or start a next run). Snapshots are decoded
(their status and close time); events are stored as they are, except those of a run
whose whole history so far is in the batch (its first event included): they are
decoded and, when the run only waits (:mod:`~orchestrator.engine.timer_fold`), its
timers are indexed here and it skips the recovery set. A rebuild of a million
sleeping runs then has nothing left to recover once the records are read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

from orchestrator.engine import events as ev
from orchestrator.engine.commands import StartTimer
from orchestrator.engine.status import WorkflowStatus as EngineStatus
from orchestrator.engine.timer_fold import folded_timers
from orchestrator.serde import records as rec
from orchestrator.serde.errors import RecordDecodeError
from orchestrator.serde.keys import SNAPSHOT_SUFFIX
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.shard import store as keys
from orchestrator.worker.shard.due import ExpiryIndex
from orchestrator.worker.shard.records import HistoryEntry
from orchestrator.worker.shard.store import ShardStore
from orchestrator.worker.shard.view import StoreView

_SNAPSHOT = SNAPSHOT_SUFFIX.encode()


class _Batch:
    """The store writes of one batch of history records."""

    def __init__(
        self,
        store: ShardStore,
        wire: WireFormat,
        retention_ms: int,
        known_types: Collection[str] = (),
        known_versions: Collection[tuple[str, int]] | None = None,
    ) -> None:
        self.store = store
        self.wire = wire
        self.retention_ms = retention_ms
        self.known_types = known_types
        self.known_versions = known_versions
        self.puts: dict[bytes, bytes | None] = {}
        #: events of each run seen in this batch, in order: (workflow id, run id) -> entries
        self.runs: dict[tuple[str, str], list[tuple[int, HistoryEntry]]] = {}
        #: runs a snapshot of this batch shows open, unparked and of a known type: the
        #: only ones worth decoding events for
        self.waiting: set[tuple[str, str]] = set()

    def current_run(self, workflow_id: str) -> bytes | None:
        key = keys.current_run_key(workflow_id)
        return self.puts[key] if key in self.puts else self.store.get(key)

    def event(self, workflow_id: str, run_id: str, seq: int, entry: HistoryEntry) -> None:
        key = keys.event_key(workflow_id, run_id, seq)
        self.runs.setdefault((workflow_id, run_id), []).append((seq, entry))
        if entry.value is None:
            self.puts[key] = None
            return
        self.puts[key] = keys.frame(entry.headers, entry.value)
        if self.current_run(workflow_id) != run_id.encode():
            self.puts[keys.seen_key(workflow_id, run_id)] = b""  # no snapshot names it (yet)
        self.puts[keys.recovery_key(workflow_id)] = b""

    def snapshot(
        self, workflow_id: str, entry: HistoryEntry, snapshot: rec.WorkflowSnapshot | None
    ) -> None:
        puts = self.puts
        if snapshot is None:  # retention ended: the id is free
            for key in (keys.snapshot_key, keys.recovery_key, keys.current_run_key):
                puts[key(workflow_id)] = None
            return
        previous = self.current_run(workflow_id)
        if previous is not None and previous != snapshot.run_id.encode():
            self._superseded(workflow_id, previous.decode())
        puts[keys.snapshot_key(workflow_id)] = keys.frame(entry.headers, entry.value or b"")
        puts[keys.current_run_key(workflow_id)] = snapshot.run_id.encode()
        puts[keys.seen_key(workflow_id, snapshot.run_id)] = None
        parked = b"k" + workflow_id.encode()
        puts[parked] = b"" if snapshot.parked is not None else None
        status = EngineStatus[snapshot.status.name]
        run = (workflow_id, snapshot.run_id)
        if status.is_terminal or snapshot.parked is not None:
            self.waiting.discard(run)
        elif snapshot.workflow_type in self.known_types:
            self.waiting.add(run)
        if status.is_terminal:
            closed_at = snapshot.close_time or snapshot.start_time
            expires = closed_at + self.retention_ms
            expiry = keys.expiry_key(expires, workflow_id, snapshot.run_id)
            puts[expiry] = keys.u64(snapshot.last_seq)
            if status is not EngineStatus.CONTINUED_AS_NEW and snapshot.parked is None:
                puts[keys.recovery_key(workflow_id)] = None
                return
        puts[keys.recovery_key(workflow_id)] = b""

    def fold_timers(self) -> None:
        """Index the timers of runs that only wait and whose history so far is all in
        this batch; such a workflow id leaves the recovery set when the batch's last
        snapshot of it names that run, open and not parked."""
        if not self.waiting:
            return
        runs_of = Counter(workflow_id for workflow_id, _ in self.runs)
        for workflow_id, run_id in self.waiting:
            if self.puts.get(keys.current_run_key(workflow_id)) != run_id.encode():
                continue  # a later run of the id took over in this batch
            if runs_of[workflow_id] > 1:
                continue  # another run of the id changed too: the recovery sorts it out
            timers = self._fold(self.runs.get((workflow_id, run_id), []))
            if timers is None:
                continue
            for timer in timers:
                at = keys.u64(timer.fire_at)
                self.puts[keys.timer_key(workflow_id, run_id, timer.timer_id)] = at
                due = keys.timer_due_key(timer.fire_at, workflow_id, run_id, timer.timer_id)
                self.puts[due] = b""
            self.puts[keys.recovery_key(workflow_id)] = None

    def _fold(self, events: list[tuple[int, HistoryEntry]]) -> list[StartTimer] | None:
        if not events or [seq for seq, _ in events] != list(range(1, len(events) + 1)):
            return None  # its first events were read before this batch, or a gap
        try:
            decoded = [
                self.wire.decode_event(entry.headers, entry.value).record.event
                for _, entry in events
            ]
        except RecordDecodeError:
            return None  # the recovery reads it again, and parks it if it must
        started = decoded[0]
        if not isinstance(started, ev.WorkflowStarted):
            return None
        if started.workflow_type not in self.known_types:
            return None  # the recovery parks a run of a type this build lacks
        pinned = (started.workflow_type, started.workflow_version)
        if self.known_versions is not None and pinned not in self.known_versions:
            return None  # and a run of a version it lacks
        return folded_timers(decoded)

    def _superseded(self, workflow_id: str, run_id: str) -> None:
        """A newer run's snapshot is about to replace ``run_id``'s. If no closed snapshot
        of that run was read (compaction removed it), :func:`finish` gives its events a
        retention from its last event; a closed one already has its retention entry."""
        key = keys.snapshot_key(workflow_id)
        raw = self.puts[key] if key in self.puts else self.store.get(key)
        if raw is not None:
            previous = self.wire.decode_snapshot(*keys.unframe(raw)).record
            if previous.run_id == run_id and EngineStatus[previous.status.name].is_terminal:
                return
        self.puts[keys.seen_key(workflow_id, run_id)] = b""


def ingest(
    store: ShardStore,
    wire: WireFormat,
    entries: Sequence[HistoryEntry],
    retention_ms: int,
    known_types: Collection[str] = (),
    *,
    known_versions: Collection[tuple[str, int]] | None = None,
) -> None:
    """Apply history records (oldest first) to the store, with the checkpoint after them;
    runs of ``known_types`` (the workflow types this build runs) may be folded, and when
    ``known_versions`` is given, only runs pinned to one of its (type, version)."""
    if not entries:
        return
    batch = _Batch(store, wire, retention_ms, known_types, known_versions)
    for entry in entries:
        if entry.key.endswith(_SNAPSHOT):
            workflow_id = entry.key[: -len(_SNAPSHOT)].decode()
            snapshot = None
            if entry.value is not None:
                snapshot = wire.decode_snapshot(entry.headers, entry.value).record
            batch.snapshot(workflow_id, entry, snapshot)
            continue
        run_key, _, seq = entry.key.rpartition(b"/")
        workflow_id, _, run_id = run_key.decode().rpartition("/")
        batch.event(workflow_id, run_id, int(seq), entry)
    batch.fold_timers()
    store.write(batch.puts, entries[-1].offset + 1)


def finish(store: ShardStore, wire: WireFormat, retention_ms: int) -> None:
    """After the last batch: runs whose events were read but whose snapshot names
    another run (superseded by a newer run, its own closed snapshot compacted away)
    get their retention from their last event."""
    view = StoreView(store)
    expiries = ExpiryIndex(view)
    for key, _ in list(store.scan(b"q")):
        workflow_id, run_id, _ = keys.parse_run(key, 1)
        store.delete(key)
        raw = store.get(keys.snapshot_key(workflow_id))
        if raw is not None:
            snapshot = wire.decode_snapshot(*keys.unframe(raw)).record
            if snapshot.run_id == run_id:
                continue
        prefix = b"e" + keys.run_prefix(workflow_id, run_id)
        last = None
        for _, value in store.scan(prefix):
            last = value
        if last is not None:
            event = wire.decode_event(*keys.unframe(last)).record.event
            expiries.add(event.time + retention_ms, workflow_id, run_id, event.seq)
        view.apply_open()
