"""An operator's reset on the shard (no broker): a new run replays the history up to
the point, signals after it are delivered again (or not), both runs say why, and an
activity in flight at the point runs again under its idempotency key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator import workflow
from orchestrator.engine import events as ev
from orchestrator.engine.replayer import Replayer, history_from_json, history_to_json
from orchestrator.serde import records as rec
from tests.unit.worker.shard_harness import CONV, WIRE, Harness
from tests.unit.worker.test_pause import complete_tasks, events, query, reply_of, signal


@workflow.defn(name="unit.collector")
class Collector:
    """One step, then collects ``note`` signals until one says ``end``."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext) -> list[str]:
        self.notes.append(await ctx.execute_activity("unit.step", "one", result_type=str))
        await ctx.wait_condition(lambda: "end" in self.notes)
        return self.notes

    @workflow.signal(name="note")
    def note(self, text: str) -> None:
        self.notes.append(text)

    @workflow.query(name="notes")
    def read_notes(self) -> list[str]:
        return list(self.notes)


def harness(path: Path) -> Harness:
    return Harness(path, [Collector])  # type: ignore[list-item]


def reset(h: Harness, request_id: str, workflow_id: str = "c", **kw: object) -> rec.Reply:
    command = rec.ResetWorkflow(
        workflow_id=workflow_id,
        reason="bad deploy",
        operator="ops@bank",
        request_id=request_id,
        **kw,
    )
    h.send(command)
    h.commit()
    return reply_of(h, request_id)


def run_events(h: Harness, run_id: str) -> list[ev.Event]:
    found = []
    for entry in h.history:
        if entry.value is None or entry.key.endswith(b"/snapshot"):
            continue
        record = WIRE.decode_event(entry.headers, entry.value).record
        if record.run_id == run_id:
            found.append(record.event)
    return found


