"""Fold history records into visibility rows: pure functions, no Kafka, no PostgreSQL.

The fold is defined so that the final rows depend only on what a compacted history
topic keeps, which is what makes "the projection equals a rebuild from the log" hold
after compaction:

- everything a row shows is derived from the run's **events** (each has its own key,
  so compaction keeps all of them while the run lives), in ``seq`` order;
- a **snapshot** (one key per workflow id, so only the latest survives) contributes
  only ``parked``, and only while the run is open (a closed run is never parked);
- a **tombstone** of an event key deletes that run's row; a tombstone of a snapshot
  key deletes the workflow id's closed rows (the engine writes both when a closed
  run's retention ends, and compaction then reclaims the run).

Applying an event whose ``seq`` is at or below the row's ``history_length`` changes
nothing, so replaying a record twice is harmless.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from orchestrator.converter import DataConverter, Payload
from orchestrator.engine import events as ev
from orchestrator.serde.keys import SNAPSHOT_SUFFIX
from orchestrator.serde.records import WorkflowSnapshot

__all__ = [
    "OPEN_STATUSES",
    "PayloadDecoder",
    "RunKey",
    "RunState",
    "apply_event",
    "apply_snapshot",
    "json_safe",
    "parse_history_key",
    "payload_decoder",
]

log = logging.getLogger(__name__)

RunKey = tuple[str, str]
"""(workflow_id, run_id)"""

PayloadDecoder = Callable[[Payload], Any]
"""Turns a payload into a JSON value; raises when it cannot."""

OPEN_STATUSES: Final = frozenset({"RUNNING", "COMPENSATING"})

_STATUS_AFTER: Final[dict[type[ev.Event], str]] = {
    ev.WorkflowStarted: "RUNNING",
    ev.CompensationStarted: "COMPENSATING",
    ev.CompensationCompleted: "RUNNING",
    ev.CompensationRepaired: "COMPENSATING",
    ev.WorkflowCompleted: "COMPLETED",
    ev.WorkflowFailed: "FAILED",
    ev.WorkflowCancelled: "CANCELLED",
    ev.WorkflowTimedOut: "TIMED_OUT",
    ev.WorkflowCompensationFailed: "COMPENSATION_FAILED",
    ev.WorkflowContinuedAsNew: "CONTINUED_AS_NEW",
    ev.WorkflowTerminated: "TERMINATED",
}
"""The run status each event leads to (the engine's own transition table)."""


@dataclass(slots=True)
class RunState:
    """A row being folded: what the runs table holds for one run, times in epoch ms.

    ``pending`` maps the activity seq of every scheduled, unfinished activity to its
    type; ``current_step`` is the latest of them.
    """

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    status: str
    start_time: int
    shard: int
    history_length: int = 0
    close_time: int | None = None
    search_attributes: dict[str, Any] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    parked: str | None = None
    paused: str | None = None
    build_ids: list[str] = field(default_factory=list)
    pending: dict[int, str] = field(default_factory=dict)
    workflow_version: int = 1

    @property
    def key(self) -> RunKey:
        return (self.workflow_id, self.run_id)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def current_step(self) -> str | None:
        """The activity type scheduled last and not finished yet (None when idle or closed)."""
        return self.pending[max(self.pending)] if self.pending else None

    def copy(self) -> RunState:
        """A copy whose dicts can be changed without touching this one."""
        return replace(
            self,
            search_attributes=dict(self.search_attributes),
            memo=dict(self.memo),
            build_ids=list(self.build_ids),
            pending=dict(self.pending),
        )


def json_safe(value: Any) -> Any:
    """``value`` as something PostgreSQL's jsonb accepts: plain JSON types only, no NUL
    characters, no NaN/infinity. Anything else becomes None."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k).replace("\x00", ""): json_safe(v) for k, v in value.items()}
    return None


def payload_decoder(converter: DataConverter | None = None) -> PayloadDecoder:
    """A decoder with ``converter`` (JSON, its codec if any); see :func:`decode_values`."""
    conv = converter or DataConverter()

    def decode(payload: Payload) -> Any:
        return conv.from_payload(payload)

    return decode


def decode_values(payloads: Mapping[str, Payload], decode: PayloadDecoder) -> dict[str, Any]:
    """Decode a payload map for a jsonb column; a value that cannot be decoded (say,
    encrypted without the key, or binary) is stored as null."""
    out: dict[str, Any] = {}
    for name, payload in payloads.items():
        try:
            value = decode(payload)
        except Exception:  # noqa: BLE001 - any codec or converter failure means "unreadable"
            log.debug("visibility: cannot decode %r (%s)", name, payload.encoding)
            value = None
        out[name.replace("\x00", "")] = json_safe(value) if not isinstance(value, bytes) else None
    return out


def _text(value: str | None) -> str | None:
    return None if value is None else value.replace("\x00", "")


def apply_event(
    state: RunState | None,
    workflow_id: str,
    run_id: str,
    event: ev.Event,
    *,
    shard: int,
    decode: PayloadDecoder,
) -> RunState | None:
    """The run's row after ``event``; ``state`` is not changed (a new state is returned
    when anything changes, ``state`` itself when nothing does).

    A run's first event is its ``WorkflowStarted``; an event of a run with no row
    and no start (its start reclaimed by compaction) is ignored and returns None.
    """
    if state is None:
        if not isinstance(event, ev.WorkflowStarted):
            return None
        return RunState(
            workflow_id=_text(workflow_id) or "",
            run_id=_text(run_id) or "",
            workflow_type=_text(event.workflow_type) or "",
            task_queue=_text(event.task_queue) or "",
            status="RUNNING",
            start_time=event.time,
            shard=shard,
            history_length=event.seq,
            search_attributes=decode_values(event.search_attributes, decode),
            memo=decode_values(event.memo, decode),
            workflow_version=event.workflow_version,
        )
    if event.seq <= state.history_length:
        return state  # already applied
    new = state.copy()
    new.history_length = event.seq
    new.status = _STATUS_AFTER.get(type(event), new.status)
    if isinstance(event, ev.DecisionEvent) and event.build_id:
        build = _text(event.build_id) or ""
        if build not in new.build_ids:
            new.build_ids.append(build)
    _apply_details(new, event, decode)
    if not new.is_open:
        new.close_time = event.time
        new.pending.clear()
        new.parked = None
        new.paused = None
    return new


def _apply_details(new: RunState, event: ev.Event, decode: PayloadDecoder) -> None:
    match event:
        case ev.ActivityScheduled():
            new.pending[event.activity_seq] = _text(event.activity_type) or ""
        case ev.ActivityCompleted() | ev.ActivityFailed() | ev.ActivityTimedOut():
            new.pending.pop(event.activity_seq, None)
        case ev.ActivityCancelRequested():
            new.pending.pop(event.activity_seq, None)
        case ev.SearchAttributesUpserted():
            new.search_attributes.update(decode_values(event.attributes, decode))
        case ev.MemoUpserted():
            new.memo.update(decode_values(event.memo, decode))
        case ev.WorkflowFailed() | ev.WorkflowCompensationFailed():
            new.error = _text(event.failure.message)
        case ev.WorkflowTerminated():
            new.error = _text(event.reason) or None
        case ev.WorkflowPaused():
            new.paused = _text(f"{event.operator}: {event.reason}")
        case ev.WorkflowUnpaused():
            new.paused = None
        case ev.CompensationRepaired():  # an operator reopened a COMPENSATION_FAILED run
            new.close_time = None
            new.error = None
        case _:
            pass


def apply_snapshot(state: RunState, snapshot: WorkflowSnapshot) -> RunState:
    """The row after a snapshot of its workflow id: only ``parked`` of an open run
    changes, and only when the snapshot is of this run."""
    if snapshot.run_id != state.run_id or not state.is_open:
        return state
    parked = _text(snapshot.parked)
    if parked == state.parked:
        return state
    new = state.copy()
    new.parked = parked
    return new


def parse_history_key(key: bytes) -> tuple[str, str | None]:
    """(workflow_id, run_id) of an event key, (workflow_id, None) of a snapshot key.

    ValueError for a key that is neither (``<wf>/<run>/<seq>``, ``<wf>/snapshot``).
    """
    text = key.decode("utf-8")
    if text.endswith(SNAPSHOT_SUFFIX):
        return text[: -len(SNAPSHOT_SUFFIX)], None
    rest, _, seq = text.rpartition("/")
    workflow_id, _, run_id = rest.rpartition("/")
    if not seq.isdigit() or not workflow_id or not run_id:
        raise ValueError(f"not a history key: {text!r}")
    return workflow_id, run_id
