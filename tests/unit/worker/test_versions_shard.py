"""Versions side by side on the engine shard (shard_harness.py, no broker): a deploy that
adds version 2 leaves running runs on version 1 and starts new ones on version 2; a run
whose version the worker lacks is parked with the reason, its commands kept in the DLQ,
and goes on when a worker holding its version takes the shard."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from orchestrator import workflow
from orchestrator.engine import events as ev
from orchestrator.serde import records as rec
from tests.unit.worker.shard_harness import WIRE, Harness

DAY_MS = 86_400_000


@workflow.defn(name="unit.pay")
async def pay_v1(ctx: workflow.WorkflowContext, amount: int) -> str:
    await ctx.sleep(timedelta(days=1))
    return f"v1 paid {amount}"


@workflow.defn(name="unit.pay", version=2)
async def pay_v2(ctx: workflow.WorkflowContext, amount: int) -> str:
    got: list[str] = []
    ctx.set_signal_handler("ok", got.append)
    await ctx.sleep(timedelta(hours=1))
    await ctx.sleep(timedelta(hours=23))
    return f"v2 paid {amount}{''.join(got)}"


def redeploy(h: Harness, workflows: list[Any]) -> None:
    """Stop the worker and start one with other code on the same disk."""
    h.stop()
    h.workflows = workflows
    h.shard = h.open_shard()
    h.restore()


def started_version(h: Harness, workflow_id: str) -> int:
    for entry in h.history:
        if entry.value is None or not entry.key.startswith(f"{workflow_id}/".encode()):
            continue
        if entry.key.endswith(b"/snapshot"):
            continue
        event = WIRE.decode_event(entry.headers, entry.value).record.event
        if isinstance(event, ev.WorkflowStarted):
            return event.workflow_version
    raise AssertionError(f"no WorkflowStarted for {workflow_id}")


def test_runs_before_a_deploy_stay_on_v1_and_runs_after_start_v2(tmp_path: Path) -> None:
    h = Harness(tmp_path / "state", [pay_v1])
    for i in range(5):
        h.start(f"old-{i}", "unit.pay", i)
    h.commit()
    redeploy(h, [pay_v1, pay_v2])
    for i in range(5):
        h.start(f"new-{i}", "unit.pay", i)
    h.commit()
    h.crash()  # kill -9, same disk
    h.restore()
    h.run(advance_ms=2 * DAY_MS)
    h.run(advance_ms=DAY_MS)  # v2's second sleep
    assert h.results() == {
        **{f"old-{i}": f"v1 paid {i}" for i in range(5)},
        **{f"new-{i}": f"v2 paid {i}" for i in range(5)},
    }
    assert {started_version(h, f"old-{i}") for i in range(5)} == {1}
    assert {started_version(h, f"new-{i}") for i in range(5)} == {2}


def test_a_run_of_a_missing_version_is_parked_and_resumes_with_a_worker_that_has_it(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path / "state", [pay_v2])
    h.start("late", "unit.pay", 3)
    h.commit()
    redeploy(h, [pay_v1])  # a rollback: this worker lacks version 2
    h.run(advance_ms=2 * DAY_MS)  # the timer comes due: the run needs its code
    execution = h.shard.executions.get("late")
    assert execution is not None and execution.parked is not None
    assert "waiting for version 2 of workflow type 'unit.pay'" in execution.parked
    assert "holds v1" in execution.parked
    assert execution.is_open and "late" not in h.results()
    # a signal meanwhile is not lost: it waits in the DLQ for a redrive
    h.send(rec.SignalWorkflow(workflow_id="late", signal_name="ok", args=[]))
    h.commit()
    assert len(h.dead_letters) == 1
    # the worker with version 2 takes the shard: the run goes on from where it was
    redeploy(h, [pay_v1, pay_v2])
    h.run(advance_ms=DAY_MS)
    h.run(advance_ms=DAY_MS)
    assert h.results() == {"late": "v2 paid 3"}


def test_a_command_that_finds_the_version_missing_parks_the_run_and_is_kept(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path / "state", [pay_v2])
    h.start("sig", "unit.pay", 1)
    h.commit()
    redeploy(h, [pay_v1])
    h.send(rec.SignalWorkflow(workflow_id="sig", signal_name="ok", args=[]))
    h.commit()
    execution = h.shard.executions.get("sig")
    assert execution is not None and execution.parked is not None
    assert len(h.dead_letters) == 1  # kept, not dropped
    redeploy(h, [pay_v2])
    h.run(advance_ms=2 * DAY_MS)
    h.run(advance_ms=DAY_MS)
    assert h.results() == {"sig": "v2 paid 1"}


@workflow.defn(name="unit.cycle")
async def cycle_v1(ctx: workflow.WorkflowContext, n: int) -> str:
    if n == 0:
        ctx.continue_as_new(1, version=3)  # a version no worker holds yet
    return f"v1 at {n}"


@workflow.defn(name="unit.cycle", version=3)
async def cycle_v3(ctx: workflow.WorkflowContext, n: int) -> str:
    return f"v3 at {n}"


def test_a_reset_run_stays_on_the_version_of_the_run_it_came_from(tmp_path: Path) -> None:
    h = Harness(tmp_path / "state", [pay_v1])
    h.start("r", "unit.pay", 4)
    h.commit()
    redeploy(h, [pay_v1, pay_v2])
    h.send(rec.ResetWorkflow(workflow_id="r", reason="why not", operator="ops",
                             request_id="reset-1", event_seq=1))
    h.commit()
    reply = next(r for r in h.replies if r.correlation_id == "reset-1")
    assert reply.ok, reply.error
    h.run(advance_ms=2 * DAY_MS)
    assert h.results() == {"r": "v1 paid 4"}
    execution = h.shard.executions.get("r")
    assert execution is not None and execution.run_id == reply.run_id
    assert execution.snapshot is not None and execution.snapshot.workflow_version == 1


def test_continue_as_new_onto_a_version_not_held_parks_until_a_worker_holds_it(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path / "state", [cycle_v1])
    h.start("cy", "unit.cycle", 0)
    h.commit()
    h.run()
    execution = h.shard.executions.get("cy")
    assert execution is not None and execution.parked is not None
    assert "its next run is waiting for version 3 of workflow type 'unit.cycle'" in (
        execution.parked
    )
    redeploy(h, [cycle_v1, cycle_v3])
    h.run()
    assert h.results() == {"cy": "v3 at 1"}


def test_a_restore_from_the_log_parks_a_sleeping_run_of_a_missing_version_at_once(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path / "state", [pay_v1])
    for i in range(10):
        h.start(f"s-{i}", "unit.pay", i)
    h.commit()
    h.stop()
    fresh = Harness(tmp_path / "elsewhere", [pay_v2])  # a new disk, without version 1
    fresh.history = h.history
    fresh.commands_offset = h.commands_offset
    fresh.restore()
    fresh.run()  # no timer is due: the restore's recovery finds them
    for i in range(10):
        execution = fresh.shard.executions.get(f"s-{i}")
        assert execution is not None and execution.parked is not None, i
        assert "waiting for version 1" in execution.parked


@workflow.defn(name="unit.tally")
async def tally_v1(ctx: workflow.WorkflowContext, days: int) -> str:
    while days < 10:
        await ctx.sleep(timedelta(days=1))
        days += 1
        ctx.upgrade_point(days)  # the declared upgrade point
    return f"v1 tallied {days} days"


@workflow.defn(name="unit.tally", version=2)
async def tally_v2(ctx: workflow.WorkflowContext, days: int) -> str:
    return f"v2 took over after {days} days"


def upgrade_answers(h: Harness, workflow_id: str) -> list[str]:
    out = []
    for entry in h.history:
        if entry.value is None or not entry.key.startswith(f"{workflow_id}/".encode()):
            continue
        if entry.key.endswith(b"/snapshot"):
            continue
        event = WIRE.decode_event(entry.headers, entry.value).record.event
        if isinstance(event, ev.MarkerRecorded) and event.marker_name == ev.MARKER_UPGRADE:
            out.append(event.marker_id)
    return out


def test_a_long_lived_run_moves_to_the_deployed_version_at_its_upgrade_point(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path / "state", [tally_v1])
    h.start("t", "unit.tally", 0)
    h.commit()
    h.run(advance_ms=DAY_MS)
    h.run(advance_ms=DAY_MS)  # two days on version 1 alone: asked twice, no
    assert h.results() == {}
    redeploy(h, [tally_v1, tally_v2])  # the deploy of version 2, same disk
    h.crash()  # and a kill -9 after it: the answers replay from history
    h.restore()
    h.run(advance_ms=DAY_MS)
    assert h.results() == {"t": "v2 took over after 3 days"}
    assert upgrade_answers(h, "t") == ["none", "none", "v2"]
    assert started_version(h, "t") == 1  # the first run's; the continued one is v2
    execution = h.shard.executions.get("t")
    assert execution is not None and execution.snapshot is not None
    assert execution.snapshot.workflow_version == 2
