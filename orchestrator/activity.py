"""The API for activity code: ``@activity.defn``, ``activity.info()``, ``heartbeat()``.

An activity is a plain function or ``async def`` that does the real work (calls an
API, writes a row). It runs at least once per attempt, so it should pass
``info().idempotency_key`` to whatever it calls; the key is
``"{workflow_id}/{run_id}/{activity_seq}"`` and stays the same across attempts.

Parameters and return values are converted with the payload converter, guided by
the type hints, so annotate them.

An activity that is finished by someone else later (a webhook, a message from a
legacy system) hands out ``info().task_token`` and raises :class:`CompleteAsync`;
the holder of the token then completes, fails or heartbeats the attempt through a
client, ``saga activity`` or the HTTP API (docs/concepts.md).

When the workflow stops waiting for a running attempt (it is cancelled, or the scope
awaiting the activity ends), the engine sends a cancel to the worker running it: an
async activity gets ``asyncio.CancelledError`` at its current await; a sync one sees
:func:`is_cancelled` turn True and :func:`heartbeat` raise
:class:`~orchestrator.exceptions.ActivityCancelledError` (docs/concepts.md,
"Cancellation").
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, get_type_hints, overload

from orchestrator.exceptions import ActivityCancelledError, DefinitionError
from orchestrator.task_token import TaskToken

__all__ = [
    "ActivityCancelledError",
    "ActivityDefinition",
    "ActivityInfo",
    "CompleteAsync",
    "definition_of",
    "defn",
    "heartbeat",
    "in_activity",
    "info",
    "is_cancelled",
]

F = TypeVar("F", bound=Callable[..., Any])

_DEFN_ATTR = "__activity_definition__"


@dataclass(frozen=True, slots=True)
class ActivityDefinition:
    """A validated activity: its name, function and the hints used for conversion."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    arg_types: tuple[Any, ...]
    return_type: Any


@dataclass(frozen=True, slots=True)
class ActivityInfo:
    """What an activity attempt knows about itself."""

    workflow_id: str
    run_id: str
    workflow_type: str
    activity_type: str
    activity_seq: int
    attempt: int
    task_queue: str
    scheduled_time: datetime
    """When attempt 1 was scheduled (workflow time)."""
    attempt_started_time: datetime
    """When this attempt was dispatched (workflow time)."""
    heartbeat_details: Sequence[Any] = field(default_factory=tuple)
    """Details of the last heartbeat of an earlier attempt, if any."""
    key: str = ""
    """The idempotency key the engine gave the task (empty: derived, see below)."""
    token_signature: str = ""
    """The engine's signature of this attempt (empty when it has no task-token key)."""

    @property
    def activity_id(self) -> str:
        """The activity's id within its run (its sequence number as text)."""
        return str(self.activity_seq)

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts: ``"{workflow_id}/{run_id}/{activity_seq}"``, where an
        activity that an operator's reset runs again keeps the run id of the run that
        first ran it (docs/operations.md)."""
        return self.key or f"{self.workflow_id}/{self.run_id}/{self.activity_seq}"

    @property
    def task_token(self) -> str:
        """An opaque, URL-safe string naming this attempt, for completing it from
        outside after ``raise CompleteAsync()`` (``Client.complete_activity``); signed
        (``v2.``) when the engine workers have a task-token key."""
        return TaskToken(
            self.workflow_id, self.run_id, self.activity_seq, self.attempt, self.token_signature
        ).encode()


class CompleteAsync(BaseException):
    """Raise from an activity to end it without an outcome: the attempt stays running
    until the holder of ``info().task_token`` completes or fails it, or one of its
    timeouts (start-to-close, heartbeat, schedule-to-close) passes.

    A ``BaseException``, so an ``except Exception`` in the activity does not swallow
    it. Not supported in local activities (the attempt fails, not retried).
    """


@dataclass(frozen=True, slots=True)
class _Current:
    info: ActivityInfo
    heartbeat: Callable[[Sequence[Any]], None]
    cancelled: threading.Event | None
    raise_on_heartbeat: bool


_current: ContextVar[_Current | None] = ContextVar("orchestrator_activity", default=None)


def _validate(fn: Callable[..., Any], name: str) -> ActivityDefinition:
    problems: list[str] = []
    if not callable(fn):
        raise DefinitionError(name, ["not callable"])
    try:
        hints = get_type_hints(fn)
    except (NameError, TypeError) as exc:
        problems.append(f"cannot resolve type hints: {exc}")
        hints = {}
    arg_types: list[Any] = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            problems.append(f"parameter {p.name!r}: *args/**kwargs are not supported")
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            problems.append(f"parameter {p.name!r}: keyword-only parameters need a default")
        elif p.kind is not p.KEYWORD_ONLY:
            if p.name not in hints:
                problems.append(f"parameter {p.name!r} has no type annotation")
            arg_types.append(hints.get(p.name))
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        problems.append("generators cannot be activities")
    if problems:
        raise DefinitionError(name, problems)
    return ActivityDefinition(
        name=name,
        fn=fn,
        is_async=inspect.iscoroutinefunction(fn),
        arg_types=tuple(arg_types),
        return_type=hints.get("return"),
    )


@overload
def defn(fn: F, /) -> F: ...
@overload
def defn(*, name: str | None = None) -> Callable[[F], F]: ...
def defn(fn: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark a function (sync or async) as an activity named ``name`` (default: its name).

    The signature is validated now; a DefinitionError lists every problem.
    """

    def deco(f: F) -> F:
        d = _validate(f, name or f.__name__)
        setattr(f, _DEFN_ATTR, d)
        return f

    return deco(fn) if fn is not None else deco


