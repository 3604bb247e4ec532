"""Sagas: a compensation stack inside a workflow, and a declarative form.

Semantics (docs/sagas.md states them for users):

- ``await scope.step(action, *args, compensate=undo)`` runs ``action`` as a durable
  activity under its retry policy. Only when it succeeds is ``undo`` registered
  (``register_before=True`` registers it before the call, for one-shot calls whose
  outcome may be unknown; the compensation must then tolerate "never happened").
- When the workflow raises (a terminal error) or is cancelled, the engine
  compensates every saga of the run, newest saga first: it waits until steps still
  in flight settle, then runs the registered compensations in reverse order of
  registration, or all at once with ``parallel_compensation=True``.
- Each compensation is a durable activity with its own policy (default: retry
  until it succeeds, backoff capped at one hour), or an operation
  (``step_operation``, ``add_compensation_operation``) whose start is retried under
  that policy and whose end the saga waits for. Compensating is shielded from
  cancellation: a cancel request arriving meanwhile does not interrupt it.
- A compensation that exhausts its policy stops the sequence (earlier steps are not
  compensated over a failed later one) and the run ends COMPENSATION_FAILED with
  the original error and every compensation error.
- An operator may repair such a run (:meth:`SagaScope.repair`, reached through
  ``EngineContext.resume_compensation``): the failed compensations run again, or one
  is skipped, and the compensations after them follow in the same order.
- ``pivot=True`` marks the point of no return: once that step succeeds nothing is
  compensated any more, and later steps are retried without a limit.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from orchestrator.exceptions import CompensationError
from orchestrator.retry import RetryPolicy

if TYPE_CHECKING:
    from orchestrator.workflow import WorkflowContext, WorkflowDefinition

__all__ = ["DEFAULT_COMPENSATION_RETRY", "Saga", "SagaScope"]

DEFAULT_COMPENSATION_RETRY = RetryPolicy(
    initial=timedelta(seconds=1), backoff=2.0, maximum=timedelta(hours=1)
)
"""Retry until it succeeds, at most one hour between attempts."""


class CompensationRecorder(Protocol):
    """Where a saga records its progress in history (the executor's Records)."""

    def record_compensation_started(
        self, saga_id: int, compensations: list[str], cause: BaseException | None
    ) -> None: ...

    def record_compensation_completed(self, saga_id: int) -> None: ...

    def record_compensation_failed(
        self, saga_id: int, activity_type: str, error: BaseException
    ) -> None: ...


R = TypeVar("R")

@dataclass(frozen=True, slots=True)
class _OperationCall:
    """An operation run as a compensation: ``ctx.execute_operation`` with these."""

    endpoint: str
    operation: str
    input: Any
    schedule_to_close: timedelta | None


def _name(activity: Callable[..., Any] | str | _OperationCall) -> str:
    if isinstance(activity, str):
        return activity
    if isinstance(activity, _OperationCall):
        return f"{activity.endpoint}/{activity.operation}"
    d = getattr(activity, "__activity_definition__", None)
    return str(getattr(d, "name", None) or getattr(activity, "__name__", repr(activity)))


@dataclass(frozen=True, slots=True)
class _Compensation:
    activity: Callable[..., Any] | str | _OperationCall
    args: tuple[Any, ...]
    retry: RetryPolicy
    start_to_close: timedelta | None
    task_queue: str | None


class _State(enum.Enum):
    ACTIVE = "active"
    COMMITTED = "committed"
    COMPENSATED = "compensated"


class SagaScope:
    """The compensation stack returned by ``ctx.saga()``."""

    def __init__(
        self,
        ctx: WorkflowContext,
        saga_id: int,
        recorder: CompensationRecorder,
        *,
        parallel_compensation: bool = False,
    ) -> None:
        self._ctx = ctx
        self._id = saga_id
        self._recorder = recorder
        self._parallel = parallel_compensation
        self._compensations: list[_Compensation] = []
        self._inflight: set[asyncio.Task[Any]] = set()
        self._state = _State.ACTIVE
        self._compensating: asyncio.Task[None] | None = None
        self._cause: BaseException | None = None
        #: compensations not yet done, in the order they run (set when compensating)
        self._todo: list[_Compensation] = []
        #: those of ``_todo`` whose last run exhausted its policy
        self._failed: list[_Compensation] = []

    @property
    def committed(self) -> bool:
        """True once a pivot step succeeded: nothing will be compensated."""
        return self._state is _State.COMMITTED

    @property
    def failed_compensations(self) -> list[str]:
        """Names of the compensations whose last run exhausted its retry policy."""
        return [_name(c.activity) for c in self._failed]

    @property
    def pending_compensations(self) -> list[str]:
        """Names of the registered compensations, in the order they would run."""
        return [_name(c.activity) for c in self._ordered()]

    def add_compensation(
        self,
        activity: Callable[..., Any] | str,
        *args: Any,
        retry: RetryPolicy | None = None,
        start_to_close: timedelta | None = None,
        task_queue: str | None = None,
    ) -> None:
        """Register a compensation by hand (for work not done through ``step``)."""
        if self._state is _State.ACTIVE:
            self._compensations.append(_Compensation(
                activity, args, retry or DEFAULT_COMPENSATION_RETRY, start_to_close, task_queue
            ))

    def add_compensation_operation(
        self,
        endpoint: str,
        operation: str,
        input: Any = None,
        *,
        schedule_to_close: timedelta | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Register an operation of ``endpoint`` as a compensation: when the saga
        compensates, it runs as ``ctx.execute_operation(endpoint, operation, input)``,
        its start retried under ``retry`` (default: until it succeeds)."""
        if self._state is _State.ACTIVE:
            call = _OperationCall(endpoint, operation, input, schedule_to_close)
            self._compensations.append(_Compensation(
                call, (), retry or DEFAULT_COMPENSATION_RETRY, None, None
            ))

    async def step_operation(
        self,
        endpoint: str,
        operation: str,
        input: Any = None,
        *,
        compensate: str | None = None,
        compensate_input: Any = None,
        schedule_to_close: timedelta | None = None,
        compensation_schedule_to_close: timedelta | None = None,
        result_type: Any = None,
        retry: RetryPolicy | None = None,
        compensation_retry: RetryPolicy | None = None,
        pivot: bool = False,
        register_before: bool = False,
        poll_every: timedelta | None = None,
    ) -> Any:
        """Run one step as an operation (``ctx.execute_operation``) and register the
        operation ``compensate`` of the same endpoint as its compensation, called with
        ``compensate_input`` (default: the step's own ``input``)."""
        if self._compensating is not None:
            raise RuntimeError("this saga is compensating; it takes no more steps")
        if self._state is _State.COMMITTED:
            retry = replace(retry or RetryPolicy(), max_attempts=0, expire_after=None)
        comp = None
        if compensate is not None and self._state is _State.ACTIVE:
            undo = _OperationCall(
                endpoint, compensate, input if compensate_input is None else compensate_input,
                compensation_schedule_to_close,
            )
            comp = _Compensation(undo, (), compensation_retry or DEFAULT_COMPENSATION_RETRY,
                                 None, None)

        def call() -> Awaitable[Any]:
            return self._ctx.execute_operation(
                endpoint, operation, input, schedule_to_close=schedule_to_close,
                result_type=result_type, retry=retry, poll_every=poll_every,
            )

        return await self._track(call, comp, pivot=pivot, register_before=register_before)

    @overload
    async def step(
        self,
        activity: Callable[..., Awaitable[R]],
        *args: Any,
        compensate: Callable[..., Any] | str | None = None,
        compensate_args: tuple[Any, ...] | None = None,
        retry: RetryPolicy | None = None,
        compensation_retry: RetryPolicy | None = None,
        pivot: bool = False,
        register_before: bool = False,
        task_queue: str | None = None,
        start_to_close: timedelta | None = None,
        schedule_to_close: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None,
    ) -> R: ...
    @overload
    async def step(
        self,
        activity: Callable[..., R],
        *args: Any,
        compensate: Callable[..., Any] | str | None = None,
        compensate_args: tuple[Any, ...] | None = None,
        retry: RetryPolicy | None = None,
        compensation_retry: RetryPolicy | None = None,
        pivot: bool = False,
        register_before: bool = False,
        task_queue: str | None = None,
        start_to_close: timedelta | None = None,
        schedule_to_close: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None,
    ) -> R: ...
    @overload
    async def step(
        self,
        activity: str,
        *args: Any,
        compensate: Callable[..., Any] | str | None = None,
        compensate_args: tuple[Any, ...] | None = None,
        retry: RetryPolicy | None = None,
        compensation_retry: RetryPolicy | None = None,
        pivot: bool = False,
        register_before: bool = False,
        task_queue: str | None = None,
        start_to_close: timedelta | None = None,
        schedule_to_close: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None,
    ) -> Any: ...
    async def step(
        self,
        activity: Callable[..., Any] | str,
        *args: Any,
        compensate: Callable[..., Any] | str | None = None,
        compensate_args: tuple[Any, ...] | None = None,
        retry: RetryPolicy | None = None,
        compensation_retry: RetryPolicy | None = None,
        pivot: bool = False,
        register_before: bool = False,
        task_queue: str | None = None,
        start_to_close: timedelta | None = None,
        schedule_to_close: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None,
    ) -> Any:
        """Run one step as an activity and register its compensation.

        ``compensate`` gets ``compensate_args`` (default: the step's own ``args``).
        """
        if self._compensating is not None:
            raise RuntimeError("this saga is compensating; it takes no more steps")
        if self._state is _State.COMMITTED:
            base = retry or RetryPolicy()
            retry = replace(base, max_attempts=0, expire_after=None)
        comp = None
        if compensate is not None and self._state is _State.ACTIVE:
            comp = _Compensation(
                compensate,
                args if compensate_args is None else compensate_args,
                compensation_retry or DEFAULT_COMPENSATION_RETRY,
                start_to_close,
                task_queue,
            )

        def call() -> Awaitable[Any]:
            return self._ctx.execute_activity(
                activity, *args, retry=retry, task_queue=task_queue,
                start_to_close=start_to_close, schedule_to_close=schedule_to_close,
                heartbeat_timeout=heartbeat_timeout,
            )

        return await self._track(call, comp, pivot=pivot, register_before=register_before)

    async def _track(
        self,
        call: Callable[[], Awaitable[Any]],
        comp: _Compensation | None,
        *,
        pivot: bool,
        register_before: bool,
    ) -> Any:
        """Run a step's ``call`` as a task the compensation waits for, registering
        ``comp`` before the call or once it succeeds."""
        if comp is not None and register_before:
            self._compensations.append(comp)

        async def run_step() -> Any:
            result = await call()
            if comp is not None and not register_before and self._state is _State.ACTIVE:
                self._compensations.append(comp)
            if pivot and self._state is _State.ACTIVE:
                self._state = _State.COMMITTED
            return result

        task = asyncio.get_running_loop().create_task(run_step())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return await task

    def _ordered(self) -> list[_Compensation]:
        return list(reversed(self._compensations))

    async def compensate(self, cause: BaseException | None = None) -> None:
        """Run the registered compensations now (once); shielded from cancellation.

        Raises CompensationError if one exhausts its retry policy.
        """
        if self._compensating is None:
            if self._state is not _State.ACTIVE:
                return
            loop = asyncio.get_running_loop()
            self._compensating = loop.create_task(self._run(cause))
        await self._await_compensating()

    async def repair(
        self, cause: BaseException, skip: str | None, retry: RetryPolicy | None
    ) -> None:
        """Go on compensating after an operator's repair (shielded from cancellation).

        A saga whose compensation failed runs its failed compensations again (under
        ``retry`` when given), except ``skip``, which counts as done, then the ones
        after them; a saga not compensated yet compensates now; any other returns.
        Raises CompensationError if a compensation exhausts its policy again.
        """
        if self._compensating is None:
            await self.compensate(cause)
            return
        if not self._failed:
            return
        skipped = next((c for c in self._failed if _name(c.activity) == skip), None)
        if skipped is not None:
            self._todo = [c for c in self._todo if c is not skipped]
        if retry is not None:
            again = {id(c) for c in self._failed}
            self._todo = [replace(c, retry=retry) if id(c) in again else c for c in self._todo]
        self._failed = []
        loop = asyncio.get_running_loop()
        self._compensating = loop.create_task(self._run_todo())
        await self._await_compensating()

    async def _await_compensating(self) -> None:
        task = self._compensating
        assert task is not None
        while True:
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.done() and task.cancelled():
                    raise
                continue  # a cancel request never interrupts compensation
            return

    async def _run(self, cause: BaseException | None) -> None:
        if self._inflight:
            # Steps still running may yet succeed and register their compensation.
            await asyncio.wait(list(self._inflight))
        if self._state is _State.COMMITTED:
            return  # a pivot that was in flight succeeded: nothing to undo
        self._state = _State.COMPENSATED
        self._cause = cause
        comps = self._ordered()
        if not comps:
            return
        self._recorder.record_compensation_started(
            self._id, [_name(c.activity) for c in comps], cause
        )
        self._todo = comps
        await self._run_todo()

    async def _run_todo(self) -> None:
        """Run the compensations left to do, in order (or all at once when parallel)."""
        errors: list[BaseException] = []
        todo = list(self._todo)
        if self._parallel:
            results = await asyncio.gather(
                *(self._run_one(c) for c in todo), return_exceptions=True
            )
            for c, r in zip(todo, results, strict=True):
                if isinstance(r, BaseException):
                    self._recorder.record_compensation_failed(self._id, _name(c.activity), r)
                    errors.append(r)
                    self._failed.append(c)
            done = {id(c) for c, r in zip(todo, results, strict=True)
                    if not isinstance(r, BaseException)}
            self._todo = [c for c in self._todo if id(c) not in done]
        else:
            for c in todo:
                try:
                    await self._run_one(c)
                except Exception as exc:  # noqa: BLE001 - every failure is kept and reported
                    self._recorder.record_compensation_failed(self._id, _name(c.activity), exc)
                    errors.append(exc)
                    self._failed.append(c)
                    break
                self._todo = self._todo[1:]  # ``c`` is always the first left to do
        if errors:
            raise CompensationError(self._cause or RuntimeError("compensation requested"), errors)
        self._recorder.record_compensation_completed(self._id)

    async def _run_one(self, c: _Compensation) -> Any:
        if isinstance(c.activity, _OperationCall):
            op = c.activity
            return await self._ctx.execute_operation(
                op.endpoint, op.operation, op.input, schedule_to_close=op.schedule_to_close,
                retry=c.retry,
            )
        return await self._ctx.execute_activity(
            c.activity, *c.args, retry=c.retry, start_to_close=c.start_to_close,
            task_queue=c.task_queue,
        )


@dataclass(frozen=True, slots=True)
class _Step:
    activity: Callable[..., Any] | str
    compensate: Callable[..., Any] | str | None
    retry: RetryPolicy | None
    compensation_retry: RetryPolicy | None
    pivot: bool
    register_before: bool
    start_to_close: timedelta | None


class Saga:
    """A declarative saga: ``Saga("transfer").step(withdraw, compensate=refund)...``.

    Every step's activity (and compensation) receives the workflow's input. It
    compiles to an ordinary workflow (``.definition``) that uses ``ctx.saga()``,
    returning the last step's result. Register it like any workflow.
    """

    def __init__(
        self,
        name: str,
        *,
        parallel_compensation: bool = False,
        input_type: Any = None,
        _steps: tuple[_Step, ...] = (),
    ) -> None:
        self.name = name
        self.parallel_compensation = parallel_compensation
        self.input_type = input_type
        self._steps = _steps

    def step(
        self,
        activity: Callable[..., Any] | str,
        *,
        compensate: Callable[..., Any] | str | None = None,
        retry: RetryPolicy | None = None,
        compensation_retry: RetryPolicy | None = None,
        pivot: bool = False,
        register_before: bool = False,
        start_to_close: timedelta | None = None,
    ) -> Saga:
        """A new Saga with one more step."""
        s = _Step(activity, compensate, retry, compensation_retry, pivot, register_before,
                  start_to_close)
        return Saga(self.name, parallel_compensation=self.parallel_compensation,
                    input_type=self.input_type, _steps=(*self._steps, s))

    @property
    def definition(self) -> WorkflowDefinition:
        """The workflow this saga compiles to."""
        from orchestrator.workflow import WorkflowDefinition

        steps, parallel = self._steps, self.parallel_compensation

        async def run(ctx: WorkflowContext, value: Any) -> Any:
            scope = ctx.saga(parallel_compensation=parallel)
            result: Any = None
            for s in steps:
                result = await scope.step(
                    s.activity, value, compensate=s.compensate, retry=s.retry,
                    compensation_retry=s.compensation_retry, pivot=s.pivot,
                    register_before=s.register_before, start_to_close=s.start_to_close,
                )
            return result

        return WorkflowDefinition(
            name=self.name, run=run, arg_types=(self.input_type,), return_type=None
        )
