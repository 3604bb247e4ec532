"""In-process workflow testing with time skipping.

:class:`WorkflowEnvironment` drives the same :class:`~orchestrator.engine.executor.
WorkflowExecutor` as the Kafka runtime, with an in-memory history, activities
called in-process, and a clock that jumps to the next due timer whenever nothing
else can run. A saga that sleeps thirty days twelve times finishes in
milliseconds::

    async with WorkflowEnvironment(workflows=[subscription], activities=[charge]) as env:
        handle = await env.start_workflow(subscription, "cust-1")
        await env.sleep(timedelta(days=155))     # simulated
        await handle.signal("cancel")
        assert await handle.result() == 5

Activities run one at a time, in dispatch order, and take no simulated time.
With ``check_replay=True`` (the default) every closed run's history is replayed
against the code, so a non-deterministic workflow fails its test.

:class:`Replayer` replays saved histories (``saga history --json``,
:func:`history_to_json`) against today's code: keep a few from production under
your tests so a change that breaks running executions fails CI.
"""

from __future__ import annotations

import collections
import heapq
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from orchestrator import activity as activity_api
from orchestrator.activity import ActivityDefinition, ActivityInfo
from orchestrator.converter import DataConverter, Payload
from orchestrator.engine import events as ev
from orchestrator.engine.commands import (
    CancelActivityTask,
    CancelTimer,
    ContinueAsNewRun,
    RespondUpdate,
    ScheduleActivityTask,
    StartChildWorkflow,
    StartTimer,
    StopChildWorkflow,
)
from orchestrator.engine.executor import Decision, WorkflowExecutor
from orchestrator.engine.failures import closing_failure, from_failure, to_failure
from orchestrator.engine.guards import GuardMode
from orchestrator.engine.inputs import (
    ActivityTaskCompleted,
    ActivityTaskFailed,
    ActivityTaskHeartbeat,
    CancelWorkflow,
    ChildCompleted,
    ChildFailed,
    ChildStarted,
    FireTimer,
    Input,
    RequestUpdate,
    SendSignal,
    StartWorkflow,
    TerminateWorkflow,
)
from orchestrator.engine.registry import WorkflowRegistry
from orchestrator.engine.replayer import (
    Replayer,
    ReplayResult,
    history_from_json,
    history_to_json,
)
from orchestrator.exceptions import (
    ApplicationError,
    NonDeterminismError,
    NotFoundError,
    PayloadConversionError,
    QueryError,
    UpdateRejectedError,
    WorkflowFailedError,
)
from orchestrator.status import WorkflowStatus
from orchestrator.workflow import WorkflowDefinition, definition_of

if TYPE_CHECKING:
    from orchestrator.engine.saga import Saga

__all__ = [
    "ReplayResult",
    "Replayer",
    "WorkflowEnvironment",
    "WorkflowHandle",
    "history_from_json",
    "history_to_json",
]

DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class _Run:
    executor: WorkflowExecutor
    parent: tuple[str, int] | None = None  # (parent run id, child seq)
    next_run_id: str | None = None


@dataclass(slots=True)
class _Timers:
    heap: list[tuple[int, int, str, str]] = field(default_factory=list)
    due: dict[tuple[str, str], int] = field(default_factory=dict)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def set(self, run_id: str, timer_id: str, fire_at: int) -> None:
        self.due[(run_id, timer_id)] = fire_at
        heapq.heappush(self.heap, (fire_at, next(self.counter), run_id, timer_id))

    def cancel(self, run_id: str, timer_id: str) -> None:
        self.due.pop((run_id, timer_id), None)

    def pop_next(self, until_ms: int | None) -> tuple[int, str, str] | None:
        while self.heap:
            at, _, run_id, timer_id = self.heap[0]
            if self.due.get((run_id, timer_id)) != at:
                heapq.heappop(self.heap)
                continue
            if until_ms is not None and at > until_ms:
                return None
            heapq.heappop(self.heap)
            del self.due[(run_id, timer_id)]
            return at, run_id, timer_id
        return None


R = TypeVar("R")
T = TypeVar("T")

