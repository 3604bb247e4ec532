"""A run's child workflows: their initiation, start, cancellation and outcome, and
what the run's close does to those still open (their parent-close policies)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.converter import DataConverter, Payload
from orchestrator.engine import events as ev
from orchestrator.engine.commands import StartChildWorkflow, StopChildWorkflow
from orchestrator.engine.failures import child_error
from orchestrator.engine.inputs import ChildCompleted, ChildFailed, ChildStarted, StartWorkflow
from orchestrator.engine.recording import RUN_ID_NAMESPACE
from orchestrator.exceptions import NonDeterminismError, PayloadConversionError
from orchestrator.workflow import ChildWorkflowHandle

if TYPE_CHECKING:
    from orchestrator.engine.journal import Journal
    from orchestrator.engine.recording import Counters

__all__ = ["ChildHandle", "ChildRun", "Children", "parent_close_stops"]


@dataclass(slots=True)
class ChildRun:
    """One child as its parent's code sees it (state derived from history only)."""

    seq: int
    workflow_type: str
    workflow_id: str
    result_type: Any
    future: asyncio.Future[Any]
    run_id: str | None = None
    closed: bool = False
    """Its outcome (ChildWorkflowCompleted/Failed) is in the parent's history."""
    cancel_requested: bool = False
    started: asyncio.Future[None] | None = None
    """Set while ``start_child_workflow`` waits for the child's first run."""
    handle_waits: set[asyncio.Future[Any]] = field(default_factory=set)
    """The shielded futures that ``await handle`` waits on now (``saga stack``)."""

    def wake(self) -> None:
        """The child started or ended: a start waiting for it goes on."""
        if self.started is not None and not self.started.done():
            self.started.set_result(None)


class Children:
    """The child workflows of one run, by child seq: the executor delegates to it."""

    __slots__ = ("_by_seq", "_conv", "_counters", "_j")

    def __init__(self, journal: Journal, converter: DataConverter, counters: Counters) -> None:
        self._j = journal
        self._conv = converter
        self._counters = counters
        self._by_seq: dict[int, ChildRun] = {}

    def waits(self) -> dict[int, str]:
        """What each child's futures stand for, by ``id()`` (``saga stack``)."""
        out: dict[int, str] = {}
        for c in self._by_seq.values():
            out[id(c.future)] = f"child workflow {c.workflow_type} {c.workflow_id}"
            for wait in c.handle_waits:
                out[id(wait)] = out[id(c.future)]
            if c.started is not None:
                out[id(c.started)] = f"start of child workflow {c.workflow_type} {c.workflow_id}"
        return out

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
            child.wake()
            return
        child.closed = True
        child.wake()
        if child.future.done():
            return
        if isinstance(e, ev.ChildWorkflowCompleted):
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
        task_queue: str | None, result_type: Any, *, parent_close_policy: str,
        priority: int | None = None, fairness_key: str | None = None,
    ) -> ChildRun:
        """Record ChildWorkflowInitiated; the child, whose future gives its result.
        The child run gets ``priority`` and ``fairness_key``, each this run's if None."""
        self._counters.child += 1
        seq = self._counters.child
        started = self._j.started
        wid = workflow_id or f"{started.workflow_id}/child-{seq}"
        rec, is_new = self._j.decide(ev.ChildWorkflowInitiated(
            seq=self._j.next_seq(), time=self._j.now, build_id=self._j.build_id, child_seq=seq,
            workflow_type=workflow_type, workflow_id=wid,
            task_queue=task_queue or started.task_queue, input=args,
            parent_close_policy=parent_close_policy,
        ))
        assert isinstance(rec, ev.ChildWorkflowInitiated)
        fut: asyncio.Future[Any] = self._j.workflow_loop().create_future()
        child = ChildRun(seq, rec.workflow_type, rec.workflow_id, result_type, fut)
        self._by_seq[seq] = child
        if is_new:
            run_id = str(uuid.uuid5(RUN_ID_NAMESPACE, f"{started.run_id}/child/{seq}"))
            self._j.commands.append(StartChildWorkflow(child_seq=seq, start=StartWorkflow(
                workflow_id=rec.workflow_id, run_id=run_id, workflow_type=rec.workflow_type,
                task_queue=rec.task_queue, args=rec.input,
                parent_workflow_id=started.workflow_id, parent_run_id=started.run_id,
                priority=started.priority if priority is None else priority,
                fairness_key=started.fairness_key if fairness_key is None else fairness_key,
            )))
        return child

    async def wait_started(self, child: ChildRun) -> None:
        """Wait until the child's first run exists; its ChildWorkflowError if its start
        was refused (the refusal is its outcome, with no start before it)."""
        if child.run_id is None and not child.closed:
            child.started = self._j.workflow_loop().create_future()
            await child.started
        if child.run_id is None:
            await child.future  # raises the refusal

    def cancel(self, child: ChildRun, reason: str) -> None:
        """Record ChildWorkflowCancelRequested and send the child the cancel request;
        nothing once the child ended or was asked already."""
        if child.closed or child.cancel_requested:
            return
        child.cancel_requested = True
        j = self._j
        _, is_new = j.decide(ev.ChildWorkflowCancelRequested(
            seq=j.next_seq(), time=j.now, build_id=j.build_id, child_seq=child.seq,
            reason=reason,
        ))
        if is_new:
            started = j.started
            why = reason or f"cancelled by its parent {started.workflow_id} run {started.run_id}"
            j.commands.append(StopChildWorkflow(
                child_seq=child.seq, workflow_id=child.workflow_id, reason=why,
            ))


