"""The engine's implementation of :class:`~orchestrator.workflow.WorkflowContext`.

It translates each context call into executor decisions and keeps the run's
handler registry (signals, queries, updates), buffered signals and sagas.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, get_type_hints

from orchestrator.activity import ActivityDefinition
from orchestrator.converter import Payload
from orchestrator.engine.children import ChildHandle, ChildRun
from orchestrator.engine.events import Failure
from orchestrator.engine.saga import SagaScope
from orchestrator.exceptions import (
    CompensationError,
    PayloadConversionError,
    WorkflowControl,
    WorkflowTaskError,
)
from orchestrator.workflow import (
    ActivityOptions,
    ChildWorkflowHandle,
    HandlerSpec,
    ParentClosePolicy,
    WorkflowContext,
    WorkflowInfo,
    check_query_name,
    definition_of,
)

if TYPE_CHECKING:
    from orchestrator.engine.executor import WorkflowExecutor
    from orchestrator.retry import RetryPolicy

__all__ = ["EngineContext"]

R = TypeVar("R")


def _seconds(d: timedelta | float | None) -> float | None:
    if d is None:
        return None
    return d.total_seconds() if isinstance(d, timedelta) else float(d)


@dataclass(frozen=True, slots=True)
class Handler:
    """A handler bound to this run: callable plus conversion hints."""

    fn: Callable[..., Any]
    arg_types: tuple[Any, ...]
    validator: Callable[..., Any] | None = None


def _handler_from_callable(fn: Callable[..., Any], validator: Any = None) -> Handler:
    try:
        hints = get_type_hints(fn)
    except (NameError, TypeError):
        hints = {}
    params = [
        p for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return Handler(fn, tuple(hints.get(p.name) for p in params), validator)


class EngineContext(WorkflowContext):
    """WorkflowContext backed by a WorkflowExecutor."""

    def __init__(self, executor: WorkflowExecutor) -> None:
        self._x = executor
        s = executor.started
        self._info = WorkflowInfo(
            workflow_id=s.workflow_id, run_id=s.run_id, workflow_type=s.workflow_type,
            task_queue=s.task_queue, start_time=datetime.fromtimestamp(s.time / 1000, UTC),
            parent_workflow_id=s.parent_workflow_id, parent_run_id=s.parent_run_id,
            continued_from_run_id=s.continued_from_run_id, workflow_version=s.workflow_version,
        )
        self._signals: dict[str, Handler] = {}
        self._queries: dict[str, Handler] = {}
        self._updates: dict[str, Handler] = {}
        self._buffered: dict[str, collections.deque[list[Payload]]] = {}
        self._waiters: dict[str, collections.deque[asyncio.Future[list[Payload]]]] = {}
        self._sagas: list[SagaScope] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._instance: Any = None
        self._handler_error: Exception | None = None
        self._cause: BaseException | None = None  # what the sagas compensate for

    # --- the run ----------------------------------------------------------------------

    async def run_main(self, payloads: list[Payload]) -> Any:
        """Decode the input, run the workflow, compensate sagas on failure."""
        defn = self._x.definition
        try:
            args = self._x.converter.from_payloads(payloads, defn.arg_types)
        except PayloadConversionError as exc:
            raise PayloadConversionError(f"workflow {defn.name!r} input: {exc}") from None
        if len(args) != len(defn.arg_types):
            raise TypeError(
                f"workflow {defn.name!r} takes {len(defn.arg_types)} argument(s), "
                f"got {len(args)}"
            )
        if defn.cls is not None:
            self._instance = defn.cls()
            self._bind_class_handlers(defn.signals, defn.queries, defn.updates)
        try:
            try:
                if defn.cls is not None:
                    return await defn.run(self._instance, self, *args)
                return await defn.run(self, *args)
            except asyncio.CancelledError:
                if self._handler_error is not None:
                    raise self._handler_error from None
                raise
        except BaseException as exc:
            if (
                isinstance(exc, WorkflowControl | WorkflowTaskError | GeneratorExit)
                or not self._sagas
            ):
                raise  # GeneratorExit: the run is evicted or terminated, not failing
            await self._compensate_all(exc)
            raise

    async def _compensate_all(self, cause: BaseException) -> None:
        self._cause = cause
        errors: list[BaseException] = []
        for saga in reversed(self._sagas):
            try:
                await saga.compensate(cause)
            except CompensationError as exc:
                errors.extend(exc.errors)
                break
        if errors:
            raise CompensationError(cause, errors) from cause

    def signal_waiters(self) -> dict[int, str]:
        """``wait_signal`` futures by ``id()``, each described by its signal's name."""
        return {id(f): f"signal {name!r}" for name, q in self._waiters.items() for f in q}

    def failed_compensations(self) -> list[str]:
        """Activity types of the compensations that failed (an operator may repair)."""
        return [name for saga in self._sagas for name in saga.failed_compensations]

    async def resume_compensation(
        self, skip: str | None, retry: RetryPolicy | None
    ) -> NoReturn:
        """After an operator's repair: go on compensating, newest saga first (the one
        that failed, then those not compensated yet), then end as the run would have
        had compensation not failed: with the error that caused it."""
        cause = self._cause
        if isinstance(cause, CompensationError):
            cause = cause.original  # the code re-raised an explicit compensate()'s error
        if cause is None:
            raise WorkflowTaskError("a repair of a run that has not compensated")
        errors: list[BaseException] = []
        for saga in reversed(self._sagas):
            try:
                await saga.repair(cause, skip, retry)
            except CompensationError as exc:
                errors.extend(exc.errors)
                break
        if errors:
            raise CompensationError(cause, errors) from cause
        raise cause

    def _bind_class_handlers(
        self,
        signals: Mapping[str, HandlerSpec],
        queries: Mapping[str, HandlerSpec],
        updates: Mapping[str, HandlerSpec],
    ) -> None:
        inst = self._instance
        for name, spec in signals.items():
            self._signals[name] = Handler(getattr(inst, spec.attr or name), spec.arg_types)
            self._drain(name)
        for name, spec in queries.items():
            self._queries[name] = Handler(getattr(inst, spec.attr or name), spec.arg_types)
        for name, spec in updates.items():
            validator = spec.validator.__get__(inst) if spec.validator else None
            self._updates[name] = Handler(
                getattr(inst, spec.attr or name), spec.arg_types, validator
            )

    # --- handler registry (used by the executor) -------------------------------------

    def query_handler(self, name: str) -> Handler | None:
        """The query handler ``name``, if registered."""
        return self._queries.get(name)

    def query_names(self) -> list[str]:
        """Registered query names."""
        return list(self._queries)

    def update_handler(self, name: str) -> Handler | None:
        """The update handler ``name``, if registered."""
        return self._updates.get(name)

    def update_names(self) -> list[str]:
        """Registered update names."""
        return list(self._updates)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = self._x.workflow_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def check_signal(self, name: str, payloads: Sequence[Payload]) -> str | None:
        """Why signal ``name`` cannot be delivered (bad arguments), or None."""
        handler = self._signals.get(name)
        if handler is None:
            return None  # buffered; decoded when a handler or wait_signal takes it
        try:
            self._x.converter.from_payloads(payloads, handler.arg_types)
        except PayloadConversionError as exc:
            return f"signal {name!r}: bad arguments: {exc}"
        return None

    def deliver_signal(self, name: str, payloads: list[Payload]) -> None:
        """Run the handler for signal ``name``, or buffer it for wait_signal."""
        if name in self._signals:
            self._invoke_signal(name, payloads)
            return
        waiters = self._waiters.get(name)
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(payloads)
                return
        self._buffered.setdefault(name, collections.deque()).append(payloads)

    def _invoke_signal(self, name: str, payloads: list[Payload]) -> None:
        handler = self._signals[name]
        try:
            args = self._x.converter.from_payloads(payloads, handler.arg_types)
        except PayloadConversionError:
            # A signal nobody can read is dropped; the caller had no reply to wait for.
            return
        task = self._spawn(self._call(handler.fn, args))
        task.add_done_callback(self._signal_done)

    def _signal_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, Exception) and self._handler_error is None:
            # A failing signal handler fails the run: the error is raised from the
            # run's current await, so sagas compensate as for any other error.
            self._handler_error = exc
            main = self._x.main_task
            if main is not None and not main.done():
                main.cancel()

    async def _call(self, fn: Callable[..., Any], args: Sequence[Any]) -> Any:
        result = fn(*args)
        if inspect.isawaitable(result):
            return await result
        return result

    def _drain(self, name: str) -> None:
        buffered = self._buffered.pop(name, None)
        while buffered:
            self._invoke_signal(name, buffered.popleft())

    def start_update(self, update_id: str, name: str, payloads: list[Payload]) -> None:
        """Start an accepted update's handler; its outcome is recorded when it ends."""
        handler = self._updates.get(name)
        if handler is None:
            self._x.records.respond_update(update_id, None, Failure(
                message=f"unknown update {name!r}", type="NotFoundError", non_retryable=True,
            ))
            return
        try:
            args = self._x.converter.from_payloads(payloads, handler.arg_types)
        except PayloadConversionError as exc:
            self._x.records.respond_update(update_id, None, self._x.failure_of(exc))
            return
        task = self._spawn(self._call(handler.fn, args))
        task.add_done_callback(lambda t: self._update_done(update_id, t))

    def _update_done(self, update_id: str, task: asyncio.Task[Any]) -> None:
        exc: BaseException | None
        exc = asyncio.CancelledError() if task.cancelled() else task.exception()
        if isinstance(exc, WorkflowTaskError):
            return
        if exc is None:
            try:
                result = self._x.converter.to_payload(task.result())
                self._x.records.respond_update(update_id, result, None)
            except PayloadConversionError as enc_exc:
                self._x.records.respond_update(update_id, None, self._x.failure_of(enc_exc))
            return
        self._x.records.respond_update(update_id, None, self._x.failure_of(exc))

    # --- WorkflowContext --------------------------------------------------------------

    @property
    def info(self) -> WorkflowInfo:
        return self._info

    @property
    def is_replaying(self) -> bool:
        return self._x.is_replaying

    @property
    def cancel_requested(self) -> bool:
        return self._x.cancel_requested

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._x.now_ms / 1000, UTC)

    def random(self) -> float:
        return self._x.random().random()

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=self._x.random().getrandbits(128), version=4)

    async def _execute_activity(
        self,
        activity: ActivityDefinition | str,
        args: tuple[Any, ...],
        options: ActivityOptions,
        result_type: Any,
    ) -> Any:
        if isinstance(activity, ActivityDefinition):
            name = activity.name
            if len(args) != len(activity.arg_types):
                raise TypeError(
                    f"activity {name!r} takes {len(activity.arg_types)} argument(s), "
                    f"got {len(args)}"
                )
            hint = result_type if result_type is not None else activity.return_type
        else:
            name, hint = activity, result_type
        try:
            payloads = self._x.converter.to_payloads(args)
        except PayloadConversionError as exc:
            raise PayloadConversionError(f"arguments of activity {name!r}: {exc}") from None
        return await self._x.activities.schedule(name, payloads, options, hint)

    async def sleep(self, duration: timedelta | float) -> None:
        await asyncio.sleep(_seconds(duration) or 0.0)

    async def wait_condition(
        self,
        predicate: Callable[[], bool],
        *,
        timeout: timedelta | float | None = None,  # noqa: ASYNC109 - durable timer
    ) -> bool:
        if predicate():
            return True
        fut = self._x.add_condition(predicate)
        seconds = _seconds(timeout)
        if seconds is None:
            await fut
            return True
        try:
            await asyncio.wait_for(fut, seconds)
        except TimeoutError:
            return False
        return True

    async def wait_signal(
        self,
        name: str,
        *,
        arg_types: tuple[Any, ...] = (),
        timeout: timedelta | float | None = None,  # noqa: ASYNC109 - durable timer
    ) -> tuple[Any, ...] | None:
        buffered = self._buffered.get(name)
        if buffered:
            payloads = buffered.popleft()
        else:
            fut: asyncio.Future[list[Payload]] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(name, collections.deque()).append(fut)
            seconds = _seconds(timeout)
            try:
                payloads = await (fut if seconds is None else asyncio.wait_for(fut, seconds))
            except TimeoutError:
                return None
        return tuple(self._x.converter.from_payloads(payloads, arg_types))

    def set_signal_handler(self, name: str, handler: Callable[..., Any]) -> None:
        self._signals[name] = _handler_from_callable(handler)
        self._drain(name)

    def set_query_handler(self, name: str, handler: Callable[..., Any]) -> None:
        check_query_name(name)
        self._queries[name] = _handler_from_callable(handler)

    def set_update_handler(
        self,
        name: str,
        handler: Callable[..., Any],
        *,
        validator: Callable[..., Any] | None = None,
    ) -> None:
        self._updates[name] = _handler_from_callable(handler, validator)

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
        child = self._start_child(workflow, args, id=id, task_queue=task_queue,
                                  result_type=result_type, policy=parent_close_policy,
                                  priority=priority, fairness_key=fairness_key)
        return await child.future

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
        child = self._start_child(workflow, args, id=id, task_queue=task_queue,
                                  result_type=result_type, policy=parent_close_policy,
                                  priority=priority, fairness_key=fairness_key)
        await self._x.children.wait_started(child)
        return ChildHandle(self._x.children, child)

    def _start_child(
        self,
        workflow: Any,
        args: tuple[Any, ...],
        *,
        id: str | None,
        task_queue: str | None,
        result_type: Any,
        policy: ParentClosePolicy,
        priority: int | None = None,
        fairness_key: str | None = None,
    ) -> ChildRun:
        if not isinstance(policy, ParentClosePolicy):
            raise TypeError(
                f"parent_close_policy must be a ParentClosePolicy, not {policy!r}"
            )
        if isinstance(workflow, str):
            wtype, hint = workflow, result_type
        else:
            d = definition_of(workflow)
            wtype = d.name
            hint = result_type if result_type is not None else d.return_type
        payloads = self._x.converter.to_payloads(args)
        return self._x.children.start(wtype, id, payloads, task_queue, hint,
                                      parent_close_policy=policy.value, priority=priority,
                                      fairness_key=fairness_key)

    def patched(self, change_id: str) -> bool:
        return self._x.records.patched(change_id)

    def newer_version_available(self) -> bool:
        pinned = self._info.workflow_version
        return self._x.records.newer_version_available(pinned, self._x.newest_version())

    def side_effect(self, fn: Callable[[], R], result_type: Any = None) -> R:
        result: R = self._x.records.side_effect(fn, result_type)
        return result

    def upsert_search_attributes(self, attributes: Mapping[str, Any]) -> None:
        conv = self._x.converter
        self._x.records.upsert(attributes={k: conv.to_payload(v) for k, v in attributes.items()})

    def upsert_memo(self, memo: Mapping[str, Any]) -> None:
        conv = self._x.converter
        self._x.records.upsert(memo={k: conv.to_payload(v) for k, v in memo.items()})

    def saga(self, *, parallel_compensation: bool = False) -> SagaScope:
        scope = SagaScope(self, len(self._sagas) + 1, self._x.records,
                          parallel_compensation=parallel_compensation)
        self._sagas.append(scope)
        return scope