class WorkflowEnvironment:
    """Runs workflows and activities in process on simulated, skipping time."""

    def __init__(
        self,
        *,
        workflows: Sequence[Any] = (),
        activities: Sequence[Callable[..., Any]] = (),
        start_time: datetime = DEFAULT_START,
        build_id: str = "test",
        converter: DataConverter | None = None,
        guard: GuardMode = "raise",
        check_replay: bool = True,
    ) -> None:
        self._defs = WorkflowRegistry(workflows)
        self._acts: dict[str, ActivityDefinition] = {}
        for a in activities:
            ad = activity_api.definition_of(a)
            self._acts[ad.name] = ad
        self._now = round(start_time.timestamp() * 1000)
        self._build_id = build_id
        self._conv = converter or DataConverter()
        self._guard: GuardMode = guard
        self._check_replay = check_replay
        self._runs: dict[str, _Run] = {}
        # workflow id -> first run of its current chain (the latest start's run, and
        # the runs that continued it as new)
        self._chain: dict[str, str] = {}
        self._tasks: collections.deque[tuple[str, ScheduleActivityTask]] = collections.deque()
        self._cancelled: set[tuple[str, int, int]] = set()
        self._timers = _Timers()
        self._replies: dict[str, RespondUpdate] = {}
        self._ids = itertools.count(1)

    async def __aenter__(self) -> WorkflowEnvironment:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    # --- clock --------------------------------------------------------------------------

    def now(self) -> datetime:
        """The simulated current time."""
        return datetime.fromtimestamp(self._now / 1000, UTC)

    async def sleep(self, duration: timedelta) -> None:
        """Advance simulated time by ``duration``, running everything that falls due."""
        until = self._now + round(duration.total_seconds() * 1000)
        await self._run_until(lambda: False, until_ms=until)

    # --- starting -----------------------------------------------------------------------

    def register(self, *workflows: Any) -> None:
        """Register more workflow definitions (for child workflows by name); several
        versions of one type are held side by side, new runs start on the newest."""
        for w in workflows:
            self._defs.add(w)

    @overload
    async def start_workflow(
        self, workflow: Callable[..., Awaitable[R]], *args: Any, id: str | None = None,
        task_queue: str = "default", priority: int = 0, fairness_key: str = "",
    ) -> WorkflowHandle[R]: ...
    @overload
    async def start_workflow(
        self, workflow: type[Any] | WorkflowDefinition | Saga, *args: Any,
        id: str | None = None, task_queue: str = "default", priority: int = 0,
        fairness_key: str = "",
    ) -> WorkflowHandle[Any]: ...
    async def start_workflow(
        self, workflow: Any, *args: Any, id: str | None = None,
        task_queue: str = "default", priority: int = 0, fairness_key: str = "",
    ) -> WorkflowHandle[Any]:
        """Start a run; nothing beyond its first step runs until you wait on something.

        The run starts on the version of ``workflow`` given (a workflow type's name is
        not accepted here: pass the definition whose version you mean). ``priority``
        and ``fairness_key`` are the run's, as ``Client.start`` gives them (recorded in
        its ``WorkflowStarted``; its activities and children that name none take
        them). As on Kafka, starting an id whose latest run is open starts nothing and
        returns a handle to that run; an id whose runs have closed gets a new run."""
        d = definition_of(workflow)
        if self._defs.get_version(d.name, d.version) is None:
            self._defs.add(d)
        wid = id or f"{d.name}-{next(self._ids)}"
        running = self._open_run(wid)
        if running is not None:
            return WorkflowHandle(self, wid, self._chain[wid], running.executor.definition)
        start = StartWorkflow(
            workflow_id=wid, run_id=f"{wid}-run-{next(self._ids)}", workflow_type=d.name,
            task_queue=task_queue, args=self._conv.to_payloads(args), workflow_version=d.version,
            priority=priority, fairness_key=fairness_key,
        )
        self._start(start, None, new_chain=True)
        return WorkflowHandle(self, wid, start.run_id, d)

    @overload
    async def execute_workflow(
        self, workflow: Callable[..., Awaitable[R]], *args: Any, id: str | None = None,
    ) -> R: ...
    @overload
    async def execute_workflow(
        self, workflow: type[Any] | WorkflowDefinition | Saga, *args: Any,
        id: str | None = None,
    ) -> Any: ...
    async def execute_workflow(
        self, workflow: Any, *args: Any, id: str | None = None,
    ) -> Any:
        """Start a run and wait for its result."""
        handle = await self.start_workflow(workflow, *args, id=id)
        return await handle.result()

    def _start(
        self, start: StartWorkflow, parent: tuple[str, int] | None, *, new_chain: bool
    ) -> None:
        """Start a run: a new chain of ``start.workflow_id`` (it becomes the id's
        current one), or the next run of the current chain (continue-as-new)."""
        d = self._defs.get_version(start.workflow_type, start.workflow_version)
        if d is None:
            wanted = start.workflow_type
            if start.workflow_version is not None:
                wanted += f" version {start.workflow_version}"
            raise NotFoundError(
                f"unknown workflow {wanted!r}; registered: {self._defs.describe()}"
            )
        newest = partial(self._defs.newest_version, d.name)  # register() may add one later
        ex = WorkflowExecutor(d, build_id=self._build_id, converter=self._conv,
                              guard=self._guard, newest_version=newest)
        run = _Run(ex, parent)
        self._runs[start.run_id] = run
        if new_chain:
            self._chain[start.workflow_id] = start.run_id
        self._apply(run, [start])

    # --- driving ------------------------------------------------------------------------

    def _apply(self, run: _Run, inputs: Sequence[Input]) -> Decision:
        d = run.executor.apply(inputs, self._now)
        run_id = run.executor.started.run_id
        for cmd in d.commands:
            if isinstance(cmd, ScheduleActivityTask):
                self._tasks.append((run_id, cmd))
            elif isinstance(cmd, CancelActivityTask):
                self._cancelled.add((run_id, cmd.activity_seq, cmd.attempt))
            elif isinstance(cmd, StartTimer):
                self._timers.set(run_id, cmd.timer_id, cmd.fire_at)
            elif isinstance(cmd, CancelTimer):
                self._timers.cancel(run_id, cmd.timer_id)
            elif isinstance(cmd, RespondUpdate):
                self._replies[cmd.update_id] = cmd
            elif isinstance(cmd, StartChildWorkflow):
                self._start_child(run, cmd)
            elif isinstance(cmd, StopChildWorkflow):
                self._stop_child(run_id, cmd)
            elif isinstance(cmd, ContinueAsNewRun):
                run.next_run_id = cmd.start.run_id
                self._start(cmd.start, run.parent, new_chain=False)
        if d.status.is_terminal and any(
            isinstance(e, ev.TERMINAL_EVENTS) for e in d.events
        ):
            self._closed(run, d)
        return d

    def _start_child(self, parent: _Run, cmd: StartChildWorkflow) -> None:
        """Start a child's run, or refuse it as the child's shard does: an id whose
        latest run is open is not started again (the parent gets ChildFailed with type
        ``WorkflowAlreadyStarted``; the running run is not touched)."""
        wid = cmd.start.workflow_id
        running = self._open_run(wid)
        if running is not None:
            failure = ev.Failure(
                message=f"workflow id {wid!r} is running as run "
                f"{running.executor.started.run_id}",
                type="WorkflowAlreadyStarted",
                non_retryable=True,
            )
            self._apply(parent, [ChildFailed(child_seq=cmd.child_seq, failure=failure)])
            return
        parent_run_id = parent.executor.started.run_id
        self._start(cmd.start, (parent_run_id, cmd.child_seq), new_chain=True)
        self._apply(parent, [ChildStarted(child_seq=cmd.child_seq, run_id=cmd.start.run_id)])

    def _stop_child(self, parent_run_id: str, cmd: StopChildWorkflow) -> None:
        """A parent cancels or terminates its child: the child's current run, if the
        parent's start began its chain and it is still open (as on Kafka)."""
        if cmd.workflow_id not in self._chain:
            return
        child = self._latest(cmd.workflow_id)
        if child.parent != (parent_run_id, cmd.child_seq) or child.executor.status.is_terminal:
            return
        stop: Input = (
            TerminateWorkflow(reason=cmd.reason) if cmd.terminate
            else CancelWorkflow(reason=cmd.reason)
        )
        self._apply(child, [stop])

    def _closed(self, run: _Run, d: Decision) -> None:
        if self._check_replay:
            self.replay(run.executor.history)
        if run.parent is None or d.status is WorkflowStatus.CONTINUED_AS_NEW:
            return
        parent_run_id, child_seq = run.parent
        parent = self._runs[parent_run_id]
        last = d.events[-1]
        if isinstance(last, ev.WorkflowCompleted):
            self._apply(parent, [ChildCompleted(child_seq=child_seq, result=last.result)])
        else:
            failure = closing_failure(last)
            self._apply(parent, [ChildFailed(child_seq=child_seq, failure=failure)])

    def replay(self, history: Sequence[ev.Event]) -> None:
        """Replay ``history`` against the registered code; raise NonDeterminismError."""
        started = history[0]
        if not isinstance(started, ev.WorkflowStarted):
            raise NonDeterminismError("history must begin with WorkflowStarted")
        d = self._defs.get_version(started.workflow_type, started.workflow_version)
        if d is None:  # the version the run was pinned to
            raise NotFoundError(
                f"no workflow {started.workflow_type!r} version {started.workflow_version} "
                f"registered; have {self._defs.describe()}"
            )
        newest = partial(self._defs.newest_version, d.name)
        ex = WorkflowExecutor(d, history, build_id=self._build_id, converter=self._conv,
                              guard=self._guard, newest_version=newest)
        extra = ex.apply([], history[-1].time).events
        if extra:
            raise NonDeterminismError(
                "replay produced commands beyond the recorded history",
                seq=extra[0].seq, expected="end of history", actual=type(extra[0]).__name__,
            )

    async def _run_until(self, done: Callable[[], bool], *, until_ms: int | None = None) -> None:
        while not done():
            if self._tasks:
                run_id, task = self._tasks.popleft()
                if (run_id, task.activity_seq, task.attempt) not in self._cancelled:
                    await self._run_activity(run_id, task)
                continue
            nxt = self._timers.pop_next(until_ms)
            if nxt is None:
                if until_ms is not None:
                    self._now = max(self._now, until_ms)
                    return
                raise RuntimeError(
                    "nothing can run: no activity is pending and no timer is set, but the "
                    "awaited workflow has not finished (is it waiting for a signal?)"
                )
            at, run_id, timer_id = nxt
            self._now = max(self._now, at)
            self._apply(self._runs[run_id], [FireTimer(timer_id=timer_id)])

    async def _run_activity(self, run_id: str, task: ScheduleActivityTask) -> None:
        run = self._runs[run_id]
        outcome: Input
        try:
            result = await self._call_activity(run, task)
            outcome = ActivityTaskCompleted(activity_seq=task.activity_seq,
                                            attempt=task.attempt, result=result)
        except Exception as exc:  # noqa: BLE001 - every activity error is reported back
            outcome = ActivityTaskFailed(activity_seq=task.activity_seq, attempt=task.attempt,
                                         failure=to_failure(exc, self._conv))
        except activity_api.CompleteAsync:
            outcome = ActivityTaskFailed(activity_seq=task.activity_seq, attempt=task.attempt,
                                         failure=_NO_ASYNC_COMPLETION)
        self._apply(run, [outcome])

    async def _call_activity(self, run: _Run, task: ScheduleActivityTask) -> Payload:
        adef = self._acts.get(task.activity_type)
        if adef is None:
            # Not retried: in a test, an unregistered activity is a bug, not an outage.
            raise ApplicationError(
                f"unknown activity {task.activity_type!r}; registered: {sorted(self._acts)}",
                type="NotFoundError", non_retryable=True,
            )
        try:
            args = self._conv.from_payloads(task.args, adef.arg_types)
        except PayloadConversionError as exc:
            raise PayloadConversionError(f"activity {adef.name!r}: {exc}") from None
        details = [self._conv.from_payload(p) for p in task.heartbeat_details]
        info = ActivityInfo(
            workflow_id=task.workflow_id, run_id=task.run_id, workflow_type=task.workflow_type,
            activity_type=task.activity_type, activity_seq=task.activity_seq,
            attempt=task.attempt, task_queue=task.task_queue,
            scheduled_time=datetime.fromtimestamp(task.scheduled_at / 1000, UTC),
            attempt_started_time=datetime.fromtimestamp(task.attempt_started_at / 1000, UTC),
            heartbeat_details=tuple(details),
        )

        def on_heartbeat(values: Sequence[Any]) -> None:
            self._apply(run, [ActivityTaskHeartbeat(
                activity_seq=task.activity_seq, attempt=task.attempt,
                details=self._conv.to_payloads(values),
            )])

        with activity_api.running(info, on_heartbeat):
            value = adef.fn(*args)
            if adef.is_async:
                value = await value
        return self._conv.to_payload(value)

    # --- used by handles ---------------------------------------------------------------

    def _latest(self, workflow_id: str) -> _Run:
        """The latest run of the id's current chain."""
        run = self._runs[self._chain[workflow_id]]
        while run.next_run_id is not None:
            run = self._runs[run.next_run_id]
        return run

    def _open_run(self, workflow_id: str) -> _Run | None:
        """The id's latest run if it is open (running or compensating), else None."""
        if workflow_id not in self._chain:
            return None
        run = self._latest(workflow_id)
        return None if run.executor.status.is_terminal else run