class ChildHandle(ChildWorkflowHandle[Any]):
    """The engine's :class:`~orchestrator.workflow.ChildWorkflowHandle`."""

    __slots__ = ("_child", "_children")

    def __init__(self, children: Children, child: ChildRun) -> None:
        self._children = children
        self._child = child

    @property
    def workflow_id(self) -> str:
        return self._child.workflow_id

    @property
    def run_id(self) -> str:
        return self._child.run_id or ""

    async def result(self) -> Any:
        # shielded: a caller that stops waiting (asyncio.wait_for, a cancelled task)
        # must not cancel the child's future, or its outcome would be dropped and a
        # later ``await handle`` could never give it. The shield's own future, which
        # the task waits on, is kept while it waits, for ``saga stack`` to name it
        wait = asyncio.shield(self._child.future)
        waits = self._child.handle_waits
        waits.add(wait)
        wait.add_done_callback(waits.discard)
        return await wait

    def cancel(self, reason: str = "") -> None:
        self._children.cancel(self._child, reason)


def parent_close_stops(history: Sequence[ev.Event], closed_as: str) -> list[StopChildWorkflow]:
    """What the run with ``history``, just closed as ``closed_as``, sends its children
    that are still open (no outcome in its history), by each one's parent-close
    policy: a terminate (TERMINATE), a cancel request unless the code asked for one
    already (REQUEST_CANCEL), nothing (ABANDON)."""
    first = history[0] if history else None
    if not isinstance(first, ev.WorkflowStarted):
        return []
    open_children: dict[int, ev.ChildWorkflowInitiated] = {}
    asked: set[int] = set()
    for e in history:
        if isinstance(e, ev.ChildWorkflowInitiated):
            open_children[e.child_seq] = e
        elif isinstance(e, ev.ChildWorkflowCompleted | ev.ChildWorkflowFailed):
            open_children.pop(e.child_seq, None)
        elif isinstance(e, ev.ChildWorkflowCancelRequested):
            asked.add(e.child_seq)
    out: list[StopChildWorkflow] = []
    for seq, child in open_children.items():
        policy = child.parent_close_policy
        terminate = policy == ev.PARENT_CLOSE_TERMINATE
        if not terminate and (policy != ev.PARENT_CLOSE_REQUEST_CANCEL or seq in asked):
            continue
        reason = (
            f"parent {first.workflow_id} run {first.run_id} closed {closed_as} "
            f"(parent-close policy {policy})"
        )
        out.append(StopChildWorkflow(
            child_seq=seq, workflow_id=child.workflow_id, terminate=terminate, reason=reason,
        ))
    return out
