"""Repair of a failed compensation in the executor alone: retry, skip, refusals, replay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator import activity, workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import commands as cmd
from orchestrator.engine import events as ev
from orchestrator.engine import inputs
from orchestrator.engine.executor import Decision, WorkflowExecutor
from orchestrator.exceptions import NonDeterminismError
from orchestrator.retry import RetryPolicy
from orchestrator.status import WorkflowStatus
from orchestrator.workflow import definition_of

CONV = DataConverter()
ONCE = RetryPolicy(max_attempts=1)
START = inputs.StartWorkflow(workflow_id="w", run_id="r", workflow_type="unit.repair",
                             args=[CONV.to_payload("x")])
BOOM = ev.Failure(message="down", type="Down")


@activity.defn(name="step")
async def step(name: str) -> str:
    return name


@activity.defn(name="undo_a")
async def undo_a(name: str) -> str:
    return name


@activity.defn(name="undo_b")
async def undo_b(name: str) -> str:
    return name


@activity.defn(name="undo_c")
async def undo_c(name: str) -> str:
    return name


@workflow.defn(name="unit.repair")
async def three_steps(ctx: workflow.WorkflowContext, name: str) -> str:
    saga = ctx.saga()
    for undo in (undo_a, undo_b, undo_c):
        await saga.step(step, name, compensate=undo, compensation_retry=ONCE)
    await ctx.execute_activity(step, "last", retry=ONCE)
    return name


DEFN = definition_of(three_steps)


def tasks(decision: Decision) -> list[cmd.ScheduleActivityTask]:
    return [c for c in decision.commands if isinstance(c, cmd.ScheduleActivityTask)]


def finish(executor: WorkflowExecutor, task: cmd.ScheduleActivityTask, now: int,
           *, fail: bool = False) -> list[cmd.ScheduleActivityTask]:
    outcome: inputs.Input
    if fail:
        outcome = inputs.ActivityTaskFailed(activity_seq=task.activity_seq, attempt=task.attempt,
                                            failure=BOOM)
    else:
        outcome = inputs.ActivityTaskCompleted(activity_seq=task.activity_seq,
                                               attempt=task.attempt, result=CONV.to_payload("ok"))
    return tasks(executor.apply([outcome], now))


def failed_in_undo_b() -> WorkflowExecutor:
    """Three steps done, the fourth fails; undo_c succeeds, undo_b exhausts its policy."""
    executor = WorkflowExecutor(DEFN)
    [task] = tasks(executor.apply([START], 1))
    for now in (2, 3, 4):
        [task] = finish(executor, task, now)
    [undo] = finish(executor, task, 5, fail=True)
    assert undo.activity_type == "undo_c"
    [undo] = finish(executor, undo, 6)
    assert undo.activity_type == "undo_b"
    assert finish(executor, undo, 7, fail=True) == []
    assert executor.status is WorkflowStatus.COMPENSATION_FAILED
    assert executor.failed_compensations() == ["undo_b"]
    return executor


def test_retry_runs_the_failed_compensation_again_then_the_rest() -> None:
    executor = failed_in_undo_b()
    policy = RetryPolicy(initial=timedelta(seconds=2), max_attempts=5).to_record()
    decision = executor.apply([inputs.RepairCompensation(retry_policy=policy, reason="bank up",
                                                         operator="ops")], 8)
    assert executor.status.value == "COMPENSATING"
    [repaired] = [e for e in decision.events if isinstance(e, ev.CompensationRepaired)]
    assert (repaired.action, repaired.reason, repaired.operator) == ("retry", "bank up", "ops")
    [again] = tasks(decision)
    assert again.activity_type == "undo_b"
    scheduled = [e for e in decision.events if isinstance(e, ev.ActivityScheduled)]
    assert scheduled[0].retry_policy == policy, "the new policy governs the retried one"
    commands = finish_commands(executor, again, 9)
    [retry_timer] = [c for c in commands if isinstance(c, cmd.StartTimer)]
    assert retry_timer.fire_at == 9 + 2000, "its second attempt waits the new policy's delay"
    [second] = tasks(executor.apply([inputs.FireTimer(timer_id=retry_timer.timer_id)], 2009))
    [undo_a_task] = finish(executor, second, 2010)
    assert undo_a_task.activity_type == "undo_a"
    assert finish(executor, undo_a_task, 2011) == []
    assert executor.status is WorkflowStatus.FAILED, "compensated: it ends as a compensated run"
    kinds = [type(e).__name__ for e in executor.history]
    assert kinds[-2:] == ["CompensationCompleted", "WorkflowFailed"]
    assert_replays(executor)


def finish_commands(executor: WorkflowExecutor, task: cmd.ScheduleActivityTask,
                    now: int) -> list[cmd.Command]:
    failed = inputs.ActivityTaskFailed(activity_seq=task.activity_seq, attempt=task.attempt,
                                       failure=BOOM)
    return executor.apply([failed], now).commands


def test_skip_counts_the_failed_compensation_done_and_goes_on() -> None:
    executor = failed_in_undo_b()
    decision = executor.apply([inputs.RepairCompensation(skip="undo_b", reason="refunded by hand",
                                                         operator="ana")], 8)
    [repaired] = [e for e in decision.events if isinstance(e, ev.CompensationRepaired)]
    assert (repaired.action, repaired.activity_type) == ("skip", "undo_b")
    [next_undo] = tasks(decision)
    assert next_undo.activity_type == "undo_a"
    assert finish(executor, next_undo, 9) == []
    assert executor.status is WorkflowStatus.FAILED
    assert [r.reason for r in executor.repairs] == ["refunded by hand"]
    assert_replays(executor)


def test_a_retry_that_fails_again_ends_compensation_failed_and_can_be_repaired_again() -> None:
    executor = failed_in_undo_b()
    [again] = tasks(executor.apply([inputs.RepairCompensation()], 8))
    assert finish(executor, again, 9, fail=True) == []
    assert executor.status is WorkflowStatus.COMPENSATION_FAILED
    closing = [e for e in executor.history if isinstance(e, ev.WorkflowCompensationFailed)]
    assert len(closing) == 2
    replayed = assert_replays(executor)
    [last] = tasks(replayed.apply([inputs.RepairCompensation(skip="undo_b")], 10))
    assert last.activity_type == "undo_a"


def test_refused_repairs_leave_no_trace() -> None:
    executor = failed_in_undo_b()
    decision = executor.apply([inputs.RepairCompensation(skip="undo_a")], 8)
    assert decision.events == [] and "not a failed compensation" in decision.rejected[0]
    running = WorkflowExecutor(DEFN)
    running.apply([START], 1)
    decision = running.apply([inputs.RepairCompensation()], 2)
    assert decision.events == [] and "COMPENSATION_FAILED" in decision.rejected[0]


def test_history_repairing_a_run_that_did_not_fail_compensation_is_non_deterministic() -> None:
    executor = WorkflowExecutor(DEFN)
    executor.apply([START], 1)
    bogus = ev.CompensationRepaired(seq=len(executor.history) + 1, time=2, action="retry")
    with pytest.raises(NonDeterminismError, match="did not end COMPENSATION_FAILED"):
        WorkflowExecutor(DEFN, [*executor.history, bogus])


def assert_replays(executor: WorkflowExecutor) -> WorkflowExecutor:
    replayed = WorkflowExecutor(DEFN, executor.history)
    assert replayed.status is executor.status
    assert replayed.apply([], executor.now_ms).events == [], "nothing beyond history"
    assert replayed.repairs == executor.repairs
    return replayed
