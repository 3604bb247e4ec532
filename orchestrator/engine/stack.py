"""Where a running workflow is suspended: each task of its loop, the workflow-code
frames of its coroutine chain, and what it awaits.

The engine answers the reserved query :data:`STACK_QUERY` with :func:`task_stacks`
(``saga stack ID``). It walks each unfinished task's coroutine chain (``cr_await``
down to the innermost coroutine, ``cr_frame`` for each frame), keeps the frames of
workflow code (files outside this package and the standard library), and names what
the task waits for from the future it is blocked on (``Task._fut_waiter``) and the
futures and timer handles the engine's and asyncio's frames on the way hold: an
activity, a child workflow, a durable timer and its due time, a signal, a condition.
Nothing is run or changed: it only reads the suspended coroutines.
"""

from __future__ import annotations

import asyncio
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final, Protocol

__all__ = ["STACK_QUERY", "Awaitables", "StackFrame", "TaskStack", "iso_ms", "task_stacks"]

STACK_QUERY: Final = "__stack"
"""Reserved query name: the engine answers it with the run's task stacks."""

_PACKAGE = str(Path(__file__).resolve().parents[1])
_STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())
_MAX_DEPTH = 200  # coroutine chain links followed, and tasks followed into


def iso_ms(epoch_ms: int) -> str:
    """An epoch-ms time as UTC ISO 8601 to the millisecond (how a stack shows times)."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class StackFrame:
    """One frame of workflow code: file, line and function."""

    file: str
    line: int
    function: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} in {self.function}"


@dataclass(frozen=True, slots=True)
class TaskStack:
    """One task of a run: its name, its workflow-code frames (outermost first), and
    what it awaits (``awaiting``: e.g. ``activity payments.withdraw #2 ...``,
    ``timer timer/1 due ...``, ``signal 'approve'``, ``condition ...``)."""

    task: str
    """``main``, or the task's coroutine function and its rank among the run's tasks."""
    awaiting: str
    frames: list[StackFrame] = field(default_factory=list)

    @property
    def location(self) -> StackFrame | None:
        """The innermost workflow-code frame: where the task is suspended."""
        return self.frames[-1] if self.frames else None

    def to_json(self) -> dict[str, Any]:
        """As the query's JSON answer holds it."""
        return {
            "task": self.task,
            "awaiting": self.awaiting,
            "frames": [{"file": f.file, "line": f.line, "function": f.function}
                       for f in self.frames],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskStack:
        """From the query's JSON answer."""
        frames = [StackFrame(str(f["file"]), int(f["line"]), str(f["function"]))
                  for f in data.get("frames", [])]
        return cls(str(data["task"]), str(data["awaiting"]), frames)


class Awaitables(Protocol):
    """What the executor knows about the futures its code can wait on."""

    def main_task(self) -> asyncio.Task[Any] | None: ...

    def tasks(self) -> list[asyncio.Task[Any]]: ...

    def futures(self) -> dict[int, str]:
        """Description by ``id()`` of each future standing for an engine wait."""
        ...

    def timer_handles(self) -> dict[int, str]:
        """Description by ``id()`` of each durable timer's loop handle."""
        ...


def _is_workflow_code(frame: FrameType) -> bool:
    name = frame.f_code.co_filename
    return not (name.startswith((_PACKAGE, _STDLIB)) or name.startswith("<"))


def _chain(task: asyncio.Task[Any]) -> list[FrameType]:
    """The frames of the task's coroutine chain, outermost first."""
    frames: list[FrameType] = []
    link: Any = task.get_coro()
    for _ in range(_MAX_DEPTH):
        frame = getattr(link, "cr_frame", None) or getattr(link, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        link = getattr(link, "cr_await", None) or getattr(link, "gi_yieldfrom", None)
        if link is None:
            break
    return frames


def _describe(
    task: asyncio.Task[Any], known: Awaitables, futures: dict[int, str],
    handles: dict[int, str], depth: int = 0,
) -> str:
    frames = _chain(task)
    waiter = getattr(task, "_fut_waiter", None)
    found: list[str] = []
    if waiter is not None and id(waiter) in futures:
        found.append(futures[id(waiter)])
    timers: list[str] = []
    for frame in reversed(frames):
        if _is_workflow_code(frame):
            continue
        for value in frame.f_locals.values():
            if isinstance(value, asyncio.Future) and id(value) in futures:
                text = futures[id(value)]
                if text not in found:
                    found.append(text)
            elif isinstance(value, asyncio.TimerHandle) and id(value) in handles:
                timers.append(handles[id(value)])
    if found:
        return "; ".join(found + [f"until {t}" for t in timers])
    if timers:
        return "; ".join(timers)
    if isinstance(waiter, asyncio.Task) and depth < 10:
        inner = _describe(waiter, known, futures, handles, depth + 1)
        return f"task {_name(waiter, known)}: {inner}"
    children = getattr(waiter, "_children", None)
    if isinstance(children, list) and depth < 10:
        parts = [
            _describe(c, known, futures, handles, depth + 1) if isinstance(c, asyncio.Task)
            else "a future"
            for c in children if not c.done()
        ]
        return "all of: " + " | ".join(parts) if parts else "gather (done)"
    return "nothing the engine knows of" if waiter is not None else "ready to run"


def _name(task: asyncio.Task[Any], known: Awaitables) -> str:
    """``main``, else the task's coroutine and its rank among the run's tasks (in the
    order the code created them: the same after a replay, unlike asyncio's names)."""
    if task is known.main_task():
        return "main"
    tasks = known.tasks()
    rank = next((i for i, t in enumerate(tasks, 1) if t is task), 0)
    return f"{getattr(task.get_coro(), '__qualname__', 'task')} #{rank}"


def task_stacks(known: Awaitables) -> list[TaskStack]:
    """Each unfinished task of the run: where it is suspended and what it awaits."""
    futures, handles = known.futures(), known.timer_handles()
    out = []
    for task in known.tasks():
        frames = [
            StackFrame(f.f_code.co_filename, f.f_lineno, f.f_code.co_name)
            for f in _chain(task)
            if _is_workflow_code(f)
        ]
        out.append(TaskStack(_name(task, known), _describe(task, known, futures, handles),
                             frames))
    main = [s for s in out if s.task == "main"]
    return main + [s for s in out if s.task != "main"]
