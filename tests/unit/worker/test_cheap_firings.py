"""What a closed run leaves in the shard store, whichever way its timers are cleared.

A run whose history holds only its code's timers has them cleared by key; any other
run (activities, an execution timeout, signals...) by a scan of its timer entries.
Either way nothing of its timers stays, and the store still names the run current.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from orchestrator import workflow
from orchestrator.serde import records as rec
from orchestrator.worker.shard import store as keys
from orchestrator.worker.shard.engine_shard import ShardTuning
from tests.unit.worker.shard_harness import CONV, Harness

DAY_MS = 86_400_000


@workflow.defn(name="unit.cheap.sleeper")
async def sleeper(ctx: workflow.WorkflowContext) -> str:
    await ctx.sleep(timedelta(days=1))
    return "woke"


@workflow.defn(name="unit.cheap.gives_up")
async def gives_up(ctx: workflow.WorkflowContext) -> str:
    """Two timers: the wait's own fires, the sleep's is cancelled."""
    try:
        await asyncio.wait_for(ctx.sleep(timedelta(days=2)), timeout=DAY_MS / 1000)
    except TimeoutError:
        return "gave up"
    return "slept"


@workflow.defn(name="unit.cheap.leaves_one")
async def leaves_one(ctx: workflow.WorkflowContext) -> str:
    """Returns while a timer of its own is still pending (no TimerCancelled)."""
    pending = asyncio.ensure_future(ctx.sleep(timedelta(days=5)))
    await ctx.sleep(timedelta(days=1))
    return "left" if not pending.done() else "waited"


@workflow.defn(name="unit.cheap.signalled")
async def signalled(ctx: workflow.WorkflowContext) -> str:
    """A signal in history: its run's timers are cleared by a scan."""
    got = await ctx.wait_signal("go", arg_types=(str,), timeout=timedelta(days=3))
    await ctx.sleep(timedelta(days=1))
    return "late" if got is None else str(got[0])


def _harness(tmp_path: Path) -> Harness:
    return Harness(
        tmp_path / "state",
        [sleeper, gives_up, leaves_one, signalled],
        tuning=ShardTuning(idle_evict_ms=0),
        retention_ms=30 * DAY_MS,
    )


def _timer_entries(h: Harness, workflow_id: str) -> list[bytes]:
    return [k for k, _ in h.shard.store.scan(b"u" + keys.ident(workflow_id))]


def test_closed_runs_leave_no_timer_entries_and_stay_current(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    h.start("a", "unit.cheap.sleeper")
    h.start("b", "unit.cheap.gives_up")
    h.start("c", "unit.cheap.signalled")
    h.start("d", "unit.cheap.leaves_one")
    h.commit()
    assert all(_timer_entries(h, w) != [] for w in "abcd")
    h.send(rec.SignalWorkflow(workflow_id="c", signal_name="go", args=[CONV.to_payload("go")]))
    h.commit()
    h.run(advance_ms=DAY_MS)  # every run evicted, woken from the store, closed
    h.run(advance_ms=DAY_MS)
    assert h.results() == {"a": "woke", "b": "gave up", "c": "go", "d": "left"}
    assert h.events_of("b")[-3:] == ["TimerFired", "TimerCancelled", "WorkflowCompleted"]
    for workflow_id in "abcd":
        assert _timer_entries(h, workflow_id) == [], workflow_id
        run_id = next(r.run_id for r in h.replies if r.workflow_id == workflow_id)
        assert h.shard.store.get(keys.current_run_key(workflow_id)) == run_id.encode()
    h.run(advance_ms=3 * DAY_MS)  # the due entries left behind fire nothing
    results = sorted(r.workflow_id for r in h.replies if r.kind is rec.ReplyKind.RESULT)
    assert results == ["a", "b", "c", "d"]


@workflow.defn(name="unit.cheap.sleeper")
async def sleeper_changed(ctx: workflow.WorkflowContext) -> str:
    """The sleeper's code changed under its runs: their histories no longer replay."""
    await ctx.wait_signal("never")
    return "changed"


def test_a_parked_run_leaves_the_parked_set_when_it_closes_and_others_never_enter_it(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path / "state", [sleeper], retention_ms=30 * DAY_MS)
    h.start("old", "unit.cheap.sleeper")
    h.commit()
    h.stop()
    h.workflows = [sleeper_changed]  # a deploy that breaks the running sleepers
    h.shard = h.open_shard()
    h.restore()
    h.start("new", "unit.cheap.sleeper")
    h.commit()
    h.clock.now += DAY_MS
    h.tick()  # "old" wakes, cannot replay: parked
    h.send(rec.SignalWorkflow(workflow_id="new", signal_name="never"))
    assert b"knew" not in h.shard.view.current.puts, "a run that never parked"
    h.commit()
    assert h.results() == {"new": "changed"}
    assert [k for k, _ in h.shard.store.scan(b"k")] == [b"kold"]
    # an operator resets it onto the new code: the parked run ends (terminated by the
    # reset), the id's new run is not parked
    h.send(rec.ResetWorkflow(workflow_id="old", reason="broken by a deploy", event_seq=1))
    h.commit()
    assert [k for k, _ in h.shard.store.scan(b"k")] == [], "retried by no restore"
    assert "WorkflowTerminated" in h.events_of("old")
    h.send(rec.SignalWorkflow(workflow_id="old", signal_name="never"))
    h.commit()
    assert h.results() == {"new": "changed", "old": "changed"}