def test_reset_to_event_n_delivers_later_signals_again_unless_excluded(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("c", "unit.collector")
    h.commit()
    assert complete_tasks(h) == ["one"]
    first_run = h.replies[0].run_id
    assert first_run is not None
    for text in ("a", "b", "c"):
        signal(h, "c", text)
    names = [type(e).__name__ for e in events(h, "c")]
    assert (
        names
        == ["WorkflowStarted", "ActivityScheduled", "ActivityCompleted"] + ["SignalReceived"] * 3
    )

    again = reset(h, "r1", event_seq=3)
    assert again.ok, again.error
    second_run = again.run_id
    assert second_run is not None and second_run != first_run
    assert query(h, "c", "notes") == ["did one", "a", "b", "c"]
    closed = run_events(h, first_run)[-1]
    assert isinstance(closed, ev.WorkflowTerminated)
    assert (closed.operator, closed.reset_run_id) == ("ops@bank", second_run)
    assert "reset to event 3" in closed.reason and "bad deploy" in closed.reason
    started = run_events(h, second_run)[0]
    assert isinstance(started, ev.WorkflowStarted) and started.reset is not None
    assert started.run_id == second_run
    origin = started.reset
    assert (origin.from_run_id, origin.to_seq, origin.operator, origin.reason) == (
        first_run,
        3,
        "ops@bank",
        "bad deploy",
    )
    assert [type(e).__name__ for e in run_events(h, second_run)] == names, (
        "events 1..3, then the three signals again"
    )
    assert h.results() == {}, "the reset run's end is not the workflow's result"
    exported = history_to_json(run_events(h, second_run))
    assert history_from_json(exported) == run_events(h, second_run)
    assert Replayer(workflows=[Collector]).replay(exported).status is rec.WorkflowStatus.RUNNING

    excluded = reset(h, "r2", event_seq=3, exclude_signals=True)
    assert excluded.ok, excluded.error
    assert query(h, "c", "notes") == ["did one"]
    signal(h, "c", "end")
    assert h.results() == {"c": ["did one", "end"]}
    results = [r for r in h.replies if r.kind is rec.ReplyKind.RESULT]
    assert [r.run_id for r in results] == [excluded.run_id], "one RESULT, of the last run"


def test_an_activity_in_flight_at_the_point_runs_again_and_late_results_are_ignored(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path)
    h.start("c", "unit.collector")
    h.commit()
    [old_task] = [WIRE.decode_task(t.headers, t.value).record for t in h.tasks]
    h.tasks.clear()
    answer = reset(h, "r1", event_seq=2)  # step one scheduled, not finished
    assert answer.ok, answer.error
    [new_task] = [WIRE.decode_task(t.headers, t.value).record for t in h.tasks]
    assert new_task.run_id == answer.run_id != old_task.run_id
    assert new_task.idempotency_key == old_task.idempotency_key, "safe to run again"
    # the old run's attempt is told to stop (the new run's attempt is another one)
    stopped = [WIRE.decode_cancel(c.headers, c.value).record for c in h.cancels]
    assert [(c.run_id, c.activity_seq, c.attempt) for c in stopped] == [
        (old_task.run_id, 1, 1)
    ]
    h.tasks.clear()
    # the old attempt's late result names the old run: ignored, in both runs
    h.send(
        rec.ActivityTaskCompleted(
            workflow_id="c",
            run_id=old_task.run_id,
            activity_seq=1,
            attempt=1,
            result=CONV.to_payload("late"),
        )
    )
    h.commit()
    assert query(h, "c", "notes") == []
    assert not any(isinstance(e, ev.ActivityCompleted) for e in run_events(h, old_task.run_id))
    h.send(
        rec.ActivityTaskCompleted(
            workflow_id="c",
            run_id=new_task.run_id,
            activity_seq=1,
            attempt=1,
            result=CONV.to_payload("fresh"),
        )
    )
    h.commit()
    signal(h, "c", "end")
    assert h.results() == {"c": ["fresh", "end"]}


def test_a_reset_to_a_point_that_is_not_one_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path)
    h.start("c", "unit.collector")
    h.commit()
    complete_tasks(h)
    signal(h, "c", "end")
    assert h.results() == {"c": ["did one", "end"]}
    before = len(h.history)
    refused = reset(h, "r1", event_seq=99)
    assert not refused.ok and refused.error is not None
    assert refused.error.type == "ResetRefused" and "1..4" in refused.error.message
    assert len(h.history) == before
    # a closed run can be reset: to its last decision point by default, and the
    # decision made there (complete) is made again by the current code
    again = reset(h, "r2")
    assert again.ok, again.error
    started = run_events(h, str(again.run_id))[0]
    assert isinstance(started, ev.WorkflowStarted) and started.reset is not None
    assert started.reset.to_seq == 4, "the signal that ended the wait"
    results = [r for r in h.replies if r.kind is rec.ReplyKind.RESULT]
    assert [r.run_id for r in results][-1] == again.run_id
    assert h.results() == {"c": ["did one", "end"]}


def test_the_bad_build_point_is_just_before_that_builds_first_decision() -> None:
    from orchestrator.worker.shard.reset import ResetRefusedError, plan_reset

    started = ev.WorkflowStarted(
        seq=1, time=1, workflow_type="t", workflow_id="w", run_id="r1", task_queue="q"
    )
    events: list[ev.Event] = [
        started,
        ev.TimerStarted(seq=2, time=1, build_id="good", timer_id="timer/1", fire_at=5),
        ev.TimerFired(seq=3, time=5, timer_id="timer/1"),
        ev.TimerStarted(seq=4, time=5, build_id="bad", timer_id="timer/2", fire_at=9),
        ev.SignalReceived(seq=5, time=6, signal_name="note"),
        ev.TimerCancelled(seq=6, time=6, build_id="bad", timer_id="timer/2"),
    ]

    def plan(build: str) -> int:
        return plan_reset(
            events,
            old_run_id="r1",
            new_run_id="r2",
            event_seq=None,
            exclude_signals=False,
            reason="",
            operator="",
            before_build=build,
        ).to_seq

    assert plan("bad") == 3
    assert plan("good") == 1
    with pytest.raises(ResetRefusedError, match="made no decision"):
        plan("other")


