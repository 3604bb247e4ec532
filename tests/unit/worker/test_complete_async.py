"""``raise activity.CompleteAsync()``: the runner sends no outcome; where nobody could
complete the attempt later (a local activity, WorkflowEnvironment), it fails for good."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator import activity, workflow
from orchestrator.converter import DataConverter
from orchestrator.exceptions import WorkflowFailedError
from orchestrator.serde.records import ActivityHeartbeat, ActivityTask, ActivityTaskFailed
from orchestrator.task_token import TaskToken
from orchestrator.testing import WorkflowEnvironment
from orchestrator.worker.activity_runner import AttemptRunner, activity_definitions
from orchestrator.worker.shard.local_activities import LocalActivities

CONV = DataConverter()
handed_out: list[str] = []


@activity.defn(name="later")
async def later() -> str:
    handed_out.append(activity.info().task_token)
    activity.heartbeat("asked the mainframe")  # sent before the attempt ends
    raise activity.CompleteAsync


@activity.defn(name="later_sync")
def later_sync() -> str:
    handed_out.append(activity.info().task_token)
    try:
        raise activity.CompleteAsync
    except Exception:
        return "swallowed"


def task(activity_type: str) -> ActivityTask:
    return ActivityTask(
        workflow_id="wf", run_id="r", activity_seq=3, activity_type=activity_type,
        attempt=2, task_queue="q", scheduled_time=0,
    )


@pytest.fixture
def sent() -> list[ActivityHeartbeat]:
    return []


@pytest.fixture
def runner(sent: list[ActivityHeartbeat]) -> Iterator[AttemptRunner]:
    handed_out.clear()
    pool = ThreadPoolExecutor(2)
    yield AttemptRunner(activity_definitions([later, later_sync]), CONV, pool, sent.append)
    pool.shutdown(wait=True)


@pytest.mark.parametrize("name", ["later", "later_sync"])
async def test_a_pending_attempt_has_no_outcome_and_hands_out_its_token(
    runner: AttemptRunner, sent: list[ActivityHeartbeat], name: str
) -> None:
    assert await runner.run(task(name)) is None
    assert [TaskToken.decode(t) for t in handed_out] == [TaskToken("wf", "r", 3, 2)]
    if name == "later":
        [beat] = sent
        assert [CONV.from_payload(p) for p in beat.details] == ["asked the mainframe"]


def test_a_local_activity_cannot_complete_later() -> None:
    local = LocalActivities(activity_definitions([later]), CONV)
    try:
        [(outcome, _)] = local.run([task("later")])
    finally:
        local.close()
    assert isinstance(outcome, ActivityTaskFailed)
    assert outcome.failure.non_retryable
    assert outcome.failure.type == "CompleteAsyncNotSupported"


@workflow.defn(name="unit.asks_later")
async def asks_later(ctx: workflow.WorkflowContext) -> str:
    result: str = await ctx.execute_activity(later)
    return result


async def test_workflow_environment_fails_a_pending_activity_clearly() -> None:
    env = WorkflowEnvironment(workflows=[asks_later], activities=[later])
    handle = await env.start_workflow(asks_later)
    with pytest.raises(WorkflowFailedError, match="not supported by WorkflowEnvironment"):
        await handle.result()
