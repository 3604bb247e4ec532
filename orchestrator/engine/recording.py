"""Decisions besides activities, timers and children: markers, metadata, updates, sagas."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.converter import DataConverter, Payload
from orchestrator.engine import events as ev
from orchestrator.engine.commands import RespondUpdate
from orchestrator.engine.failures import to_failure
from orchestrator.engine.guards import guarded

if TYPE_CHECKING:
    from orchestrator.engine.journal import Journal

__all__ = ["NO_UPGRADE", "RUN_ID_NAMESPACE", "Counters", "Records"]

RUN_ID_NAMESPACE = uuid.UUID("6f1c2b8e-3d4a-4f5e-9a7b-8c9d0e1f2a3b")
"""Namespace of the uuid5 run ids derived for children and continued runs."""
NO_UPGRADE = "none"
"""The id of an ``upgrade`` marker that answered False (a True one names the version)."""


@dataclass(slots=True)
class Counters:
    """Per-run sequence numbers of activities, timers, children and side effects."""

    activity: int = 0
    timer: int = 0
    child: int = 0
    side_effect: int = 0


class Records:
    """A run's markers (patches, side effects), metadata, update outcomes and saga
    records: the executor's context and sagas record through it."""

    __slots__ = (
        "_conv", "_counters", "_j", "_patches", "_upgrade", "memo", "search_attributes",
    )

    def __init__(self, journal: Journal, converter: DataConverter, counters: Counters) -> None:
        self._j = journal
        self._conv = converter
        self._counters = counters
        self._patches: dict[str, bool] = {}
        self._upgrade = False  # whether newer_version_available answered True
        self.search_attributes: dict[str, Payload] = {}
        self.memo: dict[str, Payload] = {}

    def patched(self, change_id: str) -> bool:
        """See WorkflowContext.patched."""
        if change_id in self._patches:
            return self._patches[change_id]
        marker = ev.MarkerRecorded(
            seq=self._j.next_seq(), time=self._j.now, build_id=self._j.build_id,
            marker_name=ev.MARKER_PATCH, marker_id=change_id,
        )
        rec = self._j.peek()
        if rec is None or (
            isinstance(rec, ev.MarkerRecorded)
            and (rec.marker_name, rec.marker_id) == (ev.MARKER_PATCH, change_id)
        ):
            self._j.decide(marker)
            result = True
        else:
            result = False
        self._patches[change_id] = result
        return result

    def newer_version_available(self, pinned: int, newest: int | None) -> bool:
        """See WorkflowContext.newer_version_available. ``pinned``: the run's version;
        ``newest``: the newest version of its type the worker holds (None: unknown).

        Each live answer is recorded (an ``upgrade`` marker: ``v{newest}`` for True,
        ``none`` for False) and a replay returns the recorded one, so the answer never
        depends on the replaying worker's code, and a replay never turns an earlier
        False into True. A True answer is final: later calls return True unrecorded.
        While replaying a history without a marker here (recorded by code that did not
        ask yet) the answer is False, as for ``patched``. A query handler gets the live
        answer, unrecorded."""
        if self._upgrade:
            return True
        if self._j.read_only is not None:  # a query asks: answered, never recorded
            return newest is not None and newest > pinned
        rec = self._j.peek()
        if rec is not None:
            if not (isinstance(rec, ev.MarkerRecorded) and rec.marker_name == ev.MARKER_UPGRADE):
                return False
            marker_id = rec.marker_id
        elif newest is not None and newest > pinned:
            marker_id = f"v{newest}"
        else:
            marker_id = NO_UPGRADE
        self._j.decide(ev.MarkerRecorded(
            seq=self._j.next_seq(), time=self._j.now, build_id=self._j.build_id,
            marker_name=ev.MARKER_UPGRADE, marker_id=marker_id,
        ))
        self._upgrade = marker_id != NO_UPGRADE
        return self._upgrade

    def side_effect(self, fn: Any, result_type: Any) -> Any:
        """See WorkflowContext.side_effect."""
        self._counters.side_effect += 1
        marker_id = str(self._counters.side_effect)
        rec = self._j.peek()
        if isinstance(rec, ev.MarkerRecorded) and rec.marker_name == ev.MARKER_SIDE_EFFECT:
            got, _ = self._j.decide(ev.MarkerRecorded(
                seq=self._j.next_seq(), time=self._j.now, build_id=self._j.build_id,
                marker_name=ev.MARKER_SIDE_EFFECT, marker_id=marker_id,
            ))
            assert isinstance(got, ev.MarkerRecorded)
            if got.payload is None:
                return None
            return self._conv.from_payload(got.payload, result_type)
        with guarded("off", self._j.on_violation):
            value = fn()
        self._j.decide(ev.MarkerRecorded(
            seq=self._j.next_seq(), time=self._j.now, build_id=self._j.build_id,
            marker_name=ev.MARKER_SIDE_EFFECT, marker_id=marker_id,
            payload=self._conv.to_payload(value),
        ))
        return value

    def upsert(self, *, attributes: dict[str, Payload] | None = None,
               memo: dict[str, Payload] | None = None) -> None:
        """Record search attribute or memo changes."""
        seq, now, b = self._j.next_seq(), self._j.now, self._j.build_id
        if attributes is not None:
            self._j.decide(ev.SearchAttributesUpserted(seq=seq, time=now, build_id=b,
                                                    attributes=attributes))
            self.search_attributes.update(attributes)
        if memo is not None:
            self._j.decide(ev.MemoUpserted(seq=self._j.next_seq(), time=now, build_id=b, memo=memo))
            self.memo.update(memo)

    def respond_update(self, update_id: str, result: Payload | None,
                       failure: ev.Failure | None) -> None:
        """Record an update's outcome and answer the caller."""
        _, is_new = self._j.decide(ev.UpdateCompleted(
            seq=self._j.next_seq(), time=self._j.now, build_id=self._j.build_id,
            update_id=update_id, result=result, failure=failure,
        ))
        if is_new:
            self._j.commands.append(RespondUpdate(update_id=update_id, result=result,
                                                failure=failure))

    def record_compensation_started(
        self, saga_id: int, compensations: list[str], cause: BaseException | None
    ) -> None:
        """Record that saga ``saga_id`` starts compensating."""
        self._j.decide(ev.CompensationStarted(
            seq=self._j.next_seq(), time=self._j.now, build_id=self._j.build_id, saga_id=saga_id,
            compensations=compensations,
            cause=to_failure(cause, self._conv, with_stack=False) if cause else None,
        ))

    def record_compensation_completed(self, saga_id: int) -> None:
        """Record that every compensation of saga ``saga_id`` succeeded."""
        self._j.decide(ev.CompensationCompleted(
            seq=self._j.next_seq(), time=self._j.now, build_id=self._j.build_id, saga_id=saga_id,
        ))

    def record_compensation_failed(
        self, saga_id: int, activity_type: str, error: BaseException
    ) -> None:
        """Record that a compensation of saga ``saga_id`` exhausted its policy."""
        self._j.decide(ev.CompensationFailed(
            seq=self._j.next_seq(), time=self._j.now, build_id=self._j.build_id, saga_id=saga_id,
            activity_type=activity_type, failure=to_failure(error, self._conv),
        ))
