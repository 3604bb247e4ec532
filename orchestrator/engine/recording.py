"""Decisions besides activities and timers: children, markers, metadata, sagas."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.converter import DataConverter, Payload
from orchestrator.engine import events as ev
from orchestrator.engine.commands import Command, RespondUpdate, StartChildWorkflow
from orchestrator.engine.failures import child_error, to_failure
from orchestrator.engine.guards import guarded
from orchestrator.engine.inputs import StartWorkflow
from orchestrator.exceptions import NonDeterminismError, PayloadConversionError

if TYPE_CHECKING:
    from orchestrator.engine.activities import _Activity
    from orchestrator.engine.loop import WorkflowEventLoop

__all__ = ["RUN_ID_NAMESPACE", "Counters", "RecordingMixin"]

RUN_ID_NAMESPACE = uuid.UUID("6f1c2b8e-3d4a-4f5e-9a7b-8c9d0e1f2a3b")
"""Namespace of the uuid5 run ids derived for children and continued runs."""


@dataclass(slots=True)
class Counters:
    """Per-run sequence numbers of activities, timers, children and side effects."""

    activity: int = 0
    timer: int = 0
    child: int = 0
    side_effect: int = 0


@dataclass(slots=True)
class _Child:
    seq: int
    workflow_type: str
    workflow_id: str
    result_type: Any
    future: asyncio.Future[Any]
    run_id: str | None = None


class RecordingMixin:
    """Children, markers, metadata and saga records of a WorkflowExecutor."""

    __slots__ = ()

    if TYPE_CHECKING:
        _activities: dict[int, _Activity]
        _commands: list[Command]
        _conv: DataConverter
        _build_id: str
        _now: int
        _live: bool
        _children: dict[int, _Child]
        _patches: dict[str, bool]
        _counters: Counters
        search_attributes: dict[str, Payload]
        memo: dict[str, Payload]

        def _on_violation(self, message: str) -> None: ...

        @property
        def started(self) -> ev.WorkflowStarted: ...
        def _next_seq(self) -> int: ...
        def _accept(self, e: ev.Event) -> None: ...
        def _fail(self, exc: BaseException) -> None: ...
        def decide(self, e: ev.DecisionEvent) -> tuple[ev.DecisionEvent, bool]: ...
        def peek(self) -> ev.Event | None: ...
        def workflow_loop(self) -> WorkflowEventLoop: ...

    def _deliver_child(
        self, e: ev.ChildWorkflowStarted | ev.ChildWorkflowCompleted | ev.ChildWorkflowFailed
    ) -> None:
        child = self._children.get(e.child_seq)
        if child is None:
            self._fail(NonDeterminismError(
                "history has a child event for a child the code never started",
                seq=e.seq, expected=f"ChildWorkflowInitiated(seq {e.child_seq})", actual="none",
            ))
            return
        if isinstance(e, ev.ChildWorkflowStarted):
            child.run_id = e.run_id
        elif child.future.done():
            return
        elif isinstance(e, ev.ChildWorkflowCompleted):
            try:
                child.future.set_result(self._conv.from_payload(e.result, child.result_type))
            except PayloadConversionError as exc:
                child.future.set_exception(exc)
        else:
            child.future.set_exception(child_error(
                e.failure, self._conv, workflow_type=child.workflow_type,
                workflow_id=child.workflow_id,
            ))


    def start_child(
        self, workflow_type: str, workflow_id: str | None, args: list[Payload],
        task_queue: str | None, result_type: Any,
    ) -> asyncio.Future[Any]:
        """Record ChildWorkflowInitiated and return the future of the child's result."""
        self._counters.child += 1
        seq = self._counters.child
        started = self.started
        wid = workflow_id or f"{started.workflow_id}/child-{seq}"
        rec, is_new = self.decide(ev.ChildWorkflowInitiated(
            seq=self._next_seq(), time=self._now, build_id=self._build_id, child_seq=seq,
            workflow_type=workflow_type, workflow_id=wid,
            task_queue=task_queue or started.task_queue, input=args,
        ))
        assert isinstance(rec, ev.ChildWorkflowInitiated)
        fut: asyncio.Future[Any] = self.workflow_loop().create_future()
        self._children[seq] = _Child(seq, rec.workflow_type, rec.workflow_id, result_type, fut)
        if is_new:
            run_id = str(uuid.uuid5(RUN_ID_NAMESPACE, f"{started.run_id}/child/{seq}"))
            self._commands.append(StartChildWorkflow(child_seq=seq, start=StartWorkflow(
                workflow_id=rec.workflow_id, run_id=run_id, workflow_type=rec.workflow_type,
                task_queue=rec.task_queue, args=rec.input,
                parent_workflow_id=started.workflow_id, parent_run_id=started.run_id,
            )))
        return fut

    def patched(self, change_id: str) -> bool:
        """See WorkflowContext.patched."""
        if change_id in self._patches:
            return self._patches[change_id]
        marker = ev.MarkerRecorded(
            seq=self._next_seq(), time=self._now, build_id=self._build_id,
            marker_name=ev.MARKER_PATCH, marker_id=change_id,
        )
        rec = self.peek()
        if rec is None or (
            isinstance(rec, ev.MarkerRecorded)
            and (rec.marker_name, rec.marker_id) == (ev.MARKER_PATCH, change_id)
        ):
            self.decide(marker)
            result = True
        else:
            result = False
        self._patches[change_id] = result
        return result

    def side_effect(self, fn: Any, result_type: Any) -> Any:
        """See WorkflowContext.side_effect."""
        self._counters.side_effect += 1
        marker_id = str(self._counters.side_effect)
        rec = self.peek()
        if isinstance(rec, ev.MarkerRecorded) and rec.marker_name == ev.MARKER_SIDE_EFFECT:
            got, _ = self.decide(ev.MarkerRecorded(
                seq=self._next_seq(), time=self._now, build_id=self._build_id,
                marker_name=ev.MARKER_SIDE_EFFECT, marker_id=marker_id,
            ))
            assert isinstance(got, ev.MarkerRecorded)
            if got.payload is None:
                return None
            return self._conv.from_payload(got.payload, result_type)
        with guarded("off", self._on_violation):
            value = fn()
        self.decide(ev.MarkerRecorded(
            seq=self._next_seq(), time=self._now, build_id=self._build_id,
            marker_name=ev.MARKER_SIDE_EFFECT, marker_id=marker_id,
            payload=self._conv.to_payload(value),
        ))
        return value

    def upsert(self, *, attributes: dict[str, Payload] | None = None,
               memo: dict[str, Payload] | None = None) -> None:
        """Record search attribute or memo changes."""
        seq, now, b = self._next_seq(), self._now, self._build_id
        if attributes is not None:
            self.decide(ev.SearchAttributesUpserted(seq=seq, time=now, build_id=b,
                                                    attributes=attributes))
            self.search_attributes.update(attributes)
        if memo is not None:
            self.decide(ev.MemoUpserted(seq=self._next_seq(), time=now, build_id=b, memo=memo))
            self.memo.update(memo)

    def respond_update(self, update_id: str, result: Payload | None,
                       failure: ev.Failure | None) -> None:
        """Record an update's outcome and answer the caller."""
        _, is_new = self.decide(ev.UpdateCompleted(
            seq=self._next_seq(), time=self._now, build_id=self._build_id,
            update_id=update_id, result=result, failure=failure,
        ))
        if is_new:
            self._commands.append(RespondUpdate(update_id=update_id, result=result,
                                                failure=failure))

    def record_compensation_started(
        self, saga_id: int, compensations: list[str], cause: BaseException | None
    ) -> None:
        """Record that saga ``saga_id`` starts compensating."""
        self.decide(ev.CompensationStarted(
            seq=self._next_seq(), time=self._now, build_id=self._build_id, saga_id=saga_id,
            compensations=compensations,
            cause=to_failure(cause, self._conv, with_stack=False) if cause else None,
        ))

    def record_compensation_completed(self, saga_id: int) -> None:
        """Record that every compensation of saga ``saga_id`` succeeded."""
        self.decide(ev.CompensationCompleted(
            seq=self._next_seq(), time=self._now, build_id=self._build_id, saga_id=saga_id,
        ))

    def record_compensation_failed(
        self, saga_id: int, activity_type: str, error: BaseException
    ) -> None:
        """Record that a compensation of saga ``saga_id`` exhausted its policy."""
        self.decide(ev.CompensationFailed(
            seq=self._next_seq(), time=self._now, build_id=self._build_id, saga_id=saga_id,
            activity_type=activity_type, failure=to_failure(error, self._conv),
        ))
