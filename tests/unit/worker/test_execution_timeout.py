"""``execution_timeout`` as the shard enforces it: a durable timer that cancels the
workflow, lets its compensations run, and closes it TIMED_OUT (see docs/concepts.md)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from orchestrator import workflow
from orchestrator.serde import records as rec
from tests.unit.worker.shard_harness import CONV, WIRE, Harness

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


@workflow.defn(name="unit.booking")
async def booking(ctx: workflow.WorkflowContext) -> str:
    saga = ctx.saga()
    saga.add_compensation("unit.release", "seat-1")
    await ctx.sleep(timedelta(days=10))
    return "booked"


@workflow.defn(name="unit.forever")
async def forever(ctx: workflow.WorkflowContext, n: int) -> int:
    await ctx.sleep(timedelta(days=1))
    ctx.continue_as_new(n + 1)
    return n


def harness(path: Path) -> Harness:
    return Harness(path, [booking, forever])  # type: ignore[list-item]


def start(h: Harness, workflow_id: str, workflow_type: str, *args: object, ms: int) -> None:
    h.start(workflow_id, workflow_type, *args, execution_timeout_ms=ms)
    h.commit()


def finish_compensations(h: Harness) -> list[str]:
    """Play the activity worker: complete every task the shard sent; their types."""
    done = []
    for out in h.tasks:
        task = WIRE.decode_task(out.headers, out.value).record
        done.append(task.activity_type)
        h.send(
            rec.ActivityTaskCompleted(
                workflow_id=task.workflow_id,
                run_id=task.run_id,
                activity_seq=task.activity_seq,
                attempt=task.attempt,
                result=CONV.to_payload(None),
            )
        )
    h.tasks.clear()
    h.commit()
    return done


def snapshot(h: Harness, workflow_id: str) -> rec.WorkflowSnapshot:
    execution = h.shard.executions.get(workflow_id)
    assert execution is not None and execution.snapshot is not None
    return execution.snapshot


def test_the_timeout_cancels_compensates_and_closes_the_run_timed_out(tmp_path: Path) -> None:
    h = harness(tmp_path)
    start(h, "trip", "unit.booking", ms=HOUR_MS)
    assert h.shard.next_due_ms() == h.clock.now + HOUR_MS
    h.run(advance_ms=HOUR_MS - 1)
    assert h.results() == {} and h.tasks == []
    h.run(advance_ms=1)
    assert finish_compensations(h) == ["unit.release"]
    (reply,) = [r for r in h.replies if r.kind is rec.ReplyKind.RESULT]
    assert not reply.ok and reply.error is not None and reply.error.type == "TimedOut"
    assert snapshot(h, "trip").status is rec.WorkflowStatus.TIMED_OUT
    names = h.events_of("trip")
    assert names[names.index("WorkflowCancelRequested") :] == [
        "WorkflowCancelRequested",
        "TimerCancelled",
        "CompensationStarted",
        "ActivityScheduled",
        "ActivityCompleted",
        "CompensationCompleted",
        "WorkflowTimedOut",
    ]


def test_without_a_timeout_nothing_fires(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("trip", "unit.booking")
    h.commit()
    assert h.shard.next_due_ms() == h.clock.now + 10 * DAY_MS
    h.run(advance_ms=10 * DAY_MS)
    assert h.results() == {"trip": "booked"}


def test_the_timeout_survives_a_restart_and_a_store_rebuilt_from_the_log(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path / "a")
    start(h, "trip", "unit.booking", ms=HOUR_MS)
    h.stop()
    h.shard = h.open_shard()  # same disk
    h.restore()
    assert h.shard.next_due_ms() == h.clock.now + HOUR_MS
    h.stop()
    other = harness(tmp_path / "b")  # a new disk: everything from the log
    other.history, other.commands_offset = h.history, h.commands_offset
    other.restore()
    other.run()  # recovery replays the run and finds its timers
    other.run(advance_ms=HOUR_MS)
    assert finish_compensations(other) == ["unit.release"]
    assert other.events_of("trip")[-1] == "WorkflowTimedOut"


def test_the_timeout_spans_a_continue_as_new_chain(tmp_path: Path) -> None:
    h = harness(tmp_path)
    start(h, "loop", "unit.forever", 0, ms=2 * DAY_MS + HOUR_MS)
    for _ in range(3):
        h.run(advance_ms=DAY_MS)
    names = h.events_of("loop")
    assert names.count("WorkflowContinuedAsNew") == 2, "the third run is the one timed out"
    assert names[-1] == "WorkflowTimedOut"
    (reply,) = [r for r in h.replies if r.kind is rec.ReplyKind.RESULT]
    assert reply.error is not None and reply.error.type == "TimedOut"
