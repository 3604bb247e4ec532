"""The API for workflow (saga) code.

A workflow is ``async def`` code that gets an explicit :class:`WorkflowContext`::

    @workflow.defn(name="transfer")
    async def transfer(ctx: WorkflowContext, req: TransferRequest) -> Receipt:
        saga = ctx.saga()
        await saga.step(withdraw, req, compensate=refund)
        await ctx.sleep(timedelta(days=3))
        await saga.step(deposit, req, compensate=reverse_deposit)
        return await ctx.execute_activity(issue_receipt, req)

or a class with one ``@workflow.run`` method and ``@workflow.signal``,
``@workflow.query``, ``@workflow.update`` handlers (an instance per run).

Workflow code is replayed against its history after every crash or cache
eviction, so it must be deterministic: take time, randomness and ids from ``ctx``
(``now()``, ``random()``, ``uuid4()``), do I/O only in activities, and change
running code only behind ``ctx.patched()``. See docs/concepts.md.
"""

from __future__ import annotations

import enum
import inspect
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, get_type_hints, overload

from orchestrator.activity import ActivityDefinition
from orchestrator.activity import definition_of as activity_definition_of
from orchestrator.exceptions import ContinueAsNew, DefinitionError
from orchestrator.retry import RetryPolicy, days, hours, minutes, seconds
from orchestrator.status import WorkflowStatus

if TYPE_CHECKING:
    from orchestrator.engine.saga import Saga, SagaScope

__all__ = [
    "ActivityOptions",
    "ChildWorkflowHandle",
    "HandlerSpec",
    "ParentClosePolicy",
    "RetryPolicy",
    "Saga",
    "SagaScope",
    "WorkflowContext",
    "WorkflowDefinition",
    "WorkflowInfo",
    "WorkflowStatus",
    "days",
    "definition_of",
    "defn",
    "hours",
    "minutes",
    "query",
    "run",
    "seconds",
    "signal",
    "update",
    "update_validator",
]

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")

_DEFN_ATTR = "__workflow_definition__"
_ROLE_ATTR = "__workflow_role__"


def __getattr__(name: str) -> Any:
    # The saga helpers are built on this module's API; importing them lazily keeps
    # the import graph one-way (engine -> workflow).
    if name in ("Saga", "SagaScope"):
        from orchestrator.engine import saga

        return getattr(saga, name)
    raise AttributeError(name)


# --- records ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    """Facts about the running workflow run."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    start_time: datetime
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None
    continued_from_run_id: str | None = None
    #: the version of the workflow type's definition this run is pinned to
    workflow_version: int = 1


@dataclass(frozen=True, slots=True)
class ActivityOptions:
    """How one activity call is dispatched, retried and timed out."""

    task_queue: str | None = None
    retry: RetryPolicy | None = None
    start_to_close: timedelta | None = None
    schedule_to_close: timedelta | None = None
    heartbeat_timeout: timedelta | None = None
    local: bool = False
    """Run in the engine worker's own cycle instead of through the task queue."""
    priority: int | None = None
    """Higher first on a flow-controlled queue (docs/flow-control.md); None: the run's."""
    fairness_key: str | None = None
    """The key a flow-controlled queue shares capacity by, e.g. a tenant; None: the
    run's."""


class ParentClosePolicy(enum.Enum):
    """What the engine does to a child workflow that is still open when its parent
    run closes (completes, fails, is cancelled, terminated, timed out, continues as
    new or ends COMPENSATION_FAILED). Recorded with the child's start, so a replay
    and a later deploy keep the policy the child was started with."""

    ABANDON = "ABANDON"
    """The child goes on alone (the default: what every child did before policies)."""
    REQUEST_CANCEL = "REQUEST_CANCEL"
    """The child is asked to cancel: its code gets CancelledError and its saga
    compensates, as with an outside cancel."""
    TERMINATE = "TERMINATE"
    """The child is terminated: it stops at once, no more of its code runs and
    nothing is compensated."""


