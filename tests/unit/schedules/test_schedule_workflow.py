"""The ``saga.schedule`` workflow in the in-process environment (simulated time): each
overlap policy, pause and unpause, trigger, update, backfill, jitter, delete and
continue-as-new. The stop activity is replaced by one that records its calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator import activity, workflow
from orchestrator.exceptions import UpdateRejectedError
from orchestrator.schedules import (
    OverlapPolicy,
    ScheduleAction,
    ScheduleChange,
    ScheduleDescription,
    SchedulePolicy,
    ScheduleSpec,
)
from orchestrator.schedules.calendar import jitter_ms, to_ms, utc
from orchestrator.schedules.workflow import (
    CONTINUE_AFTER,
    STOP_ACTIVITY,
    ScheduleState,
    ScheduleWorkflow,
)
from orchestrator.testing import WorkflowEnvironment, WorkflowHandle

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STOPS: list[tuple[str, str]] = []


@activity.defn(name=STOP_ACTIVITY)
def record_stop(workflow_id: str, mode: str, reason: str) -> None:
    STOPS.append((workflow_id, mode))


@workflow.defn(name="job")
async def job(ctx: workflow.WorkflowContext, seconds: float) -> str:
    await ctx.sleep(seconds)
    return ctx.info.workflow_id


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    STOPS.clear()
    async with WorkflowEnvironment(
        workflows=[ScheduleWorkflow, job], activities=[record_stop], start_time=T0
    ) as environment:
        yield environment


async def schedule(
    env: WorkflowEnvironment,
    overlap: OverlapPolicy = OverlapPolicy.SKIP,
    *,
    seconds: float = 2.5,
    spec: ScheduleSpec | None = None,
    paused: bool = False,
) -> WorkflowHandle:
    state = ScheduleState(
        "s",
        spec or ScheduleSpec(interval_s=1),
        ScheduleAction("job", "q", [seconds]),
        SchedulePolicy(overlap),
        paused=paused,
    )
    return await env.start_workflow(ScheduleWorkflow, state, id="schedule:s")


async def describe(handle: WorkflowHandle) -> ScheduleDescription:
    found: ScheduleDescription = await handle.query("describe", result_type=ScheduleDescription)
    return found


async def test_skip_counts_every_firing_that_overlaps(env: WorkflowEnvironment) -> None:
    handle = await schedule(env)
    await env.sleep(timedelta(seconds=10.5))
    d = await describe(handle)
    # 2.5 s runs at 1, 4, 7 and 10; the seconds in between are skipped
    assert (d.started, d.skipped, d.missed) == (4, 6, 0)
    assert d.running == ["s-20260101T000010Z"]
    assert d.handled_until == T0 + timedelta(seconds=10)
    started = [a.nominal_time.second for a in d.recent if a.started_at is not None]
    assert started == [1, 4, 7, 10]
    assert [a.outcome for a in d.recent].count("skipped") == 6


async def test_buffer_one_keeps_one_waiting_and_skips_the_rest(env: WorkflowEnvironment) -> None:
    handle = await schedule(env, OverlapPolicy.BUFFER_ONE)
    await env.sleep(timedelta(seconds=10.5))
    d = await describe(handle)
    assert d.started + d.skipped + len(d.buffered) == 10
    assert d.skipped > 0 and len(d.buffered) <= 1 and len(d.running) == 1
    late = [a for a in d.recent if a.started_at is not None and a.started_at > a.nominal_time]
    assert late  # a buffered firing starts when its predecessor closes, after its time


async def test_buffer_all_starts_every_firing_in_turn(env: WorkflowEnvironment) -> None:
    handle = await schedule(env, OverlapPolicy.BUFFER_ALL)
    await env.sleep(timedelta(seconds=10.5))
    d = await describe(handle)
    assert d.skipped == 0 and len(d.running) == 1
    assert d.started + len(d.buffered) == 10
    assert d.buffered == [T0 + timedelta(seconds=k) for k in range(d.started + 1, 11)]


async def test_allow_all_starts_every_firing_at_once(env: WorkflowEnvironment) -> None:
    handle = await schedule(env, OverlapPolicy.ALLOW_ALL)
    await env.sleep(timedelta(seconds=10.4))
    d = await describe(handle)
    assert (d.started, d.skipped) == (10, 0)
    assert len(d.running) == 3  # 2.5 s runs started at 8, 9 and 10


async def test_cancel_other_asks_the_running_firing_to_cancel_and_waits(
    env: WorkflowEnvironment,
) -> None:
    handle = await schedule(env, OverlapPolicy.CANCEL_OTHER)
    await env.sleep(timedelta(seconds=2.5))
    d = await describe(handle)
    assert STOPS == [("s-20260101T000001Z", "cancel")]  # once, though two firings came
    assert d.buffered == [T0 + timedelta(seconds=2)] and d.skipped == 0
    await env.sleep(timedelta(seconds=1.5))  # the (recorded, not real) cancel: it completes
    d = await describe(handle)
    assert d.running == ["s-20260101T000002Z"]


async def test_terminate_other_stops_the_running_firing_and_starts_at_once(
    env: WorkflowEnvironment,
) -> None:
    handle = await schedule(env, OverlapPolicy.TERMINATE_OTHER)
    await env.sleep(timedelta(seconds=3.5))
    d = await describe(handle)
    assert d.started == 3 and d.skipped == 0
    assert STOPS == [("s-20260101T000001Z", "terminate"), ("s-20260101T000002Z", "terminate")]


async def test_pause_drops_the_firings_it_covers_and_trigger_still_fires(
    env: WorkflowEnvironment,
) -> None:
    handle = await schedule(env, OverlapPolicy.ALLOW_ALL, seconds=0.1)
    await env.sleep(timedelta(seconds=3.5))
    await handle.update("pause", "maintenance")
    await env.sleep(timedelta(seconds=5))
    d = await describe(handle)
    assert (d.started, d.paused, d.note, d.next_times) == (3, True, "maintenance", [])
    fired = await handle.update("trigger", None, result_type=str)
    assert fired == "s-20260101T000008Z-trigger"
    await env.sleep(timedelta(seconds=0.5))
    await handle.update("unpause", "")
    await env.sleep(timedelta(seconds=2))
    d = await describe(handle)
    assert d.started == 6 and not d.paused and d.missed == 0  # 3, the trigger, 10 and 11
    assert [a.nominal_time.second for a in d.recent] == [1, 2, 3, 8, 10, 11]


async def test_update_changes_the_spec_and_refuses_a_bad_one(env: WorkflowEnvironment) -> None:
    handle = await schedule(env, seconds=0.1)
    await env.sleep(timedelta(seconds=1.5))
    change = ScheduleChange(spec=ScheduleSpec(interval_s=5), note="slower")
    d = await handle.update("update", change, result_type=ScheduleDescription)
    assert d.note == "slower"
    assert d.next_times == [T0 + timedelta(seconds=5 * k) for k in range(1, 6)]
    with pytest.raises(UpdateRejectedError, match="unknown time zone"):
        await handle.update("update", ScheduleChange(spec=ScheduleSpec(cron=["0 * * * *"],
                                                                       time_zone="Nowhere/X")))
    with pytest.raises(UpdateRejectedError, match="needs a workflow type"):
        await handle.update("update", ScheduleChange(action=ScheduleAction("", "q")))
    await env.sleep(timedelta(seconds=9))
    assert (await describe(handle)).started == 3  # at 1, then 5 and 10


async def test_a_new_spec_fires_from_the_update_on(env: WorkflowEnvironment) -> None:
    handle = await schedule(env, seconds=0.1, spec=ScheduleSpec(interval_s=3600))
    await env.sleep(timedelta(minutes=30))
    await handle.update("update", ScheduleChange(spec=ScheduleSpec(interval_s=60)))
    await env.sleep(timedelta(seconds=90))
    d = await describe(handle)
    # the minutes 1-30 of the new spec were before the update: not run, not missed
    assert (d.started, d.skipped, d.missed) == (1, 0, 0)
    assert d.recent[0].nominal_time == T0 + timedelta(minutes=31)


async def test_backfill_queues_every_nominal_time_of_its_range(env: WorkflowEnvironment) -> None:
    spec = ScheduleSpec(cron=["*/10 * * * *"])
    handle = await schedule(env, OverlapPolicy.ALLOW_ALL, seconds=1, spec=spec, paused=True)
    ids = await handle.update("backfill", datetime(2025, 12, 31, 22, tzinfo=UTC),
                              datetime(2025, 12, 31, 23, tzinfo=UTC), None, result_type=list[str])
    assert ids == [f"s-20251231T22{m:02d}00Z" for m in range(0, 60, 10)]
    await env.sleep(timedelta(seconds=0.5))
    assert sorted((await describe(handle)).running) == ids
    with pytest.raises(UpdateRejectedError, match="end must be after start"):
        await handle.update("backfill", T0, T0, None)
    with pytest.raises(UpdateRejectedError, match="at most 1000"):
        await handle.update("backfill", T0 - timedelta(days=30), T0, None)


async def test_a_backfill_far_over_the_limit_is_refused(env: WorkflowEnvironment) -> None:
    handle = await schedule(env, spec=ScheduleSpec(cron=["* * * * *"]), paused=True)
    with pytest.raises(UpdateRejectedError, match="more than 1000 firings in range"):
        await handle.update("backfill", T0 - timedelta(days=365), T0, None)
    d = await describe(handle)
    assert (d.started, d.running, d.buffered) == (0, [], [])  # nothing queued


async def test_a_firing_buffered_before_a_pause_waits_for_the_unpause(
    env: WorkflowEnvironment,
) -> None:
    handle = await schedule(env, OverlapPolicy.BUFFER_ONE, seconds=2.5)
    await env.sleep(timedelta(seconds=2.5))  # 1 runs until 3.5, 2 is buffered
    await handle.update("pause", "maintenance")
    await env.sleep(timedelta(seconds=3))  # 1 has closed
    d = await describe(handle)
    assert (d.started, d.running, d.buffered) == (1, [], [T0 + timedelta(seconds=2)])
    fired = await handle.update("trigger", None, result_type=str)  # a trigger still runs
    await env.sleep(timedelta(seconds=0.1))
    d = await describe(handle)
    assert (d.started, d.running, d.buffered) == (2, [fired], [T0 + timedelta(seconds=2)])
    await env.sleep(timedelta(seconds=3))
    await handle.update("unpause", "")
    await env.sleep(timedelta(seconds=0.1))
    d = await describe(handle)
    assert d.running == ["s-20260101T000002Z"] and d.buffered == []
    assert d.started == 3


async def test_backfill_under_skip_starts_only_the_first(env: WorkflowEnvironment) -> None:
    handle = await schedule(env, seconds=3600, spec=ScheduleSpec(interval_s=600), paused=True)
    await handle.update("backfill", T0 - timedelta(hours=1), T0, None)
    d = await describe(handle)
    assert (d.started, d.skipped) == (1, 5)


async def test_jitter_delays_each_firing_by_its_own_fixed_amount(
    env: WorkflowEnvironment,
) -> None:
    handle = await schedule(env, OverlapPolicy.ALLOW_ALL, seconds=0.1,
                            spec=ScheduleSpec(interval_s=60, jitter_s=30))
    await env.sleep(timedelta(minutes=3, seconds=31))
    d = await describe(handle)
    assert d.started == 3
    for line in d.recent:
        delay = jitter_ms("s", to_ms(line.nominal_time), 30)
        assert line.started_at == utc(to_ms(line.nominal_time) + delay)


async def test_delete_ends_the_schedule_and_lets_the_running_firing_finish(
    env: WorkflowEnvironment,
) -> None:
    handle = await schedule(env, seconds=5)
    await env.sleep(timedelta(seconds=1.5))
    await handle.update("delete")
    assert await handle.result() is None
    await env.sleep(timedelta(seconds=10))
    assert [run[-1].__class__.__name__ for run in handle.run_histories] == ["WorkflowCompleted"]


async def test_the_run_continues_as_new_when_idle_and_keeps_its_counters(
    env: WorkflowEnvironment,
) -> None:
    handle = await schedule(env, seconds=0.1)
    await env.sleep(timedelta(seconds=CONTINUE_AFTER + 20.5))
    runs = handle.run_histories
    assert len(runs) >= 2  # a firing wakes the run twice: at its time and at its close
    assert max(len(run) for run in runs) < 6 * CONTINUE_AFTER  # history stays bounded
    d = await describe(handle)
    assert (d.started, d.skipped, d.missed) == (CONTINUE_AFTER + 20, 0, 0)