def definition_of(fn: Callable[..., Any]) -> ActivityDefinition:
    """The definition attached by ``@activity.defn``, or one built from ``fn`` now."""
    d = getattr(fn, _DEFN_ATTR, None)
    if isinstance(d, ActivityDefinition):
        return d
    return _validate(fn, getattr(fn, "__name__", repr(fn)))


def in_activity() -> bool:
    """True inside a running activity attempt."""
    return _current.get() is not None


def info() -> ActivityInfo:
    """The running attempt's info; raises RuntimeError outside an activity."""
    cur = _current.get()
    if cur is None:
        raise RuntimeError("activity.info() called outside an activity")
    return cur.info


def heartbeat(*details: Any) -> None:
    """Report liveness (and progress ``details``, handed to the next attempt).

    The engine keeps the latest heartbeat of each activity in its shard store (not
    in history): see docs/concepts.md for what a restart or a new disk keeps. In a
    sync activity whose attempt has been cancelled it raises
    :class:`~orchestrator.exceptions.ActivityCancelledError` instead.
    """
    cur = _current.get()
    if cur is None:
        raise RuntimeError("activity.heartbeat() called outside an activity")
    if cur.raise_on_heartbeat and cur.cancelled is not None and cur.cancelled.is_set():
        raise ActivityCancelledError("activity attempt cancelled")
    cur.heartbeat(details)


def is_cancelled() -> bool:
    """True once the engine has cancelled the running attempt (the workflow stopped
    waiting for it). For sync activities, which cannot be interrupted: check it between
    steps and return or raise early; :func:`heartbeat` then raises
    :class:`~orchestrator.exceptions.ActivityCancelledError`. An async activity gets
    ``asyncio.CancelledError`` at its current await, and this turns True too.
    Raises RuntimeError outside an activity."""
    cur = _current.get()
    if cur is None:
        raise RuntimeError("activity.is_cancelled() called outside an activity")
    return cur.cancelled is not None and cur.cancelled.is_set()


@contextlib.contextmanager
def running(
    activity_info: ActivityInfo,
    on_heartbeat: Callable[[Sequence[Any]], None],
    cancelled: threading.Event | None = None,
    *,
    raise_on_heartbeat: bool = False,
) -> Iterator[None]:
    """For runtimes: make ``info()``/``heartbeat()``/``is_cancelled()`` work for the
    enclosed attempt. ``cancelled`` is set when the attempt is cancelled; with
    ``raise_on_heartbeat`` a heartbeat after that raises ActivityCancelledError."""
    token = _current.set(
        _Current(activity_info, on_heartbeat, cancelled, raise_on_heartbeat)
    )
    try:
        yield
    finally:
        _current.reset(token)
