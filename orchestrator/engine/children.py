"""A run's child workflows: their initiation, start, and outcome."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.converter import DataConverter, Payload
from orchestrator.engine import events as ev
from orchestrator.engine.commands import StartChildWorkflow
from orchestrator.engine.failures import child_error
from orchestrator.engine.inputs import ChildCompleted, ChildFailed, ChildStarted, StartWorkflow
from orchestrator.engine.recording import RUN_ID_NAMESPACE
from orchestrator.exceptions import NonDeterminismError, PayloadConversionError

if TYPE_CHECKING:
    from orchestrator.engine.journal import Journal
    from orchestrator.engine.recording import Counters

__all__ = ["Children"]


@dataclass(slots=True)
class _Child:
    seq: int
    workflow_type: str
    workflow_id: str
    result_type: Any
    future: asyncio.Future[Any]
    run_id: str | None = None


class Children:
    """The child workflows of one run, by child seq: the executor delegates to it."""

    __slots__ = ("_by_seq", "_conv", "_counters", "_j")

    def __init__(self, journal: Journal, converter: DataConverter, counters: Counters) -> None:
        self._j = journal
        self._conv = converter
        self._counters = counters
        self._by_seq: dict[int, _Child] = {}

    def waits(self) -> dict[int, str]:
        """What each child's future stands for, by ``id()`` (``saga stack``)."""
        return {
            id(c.future): f"child workflow {c.workflow_type} {c.workflow_id}"
            for c in self._by_seq.values()
        }

    def clear(self) -> None:
        """Drop every child (the executor is released)."""
        self._by_seq.clear()

    def handle_input(self, inp: ChildStarted | ChildCompleted | ChildFailed) -> None:
        """A child's start or outcome, as an input event (a late one is dropped)."""
        child = self._by_seq.get(inp.child_seq)
        if child is None or child.future.done():
            return
        seq, now = self._j.next_seq(), self._j.now
        if isinstance(inp, ChildStarted):
            if child.run_id is None:
                self._j.accept(ev.ChildWorkflowStarted(seq=seq, time=now,
                                                       child_seq=inp.child_seq,
                                                       run_id=inp.run_id))
        elif isinstance(inp, ChildCompleted):
            self._j.accept(ev.ChildWorkflowCompleted(seq=seq, time=now,
                                                     child_seq=inp.child_seq,
                                                     result=inp.result))
        else:
            self._j.accept(ev.ChildWorkflowFailed(seq=seq, time=now,
                                                  child_seq=inp.child_seq,
                                                  failure=inp.failure))

    def deliver(
        self, e: ev.ChildWorkflowStarted | ev.ChildWorkflowCompleted | ev.ChildWorkflowFailed
    ) -> None:
        """Deliver a child's event to the code waiting for it."""
        child = self._by_seq.get(e.child_seq)
        if child is None:
            self._j.fail(NonDeterminismError(
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

    def start(
        self, workflow_type: str, workflow_id: str | None, args: list[Payload],
        task_queue: str | None, result_type: Any,
    ) -> asyncio.Future[Any]:
        """Record ChildWorkflowInitiated and return the future of the child's result."""
        self._counters.child += 1
        seq = self._counters.child
        started = self._j.started
        wid = workflow_id or f"{started.workflow_id}/child-{seq}"
        rec, is_new = self._j.decide(ev.ChildWorkflowInitiated(
            seq=self._j.next_seq(), time=self._j.now, build_id=self._j.build_id, child_seq=seq,
            workflow_type=workflow_type, workflow_id=wid,
            task_queue=task_queue or started.task_queue, input=args,
        ))
        assert isinstance(rec, ev.ChildWorkflowInitiated)
        fut: asyncio.Future[Any] = self._j.workflow_loop().create_future()
        self._by_seq[seq] = _Child(seq, rec.workflow_type, rec.workflow_id, result_type, fut)
        if is_new:
            run_id = str(uuid.uuid5(RUN_ID_NAMESPACE, f"{started.run_id}/child/{seq}"))
            self._j.commands.append(StartChildWorkflow(child_seq=seq, start=StartWorkflow(
                workflow_id=rec.workflow_id, run_id=run_id, workflow_type=rec.workflow_type,
                task_queue=rec.task_queue, args=rec.input,
                parent_workflow_id=started.workflow_id, parent_run_id=started.run_id,
            )))
        return fut
