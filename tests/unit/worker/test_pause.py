"""Pause and unpause on the shard (no broker): inputs are recorded while paused,
survive a crash, and are applied once, in order, on unpause."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from orchestrator import workflow
from orchestrator.engine import events as ev
from orchestrator.serde import records as rec
from orchestrator.serde.history_page import DESCRIBE_QUERY
from tests.unit.worker.shard_harness import CONV, WIRE, Harness

HOUR_MS = 3_600_000


@workflow.defn(name="unit.pausable")
async def pausable(ctx: workflow.WorkflowContext) -> list[str]:
    got: list[str] = []

    def note(value: str) -> None:
        got.append(value)

    ctx.set_signal_handler("note", note)
    ctx.set_query_handler("notes", lambda: list(got))
    first = await ctx.execute_activity("unit.step", "one", result_type=str)
    got.append(first)
    await ctx.sleep(timedelta(hours=1))
    got.append("woke")
    second = await ctx.execute_activity("unit.step", "two", result_type=str)
    got.append(second)
    await ctx.wait_condition(lambda: "done" in got)
    return got


def harness(path: Path) -> Harness:
    return Harness(path, [pausable])  # type: ignore[list-item]


def complete_tasks(h: Harness) -> list[str]:
    """Play the activity worker: complete every task sent so far; their arguments."""
    done = []
    for out in h.tasks:
        task = WIRE.decode_task(out.headers, out.value).record
        arg = CONV.from_payload(task.args[0])
        done.append(arg)
        h.send(
            rec.ActivityTaskCompleted(
                workflow_id=task.workflow_id,
                run_id=task.run_id,
                activity_seq=task.activity_seq,
                attempt=task.attempt,
                result=CONV.to_payload(f"did {arg}"),
            )
        )
    h.tasks.clear()
    h.commit()
    return done


def reply_of(h: Harness, request_id: str) -> rec.Reply:
    return next(r for r in h.replies if r.correlation_id == request_id)


def events(h: Harness, workflow_id: str) -> list[ev.Event]:
    found = []
    for entry in h.history:
        if entry.value is None or entry.key.endswith(b"/snapshot"):
            continue
        record = WIRE.decode_event(entry.headers, entry.value).record
        if record.workflow_id == workflow_id:
            found.append(record.event)
    return found


def described(h: Harness, workflow_id: str) -> rec.WorkflowSnapshot:
    reply = h.read(workflow_id, DESCRIBE_QUERY)
    assert reply.ok and reply.result is not None, reply.error
    [record] = WIRE.decode_page(reply.result).records
    return WIRE.decode_snapshot(list(record.headers.items()), record.value).record


def query(h: Harness, workflow_id: str, name: str) -> object:
    query_id = f"q-{h.commands_offset}"
    h.send(rec.QueryWorkflow(workflow_id=workflow_id, query_id=query_id, query_name=name))
    h.commit()
    reply = reply_of(h, query_id)
    assert reply.ok and reply.result is not None, reply.error
    return CONV.from_payload(reply.result)


def pause(h: Harness, workflow_id: str, request_id: str = "p1") -> rec.Reply:
    command = rec.PauseWorkflow(
        workflow_id=workflow_id,
        reason="downstream outage",
        operator="ops@bank",
        request_id=request_id,
    )
    h.send(command)
    h.commit()
    return reply_of(h, request_id)


def unpause(h: Harness, workflow_id: str, request_id: str = "u1") -> rec.Reply:
    command = rec.UnpauseWorkflow(
        workflow_id=workflow_id, reason="fixed", operator="ops@bank", request_id=request_id
    )
    h.send(command)
    h.commit()
    return reply_of(h, request_id)


def signal(h: Harness, workflow_id: str, value: str) -> None:
    args = [CONV.to_payload(value)]
    h.send(rec.SignalWorkflow(workflow_id=workflow_id, signal_name="note", args=args))
    h.commit()


def test_a_paused_run_decides_nothing_and_applies_what_came_on_unpause(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("p", "unit.pausable")
    h.commit()
    assert complete_tasks(h) == ["one"]  # now asleep for an hour
    assert pause(h, "p").ok
    snapshot = described(h, "p")
    assert snapshot.status is rec.WorkflowStatus.RUNNING
    assert snapshot.paused == rec.PauseState(
        reason="downstream outage", operator="ops@bank", time=h.clock.now
    )
    # a signal comes and the sleep's time passes: both held
    signal(h, "p", "a")
    h.run(advance_ms=2 * HOUR_MS)
    assert h.tasks == [], "a paused run schedules nothing"
    assert query(h, "p", "notes") == ["did one"], "queries answer while paused"
    names = [type(e).__name__ for e in events(h, "p")]
    assert names[-3:] == ["WorkflowPaused", "InputDeferred", "InputDeferred"]
    assert "TimerFired" not in names and "SignalReceived" not in names

    assert unpause(h, "p").ok
    assert described(h, "p").paused is None
    assert query(h, "p", "notes") == ["did one", "a", "woke"]
    # paused again while step two runs: its result is held too
    assert pause(h, "p", "p2").ok
    assert complete_tasks(h) == ["two"]
    assert query(h, "p", "notes") == ["did one", "a", "woke"]
    assert unpause(h, "p", "u2").ok
    signal(h, "p", "done")
    assert h.results() == {"p": ["did one", "a", "woke", "did two", "done"]}
    names = [type(e).__name__ for e in events(h, "p")]
    assert names.count("TimerFired") == 1 and names.count("ActivityCompleted") == 2
    assert names.count("SignalReceived") == 2
    unpaused = next(e for e in events(h, "p") if isinstance(e, ev.WorkflowUnpaused))
    assert (unpaused.reason, unpaused.operator) == ("fixed", "ops@bank")


def test_what_a_paused_run_holds_survives_a_crash_and_is_applied_once(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("p", "unit.pausable")
    h.commit()
    complete_tasks(h)  # asleep
    pause(h, "p")
    signal(h, "p", "a")
    h.run(advance_ms=2 * HOUR_MS)  # the timer fires into the pause
    # kill -9, then a new owner on a fresh disk rebuilds the shard from the log
    h.stop()
    other = harness(tmp_path / "elsewhere")
    other.history, other.commands_offset = h.history, h.commands_offset
    other.restore()
    other.run(advance_ms=HOUR_MS)
    assert described(other, "p").paused is not None, "still paused after the failover"
    assert [type(e).__name__ for e in events(other, "p")].count("InputDeferred") == 2, (
        "the held timer must not fire again after the restore"
    )
    assert unpause(other, "p").ok
    complete_tasks(other)
    signal(other, "p", "done")
    assert other.results() == {"p": ["did one", "a", "woke", "did two", "done"]}
    assert [type(e).__name__ for e in events(other, "p")].count("TimerFired") == 1


def test_terminate_still_works_on_a_paused_run_and_repeats_are_no_ops(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("p", "unit.pausable")
    h.commit()
    pause(h, "p")
    h.send(rec.PauseWorkflow(workflow_id="p", request_id="p2"))
    h.commit()
    assert reply_of(h, "p2").ok
    assert [type(e).__name__ for e in events(h, "p")].count("WorkflowPaused") == 1
    h.send(rec.TerminateWorkflow(workflow_id="p", reason="give up"))
    h.commit()
    assert described(h, "p").status is rec.WorkflowStatus.TERMINATED
    h.send(rec.UnpauseWorkflow(workflow_id="p", request_id="u2"))
    h.commit()
    refused = reply_of(h, "u2")
    assert not refused.ok and refused.error is not None
    assert refused.error.type == "WorkflowClosed"


def test_a_signal_its_handler_cannot_take_is_refused_while_paused(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("p", "unit.pausable")
    h.commit()
    pause(h, "p")
    bad = [CONV.to_payload({"not": "a str"})]
    h.send(rec.SignalWorkflow(workflow_id="p", signal_name="note", args=bad, request_id="s1"))
    h.commit()
    refused = reply_of(h, "s1")
    assert not refused.ok and refused.error is not None
    assert refused.error.type == "CommandRejected"


@workflow.defn(name="unit.counter")
class Counter:
    """An update ``add`` and a query ``total``; ends when ``stop`` is signalled."""

    def __init__(self) -> None:
        self.total_now = 0
        self.stopped = False

    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext) -> int:
        await ctx.wait_condition(lambda: self.stopped)
        return self.total_now

    @workflow.update(name="add")
    async def add(self, n: int) -> int:
        self.total_now += n
        return self.total_now

    @workflow.signal(name="stop")
    def stop(self) -> None:
        self.stopped = True

    @workflow.query(name="total")
    def total(self) -> int:
        return self.total_now


def test_an_update_sent_while_paused_is_answered_on_unpause(tmp_path: Path) -> None:
    h = Harness(tmp_path, [Counter])
    h.start("c", "unit.counter")
    h.commit()
    pause(h, "c")
    h.send(
        rec.UpdateWorkflow(
            workflow_id="c", update_id="up-1", update_name="add", args=[CONV.to_payload(5)]
        )
    )
    h.commit()
    assert not [r for r in h.replies if r.correlation_id == "up-1"], "no answer while paused"
    unpause(h, "c")
    answer = reply_of(h, "up-1")
    assert answer.ok and answer.result is not None and CONV.from_payload(answer.result) == 5
    h.send(rec.SignalWorkflow(workflow_id="c", signal_name="stop"))
    h.commit()
    assert h.results() == {"c": 5}


def test_a_repeated_activity_report_while_paused_is_held_once(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("p", "unit.pausable")
    h.commit()
    pause(h, "p")
    [task] = [WIRE.decode_task(t.headers, t.value).record for t in h.tasks]
    for result in ("first", "again"):  # an activity worker re-ran the task after a crash
        h.send(
            rec.ActivityTaskCompleted(
                workflow_id="p",
                run_id=task.run_id,
                activity_seq=task.activity_seq,
                attempt=task.attempt,
                result=CONV.to_payload(result),
            )
        )
        h.commit()
    assert [type(e).__name__ for e in events(h, "p")].count("InputDeferred") == 1
    unpause(h, "p")
    assert query(h, "p", "notes") == ["first"]


def test_a_paused_runs_history_exports_and_replays(tmp_path: Path) -> None:
    from orchestrator.engine.replayer import Replayer, history_from_json, history_to_json

    h = harness(tmp_path)
    h.start("p", "unit.pausable")
    h.commit()
    complete_tasks(h)
    pause(h, "p")
    signal(h, "p", "a")
    h.run(advance_ms=2 * HOUR_MS)
    unpause(h, "p")
    complete_tasks(h)
    signal(h, "p", "done")
    recorded = events(h, "p")
    exported = history_to_json(recorded)
    assert history_from_json(exported) == recorded
    result = Replayer(workflows=[pausable]).replay(exported)
    assert result.status is rec.WorkflowStatus.COMPLETED


def test_an_execution_timeout_that_passes_while_paused_applies_on_unpause(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("p", "unit.pausable", execution_timeout_ms=HOUR_MS // 2)
    h.commit()
    complete_tasks(h)  # asleep for an hour
    pause(h, "p")
    h.run(advance_ms=2 * HOUR_MS)
    assert described(h, "p").status is rec.WorkflowStatus.RUNNING, "held, not applied"
    held = [e for e in events(h, "p") if isinstance(e, ev.InputDeferred)]
    assert [(e.kind, e.name) for e in held] == [
        ("timer", "execution-timeout"),
        ("timer", "timer/1"),
    ]
    unpause(h, "p")
    assert described(h, "p").status is rec.WorkflowStatus.TIMED_OUT


@workflow.defn(name="unit.booker")
async def booker(ctx: workflow.WorkflowContext) -> str:
    saga = ctx.saga()
    saga.add_compensation("unit.release", "seat-1")
    await ctx.sleep(timedelta(days=10))
    return "booked"


def test_a_cancel_sent_while_paused_compensates_on_unpause(tmp_path: Path) -> None:
    h = Harness(tmp_path, [booker])  # type: ignore[list-item]
    h.start("b", "unit.booker")
    h.commit()
    pause(h, "b")
    h.send(rec.CancelWorkflow(workflow_id="b", reason="customer asked", request_id="c1"))
    h.commit()
    assert reply_of(h, "c1").ok
    assert h.tasks == [], "no compensation while paused"
    unpause(h, "b")
    assert complete_tasks(h) == ["seat-1"]
    assert described(h, "b").status is rec.WorkflowStatus.CANCELLED


@workflow.defn(name="unit.beating")
async def beating(ctx: workflow.WorkflowContext) -> str:
    return await ctx.execute_activity(
        "unit.beat", "x", heartbeat_timeout=timedelta(minutes=1), result_type=str
    )


def test_heartbeats_keep_an_attempt_alive_while_its_run_is_paused(tmp_path: Path) -> None:
    h = Harness(tmp_path, [beating])  # type: ignore[list-item]
    h.start("h", "unit.beating")
    h.commit()
    [task] = [WIRE.decode_task(t.headers, t.value).record for t in h.tasks]
    pause(h, "h")
    for _ in range(10):  # ten minutes of heartbeats, every 30 s
        h.run(advance_ms=30_000)
        h.send(
            rec.ActivityHeartbeat(
                workflow_id="h",
                run_id=task.run_id,
                activity_seq=task.activity_seq,
                attempt=task.attempt,
            )
        )
        h.commit()
    assert not [e for e in events(h, "h") if isinstance(e, ev.InputDeferred)]
    unpause(h, "h")
    assert complete_tasks(h) == ["x"]
    assert h.results() == {"h": "did x"}