class ChildWorkflowHandle(ABC, Generic[R]):
    """A started child workflow (``ctx.start_child_workflow``).

    ``await handle`` (or ``await handle.result()``) gives its result, or raises
    ChildWorkflowError; ``handle.cancel()`` asks it to cancel.
    """

    @property
    @abstractmethod
    def workflow_id(self) -> str:
        """The child's workflow id."""

    @property
    @abstractmethod
    def run_id(self) -> str:
        """The run id of the child's first run (its start began it)."""

    @abstractmethod
    async def result(self) -> R:
        """Wait for the child's result; ChildWorkflowError if it failed, was
        cancelled, terminated or timed out (the cause says which)."""

    @abstractmethod
    def cancel(self, reason: str = "") -> None:
        """Ask the child to cancel (recorded in this run's history as
        ChildWorkflowCancelRequested). Its code gets CancelledError; if it ends
        cancelled, :meth:`result` raises ChildWorkflowError with a CancelledError
        cause; if it catches the cancellation and returns, :meth:`result` gives that.
        Does nothing once the child has ended or was already asked."""

    def __await__(self) -> Generator[Any, None, R]:
        return self.result().__await__()


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A signal, query or update handler: its name, callable and conversion hints.

    For class-based workflows ``fn`` is the unbound method (``attr`` names it).
    """

    name: str
    fn: Callable[..., Any]
    arg_types: tuple[Any, ...]
    return_type: Any
    is_async: bool
    attr: str | None = None
    validator: Callable[..., Any] | None = None


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A validated workflow: name, version, run callable, input/return hints, handlers.

    ``version`` tells definitions of one workflow type apart: a worker may hold several,
    new runs start on the newest and each run stays on the one it started on."""

    name: str
    run: Callable[..., Awaitable[Any]]
    arg_types: tuple[Any, ...]
    return_type: Any
    cls: type[Any] | None = None
    signals: Mapping[str, HandlerSpec] = field(default_factory=dict)
    queries: Mapping[str, HandlerSpec] = field(default_factory=dict)
    updates: Mapping[str, HandlerSpec] = field(default_factory=dict)
    version: int = 1


# --- validation ---------------------------------------------------------------------


def _hints(fn: Callable[..., Any], problems: list[str], where: str) -> dict[str, Any]:
    try:
        return get_type_hints(fn)
    except (NameError, TypeError) as exc:
        problems.append(f"{where}: cannot resolve type hints: {exc}")
        return {}


