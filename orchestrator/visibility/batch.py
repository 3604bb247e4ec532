"""Fold one batch of history-topic records into row changes (no I/O).

The caller loads the current rows of every workflow id the batch touches
(:func:`workflow_ids`), folds (:func:`fold_batch`), and writes the result with the
batch's next offsets in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.log.headers import Headers
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.visibility.fold import (
    PayloadDecoder,
    RunKey,
    RunState,
    apply_event,
    apply_snapshot,
    parse_history_key,
)

__all__ = ["BatchResult", "HistoryMessage", "fold_batch", "workflow_ids"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """One record of the history topic as the fold needs it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(slots=True)
class BatchResult:
    """What a batch changes, and what it held."""

    upserts: list[RunState] = field(default_factory=list)
    deletes: list[RunKey] = field(default_factory=list)
    next_offsets: dict[int, int] = field(default_factory=dict)
    events: int = 0
    snapshots: int = 0
    tombstones: int = 0
    undecodable: int = 0
    ignored: int = 0
    """Events of runs whose start is not in the log (compacted) or already applied."""


def workflow_ids(messages: Iterable[HistoryMessage]) -> set[str]:
    """The workflow ids whose rows a batch may change (from the record keys)."""
    found = set()
    for m in messages:
        if m.key is None:
            continue
        try:
            found.add(parse_history_key(m.key)[0])
        except (ValueError, UnicodeDecodeError):
            continue
    return found


class _Rows:
    """The batch's view of the rows: loaded ones plus what the batch did so far."""

    def __init__(self, loaded: Mapping[RunKey, RunState]) -> None:
        self.current: dict[RunKey, RunState] = dict(loaded)
        self.runs_of: dict[str, set[str]] = {}
        for wf, run in loaded:
            self.runs_of.setdefault(wf, set()).add(run)

    def put(self, state: RunState) -> None:
        self.current[state.key] = state
        self.runs_of.setdefault(state.workflow_id, set()).add(state.run_id)

    def delete(self, key: RunKey) -> bool:
        if self.current.pop(key, None) is None:
            return False
        self.runs_of.get(key[0], set()).discard(key[1])
        return True


def fold_batch(
    messages: Sequence[HistoryMessage],
    loaded: Mapping[RunKey, RunState],
    wire: WireFormat,
    decode: PayloadDecoder,
) -> BatchResult:
    """Fold ``messages`` (in offset order per partition) over ``loaded``, which must hold
    every existing row of :func:`workflow_ids` of the batch."""
    rows = _Rows(loaded)
    result = BatchResult()
    for m in messages:
        result.next_offsets[m.partition] = m.offset + 1
        _fold_one(m, rows, result, wire, decode)
    for key, state in rows.current.items():
        if state is not loaded.get(key):
            result.upserts.append(state)
    result.deletes = [key for key in loaded if key not in rows.current]
    return result


def _fold_one(
    m: HistoryMessage,
    rows: _Rows,
    result: BatchResult,
    wire: WireFormat,
    decode: PayloadDecoder,
) -> None:
    if m.key is None:
        _undecodable(m, result, "record without a key")
        return
    try:
        workflow_id, run_id = parse_history_key(m.key)
    except (ValueError, UnicodeDecodeError) as exc:
        _undecodable(m, result, str(exc))
        return
    if m.value is None:
        result.tombstones += 1
        _tombstone(rows, workflow_id, run_id)
        return
    try:
        record = wire.decode_history(m.headers, m.value).record
    except Exception as exc:  # noqa: BLE001 - a bad record is counted and skipped, never fatal
        _undecodable(m, result, f"{type(exc).__name__}: {exc}")
        return
    if isinstance(record, rec.WorkflowSnapshot):
        result.snapshots += 1
        for run in sorted(rows.runs_of.get(record.workflow_id, ())):
            row = rows.current[(record.workflow_id, run)]
            changed = apply_snapshot(row, record)
            if changed is not row:
                rows.put(changed)
        return
    result.events += 1
    key = (record.workflow_id, record.run_id)
    before = rows.current.get(key)
    after = apply_event(
        before, record.workflow_id, record.run_id, record.event, shard=m.partition, decode=decode
    )
    if after is None or after is before:
        result.ignored += 1
    else:
        rows.put(after)


def _tombstone(rows: _Rows, workflow_id: str, run_id: str | None) -> None:
    if run_id is not None:  # an event of a reclaimed run
        rows.delete((workflow_id, run_id))
        return
    # the snapshot of a reclaimed execution: its closed runs go
    for run in sorted(rows.runs_of.get(workflow_id, ())):
        if not rows.current[(workflow_id, run)].is_open:
            rows.delete((workflow_id, run))


def _undecodable(m: HistoryMessage, result: BatchResult, why: str) -> None:
    result.undecodable += 1
    log.warning(
        "visibility: skipping undecodable history record at partition %d offset %d: %s",
        m.partition,
        m.offset,
        why,
    )
