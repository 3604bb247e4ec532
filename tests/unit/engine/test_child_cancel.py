"""Cancelling a child through its handle, and parent-close policies, in the engine:
the decision events and commands, replay of histories with and without them (also
histories recorded before policies existed), and the same through the in-memory
WorkflowEnvironment."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from orchestrator import workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.engine.children import parent_close_stops
from orchestrator.engine.commands import StartChildWorkflow, StopChildWorkflow
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.inputs import (
    CancelWorkflow,
    ChildFailed,
    ChildStarted,
    SendSignal,
    StartWorkflow,
    TerminateWorkflow,
)
from orchestrator.exceptions import ChildWorkflowError, NonDeterminismError
from orchestrator.testing import (
    Replayer,
    WorkflowEnvironment,
    WorkflowHandle,
    history_from_json,
    history_to_json,
)
from orchestrator.workflow import ParentClosePolicy, WorkflowContext, WorkflowStatus

CONV = DataConverter()


@workflow.defn(name="kid.waits")
async def waits(ctx: WorkflowContext) -> str:
    """Waits for signal ``go``; a cancel ends it CANCELLED."""
    await ctx.wait_signal("go")
    return "went"


@workflow.defn(name="kid.stubborn")
async def stubborn(ctx: WorkflowContext) -> str:
    """Catches its cancellation and returns."""
    try:
        await ctx.wait_signal("go")
    except asyncio.CancelledError:
        return "cancelled, but answered"
    return "went"


@workflow.defn(name="kid.sleeps")
async def sleeps(ctx: WorkflowContext) -> str:
    await ctx.sleep(timedelta(days=1))
    return "woke"


@workflow.defn(name="parent.cancels")
async def cancels(ctx: WorkflowContext, kid: str) -> str:
    handle = await ctx.start_child_workflow(kid, id="kid", result_type=str)
    assert handle.workflow_id == "kid" and handle.run_id
    handle.cancel("no longer needed")
    handle.cancel("twice: nothing more")
    try:
        return str(await handle)
    except ChildWorkflowError as exc:
        return f"{type(exc).__name__}: {type(exc.cause).__name__}"


@workflow.defn(name="parent.leaves")
async def leaves(ctx: WorkflowContext, policy: str, fail: bool) -> str:
    """Starts a sleeping child under ``policy``, then returns (or fails) at once."""
    await ctx.start_child_workflow(
        sleeps, id="kid", parent_close_policy=ParentClosePolicy(policy)
    )
    if fail:
        raise RuntimeError("parent gives up")
    return "left"


@workflow.defn(name="parent.awaits")
async def awaits(ctx: WorkflowContext, policy: str) -> str:
    """Waits on a sleeping child (execute_child_workflow) until cancelled."""
    return str(await ctx.execute_child_workflow(
        sleeps, id="kid", parent_close_policy=ParentClosePolicy(policy)
    ))


@workflow.defn(name="parent.forgets")
async def forgets(ctx: WorkflowContext, policy: str) -> str:
    """Starts a sleeping child and returns before hearing of its start."""
    task = asyncio.get_running_loop().create_task(ctx.execute_child_workflow(
        sleeps, id="kid", parent_close_policy=ParentClosePolicy(policy)
    ))
    await asyncio.sleep(0)
    task.cancel()
    return "forgot"


@workflow.defn(name="parent.impatient")
async def impatient(ctx: WorkflowContext) -> str:
    """Waits a minute for its child, then cancels it and waits for its end."""
    handle = await ctx.start_child_workflow(waits, id="kid", result_type=str)
    try:
        return str(await asyncio.wait_for(handle.result(), timeout=60))
    except TimeoutError:
        handle.cancel("took too long")
    try:
        return str(await handle)
    except ChildWorkflowError as exc:
        return f"gave up: {type(exc.cause).__name__}"


ALL = [waits, stubborn, sleeps, cancels, leaves, awaits, forgets, impatient]


def kid_handle(env: WorkflowEnvironment) -> WorkflowHandle[str]:
    return WorkflowHandle(env, "kid", "", workflow.definition_of(sleeps))


def types_of(events: list[ev.Event]) -> list[str]:
    return [type(e).__name__ for e in events]


# --- through the test environment ---------------------------------------------------


async def test_a_parent_cancels_its_child_through_the_handle() -> None:
    env = WorkflowEnvironment(workflows=ALL)
    handle = await env.start_workflow(cancels, "kid.waits", id="p")
    assert await handle.result() == "ChildWorkflowError: CancelledError"
    assert kid_handle(env).status is WorkflowStatus.CANCELLED
    names = types_of(handle.history)
    assert names.count("ChildWorkflowCancelRequested") == 1  # the second cancel: nothing
    assert names.index("ChildWorkflowStarted") < names.index("ChildWorkflowCancelRequested")
    asked = next(e for e in handle.history if isinstance(e, ev.ChildWorkflowCancelRequested))
    assert (asked.child_seq, asked.reason, asked.build_id) == (1, "no longer needed", "test")
    failed = next(e for e in handle.history if isinstance(e, ev.ChildWorkflowFailed))
    assert failed.failure.type == "CancelledError"


async def test_a_timed_out_wait_on_the_handle_leaves_the_childs_outcome_to_await() -> None:
    env = WorkflowEnvironment(workflows=ALL)
    handle = await env.start_workflow(impatient, id="p")
    assert await handle.result() == "gave up: CancelledError"
    assert kid_handle(env).status is WorkflowStatus.CANCELLED
    names = types_of(handle.history)
    assert names.index("ChildWorkflowCancelRequested") < names.index("ChildWorkflowFailed")


async def test_a_child_that_catches_the_cancellation_gives_its_result() -> None:
    env = WorkflowEnvironment(workflows=ALL)
    assert await env.execute_workflow(cancels, "kid.stubborn", id="p") == (
        "cancelled, but answered"
    )
    assert kid_handle(env).status is WorkflowStatus.COMPLETED


@pytest.mark.parametrize(
    ("policy", "fail", "kid_status"),
    [
        ("TERMINATE", False, WorkflowStatus.TERMINATED),
        ("TERMINATE", True, WorkflowStatus.TERMINATED),
        ("REQUEST_CANCEL", False, WorkflowStatus.CANCELLED),
        ("REQUEST_CANCEL", True, WorkflowStatus.CANCELLED),
        ("ABANDON", False, WorkflowStatus.RUNNING),
    ],
)
async def test_the_parent_close_policy_acts_on_the_open_child(
    policy: str, fail: bool, kid_status: WorkflowStatus
) -> None:
    env = WorkflowEnvironment(workflows=ALL)
    handle = await env.start_workflow(leaves, policy, fail, id="p")
    assert handle.status is (WorkflowStatus.FAILED if fail else WorkflowStatus.COMPLETED)
    assert kid_handle(env).status is kid_status
    initiated = next(e for e in handle.history if isinstance(e, ev.ChildWorkflowInitiated))
    assert initiated.parent_close_policy == policy


@pytest.mark.parametrize(
    ("policy", "kid_status"),
    [
        ("TERMINATE", WorkflowStatus.TERMINATED),
        ("REQUEST_CANCEL", WorkflowStatus.CANCELLED),
        ("ABANDON", WorkflowStatus.RUNNING),
    ],
)
async def test_a_cancelled_or_terminated_parent_applies_the_policy(
    policy: str, kid_status: WorkflowStatus
) -> None:
    for stop in ("cancel", "terminate"):
        env = WorkflowEnvironment(workflows=ALL)
        handle = await env.start_workflow(awaits, policy, id="p")
        await (handle.cancel("stop") if stop == "cancel" else handle.terminate("stop"))
        assert handle.status is (
            WorkflowStatus.CANCELLED if stop == "cancel" else WorkflowStatus.TERMINATED
        )
        assert kid_handle(env).status is kid_status, stop


async def test_the_default_policy_abandons_the_child() -> None:
    @workflow.defn(name="parent.default")
    async def default(ctx: WorkflowContext) -> str:
        await ctx.start_child_workflow(sleeps, id="kid")
        return "done"

    env = WorkflowEnvironment(workflows=[*ALL, default])
    assert await env.execute_workflow(default) == "done"
    assert kid_handle(env).status is WorkflowStatus.RUNNING


async def test_a_refused_start_raises_from_start_child_workflow() -> None:
    @workflow.defn(name="parent.refused")
    async def refused(ctx: WorkflowContext) -> str:
        try:
            await ctx.start_child_workflow("no.such.type")
        except Exception as exc:
            return type(exc).__name__
        return "started"

    # the in-memory environment refuses an unknown type by raising, the Kafka engine by
    # a ChildWorkflowFailed with no start before it: drive the executor by hand
    x = WorkflowExecutor(workflow.definition_of(refused), converter=CONV)
    start = StartWorkflow(workflow_id="p", run_id="r", workflow_type="parent.refused",
                          task_queue="q")
    d = x.apply([start], 1000)
    assert [type(c) for c in d.commands] == [StartChildWorkflow]
    failure = ev.Failure(message="id in use", type="WorkflowAlreadyStarted", non_retryable=True)
    d = x.apply([ChildFailed(child_seq=1, failure=failure)], 1001)
    assert x.status is WorkflowStatus.COMPLETED
    completed = d.events[-1]
    assert isinstance(completed, ev.WorkflowCompleted)
    assert CONV.from_payload(completed.result, str) == "ChildWorkflowError"


# --- the executor's decisions and replay ------------------------------------------------


def _start(workflow_type: str, *args: object) -> StartWorkflow:
    return StartWorkflow(workflow_id="p", run_id="run-p", workflow_type=workflow_type,
                         task_queue="q", args=CONV.to_payloads(args))


def test_the_cancel_is_one_decision_with_its_command_and_replays() -> None:
    x = WorkflowExecutor(workflow.definition_of(cancels), converter=CONV, build_id="b1")
    x.apply([_start("parent.cancels", "kid.waits")], 1000)
    d = x.apply([ChildStarted(child_seq=1, run_id="run-kid")], 1001)
    assert types_of(d.events) == ["ChildWorkflowStarted", "ChildWorkflowCancelRequested"]
    assert d.commands == [StopChildWorkflow(child_seq=1, workflow_id="kid",
                                            reason="no longer needed")]
    cancelled = ev.Failure(message="cancelled", type="CancelledError")
    d = x.apply([ChildFailed(child_seq=1, failure=cancelled)], 1002)
    assert x.status is WorkflowStatus.COMPLETED
    history = x.history

    # the same code replays it and decides nothing more
    again = WorkflowExecutor(workflow.definition_of(cancels), history, converter=CONV)
    assert again.status is WorkflowStatus.COMPLETED
    assert again.apply([], 2000).events == []

    # a history that lacks the cancel does not match code that cancels
    without = [e for e in history if not isinstance(e, ev.ChildWorkflowCancelRequested)]
    with pytest.raises(NonDeterminismError):
        WorkflowExecutor(workflow.definition_of(cancels), without, converter=CONV)


def test_closing_sends_the_policy_in_the_closing_decision_only_when_new() -> None:
    x = WorkflowExecutor(workflow.definition_of(leaves), converter=CONV)
    x.apply([_start("parent.leaves", "TERMINATE", False)], 1000)
    d = x.apply([ChildStarted(child_seq=1, run_id="run-kid")], 1001)
    assert isinstance(d.events[-1], ev.WorkflowCompleted)
    stop = next(c for c in d.commands if isinstance(c, StopChildWorkflow))
    assert (stop.workflow_id, stop.terminate) == ("kid", True)
    assert "closed COMPLETED (parent-close policy TERMINATE)" in stop.reason
    # a replay of the closed run re-issues nothing
    replayed = WorkflowExecutor(workflow.definition_of(leaves), x.history, converter=CONV)
    assert replayed.apply([], 3000).commands == []


def test_a_terminate_input_stops_children_too() -> None:
    x = WorkflowExecutor(workflow.definition_of(awaits), converter=CONV)
    x.apply([_start("parent.awaits", "REQUEST_CANCEL")], 1000)
    d = x.apply([TerminateWorkflow(reason="operator")], 1001)
    assert [(c.workflow_id, c.terminate) for c in d.commands
            if isinstance(c, StopChildWorkflow)] == [("kid", False)]
    # a cancel request closes it cancelled, with the policy's command then
    y = WorkflowExecutor(workflow.definition_of(awaits), converter=CONV)
    y.apply([_start("parent.awaits", "TERMINATE")], 1000)
    d = y.apply([CancelWorkflow(reason="user")], 1001)
    assert y.status is WorkflowStatus.CANCELLED
    assert [(c.workflow_id, c.terminate) for c in d.commands
            if isinstance(c, StopChildWorkflow)] == [("kid", True)]


def test_a_history_recorded_before_policies_replays_and_abandons() -> None:
    """A ChildWorkflowInitiated written before v5 has no policy: it decodes as ABANDON
    (tests/unit/serde/test_serde_children_v5.py), replays against today's code, and
    the run's close stops nothing, as then."""
    x = WorkflowExecutor(workflow.definition_of(awaits), converter=CONV)
    x.apply([_start("parent.awaits", "TERMINATE")], 1000)
    old = [
        ev.ChildWorkflowInitiated(**{**_fields(e), "parent_close_policy": "ABANDON"})
        if isinstance(e, ev.ChildWorkflowInitiated) else e
        for e in x.history
    ]
    replayed = WorkflowExecutor(workflow.definition_of(awaits), old, converter=CONV)
    d = replayed.apply([SendSignal(name="ignored", args=[]), CancelWorkflow(reason="x")], 2000)
    assert replayed.status is WorkflowStatus.CANCELLED
    assert not [c for c in d.commands if isinstance(c, StopChildWorkflow)]