@workflow.defn(name="unit.flip")
async def flip_v1(ctx: workflow.WorkflowContext) -> str:
    await ctx.sleep(timedelta(days=1))
    return "v1"


def _flip_v2() -> object:
    @workflow.defn(name="unit.flip")
    async def flip_v2(ctx: workflow.WorkflowContext) -> str:
        return await ctx.execute_activity("unit.step", "v2", result_type=str)

    return flip_v2


def test_a_parked_run_is_reset_by_the_code_that_cannot_replay_it(tmp_path: Path) -> None:
    h = Harness(tmp_path / "a", [flip_v1])  # type: ignore[list-item]
    h.start("f", "unit.flip")
    h.commit()
    h.stop()
    fixed = Harness(tmp_path / "b", [_flip_v2()])  # type: ignore[list-item]
    fixed.history, fixed.commands_offset = h.history, h.commands_offset
    fixed.restore()
    fixed.run()  # the restore reads the sleeping run's timer off its events, no replay
    fixed.run(86_400_000)  # it wakes: v2 replays it, and cannot
    execution = fixed.shard.executions.get("f")
    assert execution is not None and execution.parked is not None, "v2 cannot replay v1's run"
    answer = reset(fixed, "r1", "f")  # to the last decision point: event 1
    assert answer.ok, answer.error
    old_run = execution.run_id
    closed = run_events(fixed, old_run)[-1]
    assert isinstance(closed, ev.WorkflowTerminated) and closed.reset_run_id == answer.run_id
    assert complete_tasks(fixed) == ["v2"]
    assert fixed.results() == {"f": "did v2"}


def test_points_inside_a_pause_or_with_a_child_running_are_refused() -> None:
    from orchestrator.worker.shard.reset import ResetRefusedError, plan_reset

    started = ev.WorkflowStarted(
        seq=1, time=1, workflow_type="t", workflow_id="w", run_id="r1", task_queue="q"
    )
    paused: list[ev.Event] = [
        started,
        ev.WorkflowPaused(seq=2, time=2),
        ev.InputDeferred(seq=3, time=3, kind="signal", name="note"),
        ev.WorkflowUnpaused(seq=4, time=4),
        ev.SignalReceived(seq=5, time=4, signal_name="note"),
    ]
    child: list[ev.Event] = [
        started,
        ev.ChildWorkflowInitiated(
            seq=2, time=2, child_seq=1, workflow_type="k", workflow_id="kid", task_queue="q"
        ),
        ev.ChildWorkflowStarted(seq=3, time=3, child_seq=1, run_id="kr"),
        ev.ChildWorkflowCompleted(seq=4, time=4, child_seq=1, result=CONV.to_payload(1)),
    ]

    def plan(events: list[ev.Event], to: int) -> int:
        return plan_reset(
            events,
            old_run_id="r1",
            new_run_id="r2",
            event_seq=to,
            exclude_signals=False,
            reason="",
            operator="",
        ).to_seq

    for inside in (2, 3):
        with pytest.raises(ResetRefusedError, match="paused at that point"):
            plan(paused, inside)
    assert plan(paused, 4) == 4 and plan(paused, 1) == 1
    for running in (2, 3):
        with pytest.raises(ResetRefusedError, match=r"child workflows \[1\] were running"):
            plan(child, running)
    assert plan(child, 4) == 4


def test_a_point_the_deployed_code_does_not_replay_is_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path / "a", [flip_v1])  # type: ignore[list-item]
    h.start("f", "unit.flip")
    h.commit()
    h.stop()
    fixed = Harness(tmp_path / "b", [_flip_v2()])  # type: ignore[list-item]
    fixed.history, fixed.commands_offset = h.history, h.commands_offset
    fixed.restore()
    before = len(fixed.history)
    refused = reset(fixed, "r1", "f", event_seq=2)  # the TimerStarted v2 does not make
    assert not refused.ok and refused.error is not None
    assert refused.error.type == "ResetRefused"
    assert "different command than history records" in refused.error.message
    fixed.commit()
    assert [e.key for e in fixed.history[before:]] == [], "nothing written"