_NO_ASYNC_COMPLETION = ev.Failure(
    message="activity.CompleteAsync is not supported by WorkflowEnvironment; test the "
    "activity on its own, or with a fake that returns its result",
    type="CompleteAsyncNotSupported",
    non_retryable=True,
)


class WorkflowHandle(Generic[R]):
    """A started workflow in a :class:`WorkflowEnvironment`."""

    def __init__(
        self, env: WorkflowEnvironment, workflow_id: str, run_id: str, d: WorkflowDefinition
    ) -> None:
        self._env = env
        self.id = workflow_id
        self.first_run_id = run_id
        self._defn = d

    @property
    def status(self) -> WorkflowStatus:
        """Status of the latest run."""
        return self._env._latest(self.id).executor.status

    @property
    def history(self) -> list[ev.Event]:
        """History of the latest run."""
        return self._env._latest(self.id).executor.history

    @property
    def run_histories(self) -> list[list[ev.Event]]:
        """Histories of the handle's runs: its first run and the runs that continued
        it as new, first to latest."""
        env, out = self._env, []
        run: _Run | None = env._runs[self.first_run_id]
        while run is not None:
            out.append(run.executor.history)
            run = env._runs[run.next_run_id] if run.next_run_id else None
        return out

    def _closed(self) -> bool:
        return self.status.is_terminal and self.status is not WorkflowStatus.CONTINUED_AS_NEW

    @overload
    async def result(self) -> R: ...
    @overload
    async def result(self, *, result_type: type[T]) -> T: ...
    async def result(self, *, result_type: Any = None) -> Any:
        """Run until the workflow closes; its result (decoded into ``result_type``,
        else the workflow's return annotation), or WorkflowFailedError."""
        await self._env._run_until(self._closed)
        run = self._env._latest(self.id)
        last = run.executor.history[-1]
        conv = self._env._conv
        if isinstance(last, ev.WorkflowCompleted):
            hint = result_type if result_type is not None else run.executor.definition.return_type
            return conv.from_payload(last.result, hint)
        failure = closing_failure(last)
        status = run.executor.status
        err = WorkflowFailedError(
            f"workflow {self.id!r} ended {status.value}: {failure.type}: {failure.message}",
            status=status.value,
            compensation_errors=[
                from_failure(f, conv) for f in getattr(last, "compensation_failures", [])
            ],
        )
        raise err from from_failure(failure, conv)

    async def signal(self, name: str, *args: Any) -> None:
        """Deliver a signal now (simulated time does not move).

        Raises PayloadConversionError if the handler cannot decode the arguments.
        """
        d = self._env._apply(self._env._latest(self.id),
                             [SendSignal(name=name, args=self._env._conv.to_payloads(args))])
        if d.rejected:
            raise PayloadConversionError(d.rejected[0])

    async def update(self, name: str, *args: Any, result_type: Any = None) -> Any:
        """Send an update and run until it is answered; its result.

        Raises UpdateRejectedError, as the Kafka client does, if the validator (or
        lookup) refused it or the handler raised; ``__cause__`` is that error.
        """
        env = self._env
        update_id = f"update-{next(env._ids)}"
        run = env._latest(self.id)
        env._apply(run, [RequestUpdate(update_id=update_id, name=name,
                                       args=env._conv.to_payloads(args))])
        await env._run_until(lambda: update_id in env._replies or self._closed())
        reply = env._replies.pop(update_id, None)
        if reply is None:
            raise UpdateRejectedError(f"update {name!r}: the run closed before answering")
        if reply.failure is not None:
            f = reply.failure
            error = UpdateRejectedError(f"update on {self.id!r}: {f.type}: {f.message}")
            raise error from from_failure(f, env._conv)
        if reply.result is None:
            return None
        return env._conv.from_payload(reply.result, result_type)

    async def query(self, name: str, *args: Any, result_type: Any = None) -> Any:
        """Ask a query of the latest run (no history is written). As on Kafka, only an
        open run answers: QueryError (cause type ``WorkflowClosed``) for a closed one."""
        env = self._env
        run = env._latest(self.id)
        if self._closed():
            status = run.executor.status.name
            f = ev.Failure(
                message=f"workflow {self.id!r} is {status}; queries are answered by open "
                "runs (`saga history` shows a closed one)",
                type="WorkflowClosed",
            )
            error = QueryError(f"query on {self.id!r}: {f.type}: {f.message}")
            raise error from from_failure(f, env._conv)
        payload = run.executor.query(name, env._conv.to_payloads(args))
        return env._conv.from_payload(payload, result_type)

    async def cancel(self, reason: str = "") -> None:
        """Request cancellation (CancelledError at the workflow's current await)."""
        self._env._apply(self._env._latest(self.id), [CancelWorkflow(reason=reason)])

    async def terminate(self, reason: str = "") -> None:
        """End the run at once, running no more code and no compensation."""
        self._env._apply(self._env._latest(self.id), [TerminateWorkflow(reason=reason)])
