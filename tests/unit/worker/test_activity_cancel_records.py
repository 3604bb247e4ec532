"""The shard writes a cancel for a dispatched activity attempt, in the decision that
records ActivityCancelRequested, and none for an activity waiting for its retry."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from orchestrator import workflow
from orchestrator.engine.events import Failure
from orchestrator.retry import RetryPolicy
from orchestrator.serde import records as rec
from orchestrator.worker.shard.records import OutRecord
from tests.unit.worker.shard_harness import LAYOUT, WIRE, Harness


@workflow.defn(name="unit.waits_for_charge")
async def waits_for_charge(ctx: workflow.WorkflowContext) -> str:
    result: str = await ctx.execute_activity(
        "charge", task_queue="payments", start_to_close=timedelta(minutes=1),
        retry=RetryPolicy(initial=timedelta(hours=1)), result_type=str,
    )  # fmt: skip
    return result


def cancels(out: list[OutRecord]) -> list[rec.ActivityCancel]:
    return [
        WIRE.decode_cancel(o.headers, o.value).record
        for o in out
        if o.topic == LAYOUT.activity_cancels
    ]


def started(tmp_path: Path, workflow_id: str) -> tuple[Harness, str]:
    h = Harness(tmp_path, [waits_for_charge])
    h.start(workflow_id, "unit.waits_for_charge")
    h.commit()
    task = WIRE.decode_task(h.tasks[0].headers, h.tasks[0].value).record
    return h, task.run_id


def test_cancelling_a_run_cancels_its_running_attempt_at_the_worker(tmp_path: Path) -> None:
    h, run_id = started(tmp_path, "w1")
    out = h.send(rec.CancelWorkflow(workflow_id="w1", reason="gave up"))
    assert [
        (c.workflow_id, c.run_id, c.activity_seq, c.attempt, c.task_queue, c.activity_type)
        for c in cancels(out)
    ] == [("w1", run_id, 1, 1, "payments", "charge")]
    cancel = next(o for o in out if o.topic == LAYOUT.activity_cancels)
    assert cancel.key == b"payments/w1"
    assert h.shard.stats.activity_cancels == 1


def test_an_activity_waiting_for_its_retry_has_nothing_to_cancel(tmp_path: Path) -> None:
    h, run_id = started(tmp_path, "w2")
    h.send(rec.ActivityTaskFailed(
        workflow_id="w2", run_id=run_id, activity_seq=1, attempt=1,
        failure=Failure(message="down", type="Unavailable"),
    ))  # fmt: skip
    h.commit()
    out = h.send(rec.CancelWorkflow(workflow_id="w2"))
    assert cancels(out) == []
    assert h.shard.stats.activity_cancels == 0


@workflow.defn(name="unit.charge_or_give_up")
async def charge_or_give_up(ctx: workflow.WorkflowContext) -> str:
    try:
        return await asyncio.wait_for(
            ctx.execute_activity("charge", task_queue="payments", result_type=str), 60
        )
    except TimeoutError:
        return "gave up"


def test_a_wait_for_that_times_out_cancels_the_attempt_it_waited_for(tmp_path: Path) -> None:
    h = Harness(tmp_path, [charge_or_give_up])
    h.start("w3", "unit.charge_or_give_up")
    h.commit()
    h.run(advance_ms=61_000)
    assert [(c.workflow_id, c.activity_seq, c.attempt) for c in cancels(h.cancels)] == [
        ("w3", 1, 1)
    ]
    assert h.results() == {"w3": "gave up"}


def test_terminating_a_run_cancels_its_running_attempt(tmp_path: Path) -> None:
    h, run_id = started(tmp_path, "w4")
    h.send(rec.TerminateWorkflow(workflow_id="w4", reason="operator"))
    h.commit()
    assert [(c.run_id, c.activity_seq, c.attempt) for c in cancels(h.cancels)] == [
        (run_id, 1, 1)
    ]


@workflow.defn(name="unit.fire_and_forget")
async def fire_and_forget(ctx: workflow.WorkflowContext) -> str:
    # started, never awaited: the run ends while the attempt is out at a worker
    notify = asyncio.ensure_future(
        ctx.execute_activity("notify", task_queue="mail", result_type=str)
    )
    await ctx.sleep(timedelta(seconds=1))
    assert not notify.done()
    return "done"


def test_a_run_that_ends_without_awaiting_its_activity_cancels_it(tmp_path: Path) -> None:
    h = Harness(tmp_path, [fire_and_forget])
    h.start("w5", "unit.fire_and_forget")
    h.commit()
    assert cancels(h.cancels) == []
    h.run(advance_ms=2_000)
    assert h.results() == {"w5": "done"}
    assert [(c.task_queue, c.activity_type) for c in cancels(h.cancels)] == [("mail", "notify")]


@workflow.defn(name="unit.moves_on")
async def moves_on(ctx: workflow.WorkflowContext, round_: int) -> str:
    if round_ > 1:
        return "second run"
    notify = asyncio.ensure_future(
        ctx.execute_activity("notify", task_queue="mail", result_type=str)
    )
    await ctx.sleep(timedelta(seconds=1))
    assert not notify.done()
    ctx.continue_as_new(round_ + 1)


def test_continuing_as_new_cancels_the_attempts_the_old_run_left_running(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, [moves_on])
    h.start("w6", "unit.moves_on", 1)
    h.commit()
    first = WIRE.decode_task(h.tasks[0].headers, h.tasks[0].value).record
    h.run(advance_ms=2_000)
    assert h.results() == {"w6": "second run"}
    assert [(c.run_id, c.activity_type) for c in cancels(h.cancels)] == [
        (first.run_id, "notify")
    ]


def test_a_cancel_is_never_sent_ahead_of_its_transaction(tmp_path: Path) -> None:
    from orchestrator.worker.shard.dispatch import EarlyDispatch

    h, _ = started(tmp_path, "w7")
    [cancel] = [o for o in h.send(rec.CancelWorkflow(workflow_id="w7")) if o.topic == (
        LAYOUT.activity_cancels
    )]
    early = EarlyDispatch({"bootstrap.servers": "127.0.0.1:1"}, LAYOUT.task_prefix)
    try:
        assert early.is_task(h.tasks[0])  # tasks may go early
        assert not early.is_task(cancel)  # cancels go with the transaction only
    finally:
        early.close(0)
