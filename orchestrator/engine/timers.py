"""A run's durable timers: a loop ``call_at`` recorded as TimerStarted, fired by history.

The workflow loop reports each timer it is asked for (``asyncio.sleep``, timeouts)
through :class:`~orchestrator.engine.loop.TimerHooks`; :class:`Timers` implements
them. A timer gets the id ``timer/<n>``; the runtime holds it and feeds a
``FireTimer`` input when it is due, and the loop runs its callback only when
history says it fired.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from orchestrator.engine import events as ev
from orchestrator.engine.commands import CancelTimer, StartTimer
from orchestrator.engine.stack import iso_ms
from orchestrator.exceptions import NonDeterminismError

if TYPE_CHECKING:
    from orchestrator.engine.journal import Journal
    from orchestrator.engine.recording import Counters

__all__ = ["Timers"]

PREFIX = "timer/"
"""The ids of workflow timers start with it (activity timers with ``activity/``)."""


class Timers:
    """The durable timers of one run, by timer id: the loop's timer hooks."""

    __slots__ = ("_by_handle", "_counters", "_fire_at", "_handles", "_j")

    def __init__(self, journal: Journal, counters: Counters) -> None:
        self._j = journal
        self._counters = counters
        self._handles: dict[str, asyncio.TimerHandle] = {}
        self._fire_at: dict[str, int] = {}
        self._by_handle: dict[int, str] = {}

    def waits(self) -> dict[int, str]:
        """What each durable timer's loop handle stands for, by ``id()`` (``saga stack``)."""
        return {
            id(handle): f"timer {timer_id} due {iso_ms(self._fire_at.get(timer_id, 0))}"
            for timer_id, handle in self._handles.items()
        }

    def timer_started(self, handle: asyncio.TimerHandle, fire_at_ms: int) -> None:
        """Record a durable timer for a loop ``call_at``."""
        j = self._j
        if j.suppress or j.closed:
            return
        self._counters.timer += 1
        timer_id = f"{PREFIX}{self._counters.timer}"
        rec, is_new = j.decide(ev.TimerStarted(
            seq=j.next_seq(), time=j.now, build_id=j.build_id,
            timer_id=timer_id, fire_at=fire_at_ms,
        ))
        assert isinstance(rec, ev.TimerStarted)
        self._handles[timer_id] = handle
        self._fire_at[timer_id] = rec.fire_at
        self._by_handle[id(handle)] = timer_id
        if is_new:
            j.commands.append(StartTimer(timer_id=timer_id, fire_at=rec.fire_at))

    def timer_cancelled(self, handle: asyncio.TimerHandle) -> None:
        """Record the cancellation of a pending durable timer."""
        timer_id = self._by_handle.pop(id(handle), None)
        if timer_id is None or timer_id not in self._handles:
            return
        del self._handles[timer_id]
        self._fire_at.pop(timer_id, None)
        j = self._j
        _, is_new = j.decide(ev.TimerCancelled(
            seq=j.next_seq(), time=j.now, build_id=j.build_id, timer_id=timer_id,
        ))
        if is_new:
            j.commands.append(CancelTimer(timer_id=timer_id))

    def handle_fire(self, timer_id: str) -> None:
        """A FireTimer input for a workflow timer: it fires if still pending."""
        if timer_id in self._handles:
            self._j.accept(ev.TimerFired(seq=self._j.next_seq(), time=self._j.now,
                                         timer_id=timer_id))

    def deliver(self, e: ev.TimerFired) -> None:
        """Run the callback of the timer history says fired."""
        handle = self._handles.pop(e.timer_id, None)
        self._fire_at.pop(e.timer_id, None)
        if handle is None:
            self._j.fail(NonDeterminismError(
                "history has a timer firing for a timer the code did not start",
                seq=e.seq, expected=f"TimerStarted({e.timer_id})", actual="none",
            ))
            return
        self._by_handle.pop(id(handle), None)
        self._j.workflow_loop().fire(handle)

    def pending(self) -> list[StartTimer]:
        """The timers still pending, as the runtime must hold them."""
        return [StartTimer(timer_id=t, fire_at=at) for t, at in self._fire_at.items()]

    def clear(self) -> None:
        """Drop every handle (the executor is released)."""
        self._handles.clear()
        self._by_handle.clear()