def _fields(e: ev.Event) -> dict[str, object]:
    return {name: getattr(e, name) for name in e.__dataclass_fields__}


def test_parent_close_stops_reads_the_open_children_off_history() -> None:
    def initiated(seq: int, policy: str) -> ev.ChildWorkflowInitiated:
        return ev.ChildWorkflowInitiated(seq=seq + 1, time=1, child_seq=seq,
                                         workflow_type="t", workflow_id=f"k{seq}",
                                         task_queue="q", parent_close_policy=policy)

    history: list[ev.Event] = [
        ev.WorkflowStarted(seq=1, time=1, workflow_type="p", workflow_id="p", run_id="r",
                           task_queue="q"),
        initiated(1, "TERMINATE"),
        initiated(2, "REQUEST_CANCEL"),
        initiated(3, "ABANDON"),
        initiated(4, "TERMINATE"),
        initiated(5, "REQUEST_CANCEL"),
        ev.ChildWorkflowCompleted(seq=7, time=2, child_seq=4, result=CONV.to_payload(1)),
        ev.ChildWorkflowCancelRequested(seq=8, time=2, child_seq=5),
    ]
    stops = parent_close_stops(history, "FAILED")
    assert [(s.child_seq, s.workflow_id, s.terminate) for s in stops] == [
        (1, "k1", True), (2, "k2", False),
    ]
    assert stops[0].reason == "parent p run r closed FAILED (parent-close policy TERMINATE)"
    assert parent_close_stops([], "FAILED") == []


async def test_the_replayer_and_the_json_export_take_the_new_event_and_old_exports() -> None:
    env = WorkflowEnvironment(workflows=ALL)
    handle = await env.start_workflow(cancels, "kid.waits", id="p")
    await handle.result()
    history = handle.history
    text = history_to_json(history)
    assert history_from_json(text) == history
    result = Replayer(workflows=ALL).replay(history_from_json(text))
    assert (result.events, result.status) == (len(history), WorkflowStatus.COMPLETED)
    # an export written before policies has no parent_close_policy: read as ABANDON
    old = json.loads(text)
    for item in old:
        if item["type"] == "ChildWorkflowInitiated":
            assert item.pop("parent_close_policy") == "ABANDON"
    [initiated] = [e for e in history_from_json(json.dumps(old))
                   if isinstance(e, ev.ChildWorkflowInitiated)]
    assert initiated.parent_close_policy == "ABANDON"