def _params(
    fn: Callable[..., Any], skip: int, problems: list[str], where: str
) -> tuple[tuple[Any, ...], Any]:
    hints = _hints(fn, problems, where)
    params = list(inspect.signature(fn).parameters.values())
    if len(params) < skip:
        problems.append(f"{where}: expected at least {skip} leading parameter(s)")
        return (), hints.get("return")
    out: list[Any] = []
    for p in params[skip:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            problems.append(f"{where}: *args/**kwargs are not supported ({p.name!r})")
        elif p.kind is p.KEYWORD_ONLY:
            if p.default is p.empty:
                problems.append(f"{where}: keyword-only parameter {p.name!r} needs a default")
        else:
            if p.name not in hints:
                problems.append(f"{where}: parameter {p.name!r} has no type annotation")
            out.append(hints.get(p.name))
    return tuple(out), hints.get("return")


def _handler(
    role: str, name: str, fn: Callable[..., Any], attr: str, problems: list[str]
) -> HandlerSpec:
    where = f"{role} {name!r}"
    arg_types, ret = _params(fn, 1, problems, where)
    is_async = inspect.iscoroutinefunction(fn)
    if role == "query" and is_async:
        problems.append(f"{where}: query handlers must be plain (non-async) methods")
    return HandlerSpec(name, fn, arg_types, ret, is_async, attr)


def _check_version(version: object, problems: list[str]) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version < 2**31:
        problems.append(f"version must be a whole number from 1 to 2**31-1, not {version!r}")
        return 1
    return version


def _from_function(fn: Callable[..., Any], name: str, version: object) -> WorkflowDefinition:
    problems: list[str] = []
    number = _check_version(version, problems)
    if not inspect.iscoroutinefunction(fn):
        problems.append("the workflow function must be 'async def'")
    arg_types, ret = _params(fn, 1, problems, "workflow function (first parameter: ctx)")
    if problems:
        raise DefinitionError(name, problems)
    return WorkflowDefinition(
        name=name, run=fn, arg_types=arg_types, return_type=ret, version=number
    )


def _collect_class_handlers(
    cls: type[Any], problems: list[str]
) -> tuple[list[tuple[str, Callable[..., Any]]], dict[str, dict[str, HandlerSpec]], dict[str, Any]]:
    runs: list[tuple[str, Callable[..., Any]]] = []
    specs: dict[str, dict[str, HandlerSpec]] = {"signal": {}, "query": {}, "update": {}}
    validators: dict[str, Any] = {}
    for attr, member in inspect.getmembers(cls, inspect.isfunction):
        role = getattr(member, _ROLE_ATTR, None)
        if role is None:
            continue
        kind, hname = role
        if kind == "run":
            runs.append((attr, member))
        elif kind == "validator":
            if inspect.iscoroutinefunction(member):
                problems.append(f"validator for update {hname!r} must not be async")
            validators[hname] = member
        else:
            hname = hname or attr
            if hname in specs[kind]:
                problems.append(f"duplicate {kind} handler name {hname!r}")
            specs[kind][hname] = _handler(kind, hname, member, attr, problems)
    return runs, specs, validators


def _from_class(cls: type[Any], name: str, version: object) -> WorkflowDefinition:
    problems: list[str] = []
    number = _check_version(version, problems)
    runs, specs, validators = _collect_class_handlers(cls, problems)
    if len(runs) != 1:
        problems.append(f"expected exactly one @workflow.run method, found {len(runs)}")
    try:
        init = inspect.signature(cls)
        if any(p.default is p.empty for p in init.parameters.values()):
            problems.append("the class must be constructible without arguments")
    except (TypeError, ValueError):
        pass
    arg_types: tuple[Any, ...] = ()
    ret: Any = None
    run_fn: Callable[..., Awaitable[Any]] | None = None
    if runs:
        attr, run_fn = runs[0]
        if not inspect.iscoroutinefunction(run_fn):
            problems.append(f"run method {attr!r} must be 'async def'")
        arg_types, ret = _params(run_fn, 2, problems, f"run method {attr!r} (self, ctx, ...)")
    updates = dict(specs["update"])
    for uname, vfn in validators.items():
        if uname not in updates:
            problems.append(f"validator for unknown update {uname!r}")
            continue
        u = updates[uname]
        updates[uname] = HandlerSpec(
            u.name, u.fn, u.arg_types, u.return_type, u.is_async, u.attr, vfn
        )
    if problems or run_fn is None:
        raise DefinitionError(name, problems)
    return WorkflowDefinition(
        name=name,
        run=run_fn,
        arg_types=arg_types,
        return_type=ret,
        cls=cls,
        signals=specs["signal"],
        queries=specs["query"],
        updates=updates,
        version=number,
    )


@overload
def defn(target: C, /) -> C: ...
@overload
def defn(*, name: str | None = None, version: int = 1) -> Callable[[C], C]: ...
def defn(
    target: C | None = None, /, *, name: str | None = None, version: int = 1
) -> C | Callable[[C], C]:
    """Declare a workflow: an ``async def f(ctx, ...)`` or a class with ``@run``.

    ``version`` (default 1): a worker may hold several versions of one ``name`` side by
    side; new runs start on the newest, and a run stays on the version it started on
    until it ends or continues as new (docs/concepts.md, "Versioning").

    The whole definition is checked now; one DefinitionError lists every problem.
    """

    def deco(t: C) -> C:
        wname: str = name or str(getattr(t, "__name__", ""))
        d = (
            _from_class(t, wname, version)
            if isinstance(t, type)
            else _from_function(t, wname, version)  # type: ignore[arg-type]
        )
        setattr(t, _DEFN_ATTR, d)
        return t

    return deco(target) if target is not None else deco


def definition_of(target: Any) -> WorkflowDefinition:
    """The definition attached by ``@workflow.defn`` (or a WorkflowDefinition as is)."""
    if isinstance(target, WorkflowDefinition):
        return target
    d = getattr(target, _DEFN_ATTR, None)
    if isinstance(d, WorkflowDefinition):
        return d
    # A declarative Saga compiles to a definition.
    to_defn = getattr(target, "definition", None)
    if isinstance(to_defn, WorkflowDefinition):
        return to_defn
    raise DefinitionError(repr(target), ["not decorated with @workflow.defn"])


def _role(kind: str, name: str | None) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        setattr(fn, _ROLE_ATTR, (kind, name))
        return fn

    return deco


def run(fn: F) -> F:
    """Mark the entry method of a class-based workflow: ``async def run(self, ctx, ...)``."""
    return _role("run", None)(fn)


@overload
def signal(fn: F, /) -> F: ...
@overload
def signal(*, name: str | None = None) -> Callable[[F], F]: ...
def signal(fn: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark a signal handler method (sync or async); it may change workflow state."""
    return _role("signal", name)(fn) if fn is not None else _role("signal", name)


@overload
def query(fn: F, /) -> F: ...
@overload
def query(*, name: str | None = None) -> Callable[[F], F]: ...
def query(fn: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark a query handler: a plain method that reads state and issues no commands.

    Names starting with ``__`` are the engine's own (``__describe``, ``__history``)."""
    check_query_name(name if name is not None else getattr(fn, "__name__", ""))
    return _role("query", name)(fn) if fn is not None else _role("query", name)


def check_query_name(name: str) -> None:
    """Refuse a query name reserved for the engine's built-in reads."""
    if name.startswith("__"):
        raise ValueError(f"query name {name!r}: names starting with '__' are reserved")


@overload
def update(fn: F, /) -> F: ...
@overload
def update(*, name: str | None = None) -> Callable[[F], F]: ...
def update(fn: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark an update handler: changes state and returns a value to the caller."""
    return _role("update", name)(fn) if fn is not None else _role("update", name)


def update_validator(update_name: str) -> Callable[[F], F]:
    """Mark a plain method validating an update's arguments; raising rejects it.

    A rejected update writes nothing to history.
    """
    return _role("validator", update_name)


# --- the context --------------------------------------------------------------------


class WorkflowContext(ABC):
    """Everything workflow code may do that touches time, the outside or history.

    Implemented by the engine; the same code runs under the Kafka runtime and
    :class:`orchestrator.testing.WorkflowEnvironment`.
    """

    @property
    @abstractmethod
    def info(self) -> WorkflowInfo:
        """Facts about this run."""

    @property
    @abstractmethod
    def is_replaying(self) -> bool:
        """True while the engine re-runs code against recorded history."""

    @property
    @abstractmethod
    def cancel_requested(self) -> bool:
        """True once cancellation of this run was requested."""

    @abstractmethod
    def now(self) -> datetime:
        """Workflow time (UTC): deterministic, advances only between awaits."""

    @abstractmethod
    def random(self) -> float:
        """A deterministic random float in [0, 1)."""

    @abstractmethod
    def uuid4(self) -> uuid.UUID:
        """A deterministic random UUID."""

    @overload
    async def execute_activity(
        self,
        activity: Callable[..., Awaitable[R]],
        *args: Any,
        task_queue: str | None = None,
        retry: RetryPolicy | None = None,
        start_to_close: timedelta | None = None,
        schedule_to_close: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> R: ...
    @overload
    async def execute_activity(
        self,
        activity: Callable[..., R],
        *args: Any,
        task_queue: str | None = None,
        retry: RetryPolicy | None = None,
        start_to_close: timedelta | None = None,
        schedule_to_close: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> R: ...
    @overload
    async def execute_activity(
        self,
        activity: str,
        *args: Any,
        task_queue: str | None = None,
        retry: RetryPolicy | None = None,
        start_to_close: timedelta | None = None,
        schedule_to_close: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None,
        priority: int | None = None,
        fairness_key: str | None = None,
        result_type: type[R] | None = None,
    ) -> R: ...
    async def execute_activity(
        self,
        activity: Callable[..., Any] | str,
        *args: Any,
        task_queue: str | None = None,
        retry: RetryPolicy | None = None,
        start_to_close: timedelta | None = None,
        schedule_to_close: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None,
        priority: int | None = None,
        fairness_key: str | None = None,
        result_type: Any = None,
    ) -> Any:
        """Run an activity durably and return its result.

        Transient failures are retried under ``retry`` (default: RetryPolicy());
        a final failure raises ActivityError whose cause is the activity's error.
        The call is dispatched once per attempt with the same idempotency key.
        ``priority`` (higher first) and ``fairness_key`` (e.g. a tenant) order the
        dispatch on a flow-controlled queue (docs/flow-control.md); they come from
        the code, like ``task_queue``, and other queues ignore them. Left out (None),
        each is the run's own, given by its start.
        """
        adef = activity if isinstance(activity, str) else activity_definition_of(activity)
        opts = ActivityOptions(task_queue, retry, start_to_close, schedule_to_close,
                               heartbeat_timeout, priority=priority, fairness_key=fairness_key)
        return await self._execute_activity(adef, args, opts, result_type)

    @overload
    async def execute_local_activity(
        self,
        activity: Callable[..., Awaitable[R]],
        *args: Any,
        retry: RetryPolicy | None = None,
        start_to_close: timedelta | None = None,
        schedule_to_close: timedelta | None = None,
    ) -> R: ...
    @overload
    async def execute_local_activity(
        self,
        activity: Callable[..., R],
        *args: Any,
        retry: RetryPolicy | None = None,
        start_to_close: timedelta | None = None,
        schedule_to_close: timedelta | None = None,
    ) -> R: ...
    @overload
    async def execute_local_activity(
        self,
        activity: str,
        *args: Any,
        retry: RetryPolicy | None = None,
        start_to_close: timedelta | None = None,
        schedule_to_close: timedelta | None = None,
        result_type: type[R] | None = None,
    ) -> R: ...
    async def execute_local_activity(
        self,
        activity: Callable[..., Any] | str,
        *args: Any,
        retry: RetryPolicy | None = None,
        start_to_close: timedelta | None = None,
        schedule_to_close: timedelta | None = None,
        result_type: Any = None,
    ) -> Any:
        """Run a short activity inside the engine worker, in the same step as the code.

        Same durability, retries and idempotency key as :meth:`execute_activity`,
        but the engine worker runs the attempt itself, right after the decision
        that scheduled it, and commits the schedule, the outcome and the next
        decision in one transaction: no task-queue round trip. Use it for calls
        that take milliseconds (a lookup, a local ledger write); an attempt is
        limited to the worker's local-attempt limit (10 s by default) and holds up
        its shard meanwhile. A worker that does not have the activity registered
        sends it through the task queue instead.
        """
        adef = activity if isinstance(activity, str) else activity_definition_of(activity)
        opts = ActivityOptions(
            None, retry, start_to_close, schedule_to_close, None, local=True
        )
        return await self._execute_activity(adef, args, opts, result_type)

    async def execute_operation(
        self,
        endpoint: str,
        operation: str,
        input: Any = None,
        *,
        schedule_to_close: timedelta | None = None,
        result_type: Any = None,
        retry: RetryPolicy | None = None,
        poll_every: timedelta | None = None,
    ) -> Any:
        """Call ``operation`` of the service configured as ``endpoint`` and wait,
        durably, for its end (docs/operations-api.md): minutes or days.

        The start is an activity (``saga.operation.start``, retried under ``retry``
        with one request id, so the handler starts one operation); the run then waits
        for the handler's signed callback, which ``saga http`` turns into a signal.
        Returns the result (decoded into ``result_type``); raises
        :class:`~orchestrator.exceptions.OperationError` if the operation failed, was
        cancelled, or did not end within ``schedule_to_close``. If this run is
        cancelled while it waits, the handler is asked to cancel the operation.
        ``poll_every``: also read the handler's status that often (an activity each
        time), for handlers that cannot call back.
        """
        from orchestrator.operations.caller import execute_operation

        return await execute_operation(
            self, endpoint, operation, input, schedule_to_close=schedule_to_close,
            result_type=result_type, retry=retry, poll_every=poll_every,
        )

    @abstractmethod
    async def _execute_activity(
        self,
        activity: ActivityDefinition | str,
        args: tuple[Any, ...],
        options: ActivityOptions,
        result_type: Any,
    ) -> Any: ...

    @abstractmethod
    async def sleep(self, duration: timedelta | float) -> None:
        """Sleep durably (``asyncio.sleep`` is durable too); seconds if a float."""

    @abstractmethod
    async def wait_condition(
        self, predicate: Callable[[], bool], *, timeout: timedelta | float | None = None  # noqa: ASYNC109
    ) -> bool:
        """Wait until ``predicate()`` is true: True, or False if ``timeout`` passed first."""

    @abstractmethod
    async def wait_signal(
        self,
        name: str,
        *,
        arg_types: tuple[Any, ...] = (),
        timeout: timedelta | float | None = None,  # noqa: ASYNC109 - durable workflow timer
    ) -> tuple[Any, ...] | None:
        """Wait for the next signal ``name`` without a handler; its decoded args.

        Returns None if ``timeout`` passed first. Signals that arrive before the
        wait are buffered.
        """

    @abstractmethod
    def set_signal_handler(self, name: str, handler: Callable[..., Any]) -> None:
        """Register a signal handler at run time (buffered signals are delivered)."""

    @abstractmethod
    def set_query_handler(self, name: str, handler: Callable[..., Any]) -> None:
        """Register a read-only query handler at run time."""

    @abstractmethod
    def set_update_handler(
        self,
        name: str,
        handler: Callable[..., Any],
        *,
        validator: Callable[..., Any] | None = None,
    ) -> None:
        """Register an update handler (and optional validator) at run time."""

    @overload
    async def execute_child_workflow(
        self,
        workflow: Callable[..., Awaitable[R]],
        *args: Any,
        id: str | None = None,
        task_queue: str | None = None,
        result_type: type[R] | None = None,
        parent_close_policy: ParentClosePolicy = ParentClosePolicy.ABANDON,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> R: ...
    @overload
    async def execute_child_workflow(
        self,
        workflow: str | type[Any] | WorkflowDefinition | Saga,
        *args: Any,
        id: str | None = None,
        task_queue: str | None = None,
        result_type: type[R] | None = None,
        parent_close_policy: ParentClosePolicy = ParentClosePolicy.ABANDON,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> R: ...
    @abstractmethod
    async def execute_child_workflow(
        self,
        workflow: Any,
        *args: Any,
        id: str | None = None,
        task_queue: str | None = None,
        result_type: Any = None,
        parent_close_policy: ParentClosePolicy = ParentClosePolicy.ABANDON,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> Any:
        """Start a child workflow and wait for its result (ChildWorkflowError if not).

        The result is decoded into ``result_type``, else into the return annotation
        of a ``@workflow.defn`` target (so a typed workflow function gives a typed
        result), else it is plain JSON values (a workflow named by a string).
        ``parent_close_policy``: what happens to the child if this run closes first
        (:class:`ParentClosePolicy`). ``priority`` and ``fairness_key``: the child
        run's (its activities and children take them); None: this run's.
        """

    @overload
    async def start_child_workflow(
        self,
        workflow: Callable[..., Awaitable[R]],
        *args: Any,
        id: str | None = None,
        task_queue: str | None = None,
        result_type: type[R] | None = None,
        parent_close_policy: ParentClosePolicy = ParentClosePolicy.ABANDON,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> ChildWorkflowHandle[R]: ...
    @overload
    async def start_child_workflow(
        self,
        workflow: str | type[Any] | WorkflowDefinition | Saga,
        *args: Any,
        id: str | None = None,
        task_queue: str | None = None,
        result_type: type[R] | None = None,
        parent_close_policy: ParentClosePolicy = ParentClosePolicy.ABANDON,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> ChildWorkflowHandle[Any]: ...
    @abstractmethod
    async def start_child_workflow(
        self,
        workflow: Any,
        *args: Any,
        id: str | None = None,
        task_queue: str | None = None,
        result_type: Any = None,
        parent_close_policy: ParentClosePolicy = ParentClosePolicy.ABANDON,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> ChildWorkflowHandle[Any]:
        """Start a child workflow and return its handle once its first run exists
        (ChildWorkflowError if its start is refused, say its id is in use). Options as
        for :meth:`execute_child_workflow`."""

    def continue_as_new(
        self, *args: Any, workflow: str | None = None, version: int | None = None
    ) -> NoReturn:
        """End this run and start a fresh one (same id, empty history) with ``args``.

        The next run starts on the newest version of its type that the worker holds,
        or on ``version`` if given (a version no worker holds leaves it parked)."""
        raise ContinueAsNew(args, workflow, version)

    @abstractmethod
    def patched(self, change_id: str) -> bool:
        """True on runs that reached this point with code containing ``change_id``.

        Runs recorded by older code replay with False; new runs get True.
        """

    @abstractmethod
    def newer_version_available(self) -> bool:
        """Whether the worker holds a newer version of this run's type than the one
        the run is pinned to: the question a declared upgrade point asks.

        Each answer is recorded in history (an ``upgrade`` marker), and a replay returns
        the recorded answer whatever versions the replaying worker holds. Once True it
        stays True for the rest of the run. Ask it at a point in the code, not in a
        ``wait_condition`` predicate (each evaluation records). See
        :meth:`upgrade_point`.
        """

    def upgrade_point(self, *args: Any) -> None:
        """A declared upgrade point: when :meth:`newer_version_available`, end this run
        and continue as new with ``args`` on the newest version; else return."""
        if self.newer_version_available():
            self.continue_as_new(*args)

    @abstractmethod
    def side_effect(self, fn: Callable[[], R], result_type: Any = None) -> R:
        """Run ``fn`` once, record its result, and return the recorded value on replay."""

    @abstractmethod
    def upsert_search_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Set search attributes (visible in listings); merged with earlier ones."""

    @abstractmethod
    def upsert_memo(self, memo: Mapping[str, Any]) -> None:
        """Set memo entries (free-form, shown when describing the run)."""

    @abstractmethod
    def saga(self, *, parallel_compensation: bool = False) -> SagaScope:
        """A compensation stack; see :class:`orchestrator.engine.saga.SagaScope`."""
