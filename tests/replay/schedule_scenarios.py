"""Scenarios of the built-in ``saga.schedule`` workflow, for saved histories.

In memory (:func:`in_memory_histories`, files ``schedule_<stem>.json``) and on real
Kafka (:func:`kafka_histories`, ``kafka_schedule_<stem>.json``), recorded by
``python -m tests.replay.record_schedule_histories``. Running schedules are
executions in production: every saved history must replay against the current
schedule workflow (``test_replay_schedules.py``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator import activity, workflow
from orchestrator.engine import events as ev
from orchestrator.schedules import (
    OverlapPolicy,
    ScheduleAction,
    ScheduleChange,
    SchedulePolicy,
    ScheduleSpec,
)
from orchestrator.schedules.workflow import STOP_ACTIVITY, ScheduleState, ScheduleWorkflow
from orchestrator.testing import WorkflowEnvironment

START = datetime(2026, 3, 7, 12, tzinfo=UTC)


@workflow.defn(name="replay.job")
async def job(ctx: workflow.WorkflowContext, seconds: float) -> str:
    """What the schedules start: a durable sleep."""
    await ctx.sleep(seconds)
    return ctx.info.workflow_id


@activity.defn(name=STOP_ACTIVITY)
def stop_run(workflow_id: str, mode: str, reason: str) -> None:
    """The engine worker's stop activity, as a no-op (the recording needs its outcome)."""


#: what a replayer needs for every schedule history
WORKFLOWS: list[Any] = [ScheduleWorkflow, job]


def _state(stem: str, spec: ScheduleSpec, overlap: OverlapPolicy, seconds: float) -> ScheduleState:
    return ScheduleState(stem, spec, ScheduleAction("replay.job", "q", [seconds]),
                         SchedulePolicy(overlap))


async def in_memory_histories() -> dict[str, list[ev.Event]]:
    """Each scenario's schedule history (the first run), by file stem."""
    out: dict[str, list[ev.Event]] = {}
    env = WorkflowEnvironment(workflows=WORKFLOWS, activities=[stop_run], start_time=START)

    async def run(stem: str, state: ScheduleState, seconds: float) -> Any:
        handle = await env.start_workflow(ScheduleWorkflow, state, id=f"schedule:{stem}")
        await env.sleep(timedelta(seconds=seconds))
        return handle

    every_second = ScheduleSpec(interval_s=1)
    for overlap in (OverlapPolicy.SKIP, OverlapPolicy.BUFFER_ALL, OverlapPolicy.CANCEL_OTHER,
                    OverlapPolicy.TERMINATE_OTHER):
        stem = f"schedule_{overlap.value}"
        handle = await run(stem, _state(stem, every_second, overlap, 2.5), 8.5)
        await handle.update("delete")
        out[stem] = handle.history

    # a cron schedule in New York across the spring-forward night, with jitter
    stem = "schedule_cron_dst_jitter"
    spec = ScheduleSpec(cron=["30 2 * * *", "0 */6 * * *"], time_zone="America/New_York",
                        jitter_s=120)
    handle = await run(stem, _state(stem, spec, OverlapPolicy.ALLOW_ALL, 60), 3 * 86400)
    await handle.update("delete")
    out[stem] = handle.history

    # an operator at work: pause, trigger, unpause, update, backfill, delete
    stem = "schedule_operator"
    handle = await run(stem, _state(stem, ScheduleSpec(interval_s=600), OverlapPolicy.SKIP, 5),
                       1300)
    await handle.update("pause", "maintenance")
    await env.sleep(timedelta(minutes=30))
    await handle.update("trigger", OverlapPolicy.ALLOW_ALL)
    await handle.update("unpause", "")
    await handle.update("update", ScheduleChange(spec=ScheduleSpec(cron=["*/15 * * * *"]),
                                                 note="quarter hours"))
    await env.sleep(timedelta(minutes=40))
    await handle.update("backfill", START - timedelta(hours=1), START, OverlapPolicy.BUFFER_ALL)
    await env.sleep(timedelta(minutes=2))
    await handle.update("delete")
    out[stem] = handle.history
    return out


def kafka_histories(client: Any, prefix: str) -> dict[str, list[ev.Event]]:
    """On a running engine (``client`` a :class:`orchestrator.client.Client` of it):
    an every-second ``skip`` schedule over a 2.5 s job with a trigger, a pause and an
    unpause, deleted after about ten seconds; its history as recorded."""
    stem = "kafka_schedule_skip"
    handle = client.create_schedule(
        f"{prefix}-skip",
        ScheduleSpec(interval_s=1),
        ScheduleAction("replay.job", "q", [2.5]),
        SchedulePolicy(OverlapPolicy.SKIP),
        timeout=60,
    )
    time.sleep(4)
    handle.trigger()
    handle.pause("a look")
    time.sleep(2)
    handle.unpause()
    time.sleep(4)
    handle.delete()
    found = client.fetch_history(handle.workflow.workflow_id)
    return {stem: list(found.events)}
