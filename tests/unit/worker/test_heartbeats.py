"""Heartbeats survive what history does not hold: a replay after a restart, on the
same disk (kept in the store) or on a new one (the timeout restarts at the restore)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from orchestrator import workflow
from orchestrator.retry import RetryPolicy
from orchestrator.serde import records as rec
from tests.unit.worker.shard_harness import CONV, WIRE, Harness

SECOND = 1000
BEAT_TIMEOUT = timedelta(seconds=60)


@workflow.defn(name="unit.beating")
async def beating(ctx: workflow.WorkflowContext, n: int) -> str:
    pokes: list[str] = []
    ctx.set_signal_handler("poke", pokes.append)
    retry = RetryPolicy(initial=timedelta(seconds=1), max_attempts=3)
    result: str = await ctx.execute_activity(
        "unit.long", n, heartbeat_timeout=BEAT_TIMEOUT, retry=retry, result_type=str
    )
    return result


def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path, [beating])


def tasks(h: Harness) -> list[rec.ActivityTask]:
    return [WIRE.decode_task(t.headers, t.value).record for t in h.tasks]


def beat(h: Harness, attempt: int, detail: str) -> None:
    [first, *_] = tasks(h)
    h.send(
        rec.ActivityHeartbeat(
            workflow_id="b", run_id=first.run_id, activity_seq=first.activity_seq,
            attempt=attempt, details=[CONV.to_payload(detail)],
        )
    )
    h.commit()


def poke(h: Harness) -> None:
    """Any command to the run: a fresh shard replays it first."""
    h.send(rec.SignalWorkflow(workflow_id="b", signal_name="poke", args=[CONV.to_payload("x")]))
    h.commit()


def restarted(h: Harness, state_dir: Path | None = None) -> Harness:
    """The same shard after a restart: on the same disk, or rebuilt on a new one."""
    h.stop()
    if state_dir is None:
        h.shard = h.open_shard()
        h.restore()
        return h
    new = harness(state_dir)
    new.history, new.clock, new.commands_offset = h.history, h.clock, h.commands_offset
    new.tasks = h.tasks
    new.restore()
    return new


def test_a_heartbeating_activity_is_not_timed_out_after_a_restart(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("b", "unit.beating", 1)
    h.commit()
    h.clock.now += 50 * SECOND
    beat(h, 1, "page 7")
    h = restarted(h)
    h.clock.now += 50 * SECOND  # 100 s after the attempt began, 50 s after its heartbeat
    poke(h)
    h.run()
    h.run(advance_ms=2 * SECOND)  # a timeout would have led to a retry by now
    assert len(tasks(h)) == 1, "no timeout, no second attempt"
    h.clock.now += 9 * SECOND  # 61 s after the heartbeat: now it is overdue
    h.run()
    h.run(advance_ms=2 * SECOND)  # the retry's backoff
    retried = tasks(h)
    assert [t.attempt for t in retried] == [1, 2]
    assert [CONV.from_payload(p) for p in retried[1].heartbeat_details] == ["page 7"]


def test_on_a_new_disk_the_heartbeat_timeout_counts_from_the_restore(tmp_path: Path) -> None:
    h = harness(tmp_path / "first")
    h.start("b", "unit.beating", 1)
    h.commit()
    h.clock.now += 50 * SECOND
    beat(h, 1, "page 7")
    h.clock.now += 20 * SECOND  # 70 s after the attempt began: the restore comes later
    h = restarted(h, tmp_path / "second")
    poke(h)
    h.run()
    h.run(advance_ms=2 * SECOND)  # a timeout would have led to a retry by now
    assert len(tasks(h)) == 1, "a live activity gets one timeout from the restore"
    h.clock.now += 59 * SECOND
    h.run()
    h.run(advance_ms=2 * SECOND)  # the retry's backoff
    assert [t.attempt for t in tasks(h)] == [1, 2], "a dead one times out after it"
