"""An attempt held by an activity-type pause does not time out (engine side)."""

from __future__ import annotations

from datetime import timedelta

from orchestrator import activity, workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.engine.commands import ScheduleActivityTask, StartTimer
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.inputs import ActivityTaskCompleted, FireTimer, StartWorkflow
from orchestrator.workflow import RetryPolicy, WorkflowContext, definition_of

CONV = DataConverter()
T0 = 1_735_689_600_000
MIN = 60_000
STC = "activity/1/start_to_close/1"
HB = "activity/1/heartbeat/1"


@activity.defn
def charge(n: int) -> int:
    return n


@workflow.defn(name="pausable")
async def pausable(ctx: WorkflowContext, mode: str) -> int:
    if mode == "stc":
        return int(await ctx.execute_activity(
            charge, 1, start_to_close=timedelta(minutes=5),
            retry=RetryPolicy(initial=timedelta(minutes=1))))
    return int(await ctx.execute_activity(
        charge, 1, heartbeat_timeout=timedelta(minutes=2),
        retry=RetryPolicy(max_attempts=1)))


class _Pauses:
    def __init__(self) -> None:
        self.paused: set[tuple[str, str]] = set()
        self.unpaused: dict[tuple[str, str], int] = {}

    def is_paused(self, task_queue: str, activity_type: str) -> bool:
        return (task_queue, activity_type) in self.paused

    def unpaused_at(self, task_queue: str, activity_type: str) -> int | None:
        return self.unpaused.get((task_queue, activity_type))


def _started(mode: str) -> tuple[WorkflowExecutor, _Pauses, str]:
    x = WorkflowExecutor(definition_of(pausable))
    pauses = _Pauses()
    x.activities.paused_types = pauses
    d = x.apply([StartWorkflow(workflow_id="w1", run_id="r1", workflow_type="pausable",
                               args=CONV.to_payloads([mode]))], T0)
    [task] = [c for c in d.commands if isinstance(c, ScheduleActivityTask)]
    return x, pauses, task.task_queue


def test_a_paused_attempt_does_not_time_out_and_its_window_restarts_at_unpause() -> None:
    x, pauses, queue = _started("stc")
    pauses.paused.add((queue, "charge"))

    d = x.apply([FireTimer(timer_id=STC)], T0 + 5 * MIN)
    assert d.events == []  # no failure, no retry spent
    assert StartTimer(timer_id=STC, fire_at=T0 + 10 * MIN) in d.commands

    pauses.paused.clear()
    pauses.unpaused[(queue, "charge")] = T0 + 7 * MIN
    d = x.apply([FireTimer(timer_id=STC)], T0 + 10 * MIN)
    assert d.events == []  # 3 of its 5 minutes since the unpause
    assert StartTimer(timer_id=STC, fire_at=T0 + 12 * MIN) in d.commands

    d = x.apply([ActivityTaskCompleted(activity_seq=1, attempt=1, result=CONV.to_payload(7))],
                T0 + 11 * MIN)
    assert isinstance(d.events[0], ev.ActivityCompleted)


def test_after_the_window_since_unpause_the_attempt_times_out_as_usual() -> None:
    x, pauses, queue = _started("stc")
    pauses.unpaused[(queue, "charge")] = T0 + 1 * MIN

    d = x.apply([FireTimer(timer_id=STC)], T0 + 6 * MIN)
    [failed] = d.events
    assert isinstance(failed, ev.ActivityAttemptFailed)
    assert failed.failure.type == "ActivityTimeoutError"


def test_a_paused_attempt_does_not_miss_its_heartbeat() -> None:
    x, pauses, queue = _started("hb")
    pauses.paused.add((queue, "charge"))

    d = x.apply([FireTimer(timer_id=HB)], T0 + 2 * MIN)
    assert d.events == []
    assert StartTimer(timer_id=HB, fire_at=T0 + 4 * MIN) in d.commands


def test_other_types_and_queues_time_out_as_before() -> None:
    x, pauses, queue = _started("stc")
    pauses.paused.add((queue, "another"))
    pauses.paused.add(("another-queue", "charge"))

    d = x.apply([FireTimer(timer_id=STC)], T0 + 5 * MIN)
    [failed] = d.events
    assert isinstance(failed, ev.ActivityAttemptFailed)
