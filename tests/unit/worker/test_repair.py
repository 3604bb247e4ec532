"""An operator's repair of a failed compensation on the shard (no broker): the closed
run reopens, survives a crash while compensating again, ends with a new RESULT,
and its snapshot lists the repairs; refusals write nothing."""

from __future__ import annotations

from pathlib import Path

from orchestrator import workflow
from orchestrator.engine import events as ev
from orchestrator.engine.events import Failure
from orchestrator.retry import RetryPolicy
from orchestrator.serde import records as rec
from tests.unit.worker.shard_harness import CONV, WIRE, Harness
from tests.unit.worker.test_pause import described, events, reply_of

ONCE = RetryPolicy(max_attempts=1)


@workflow.defn(name="unit.two_steps")
async def two_steps(ctx: workflow.WorkflowContext) -> str:
    saga = ctx.saga()
    await saga.step("unit.do", "a", compensate="unit.undo_a", compensation_retry=ONCE)
    await saga.step("unit.do", "b", compensate="unit.undo_b", compensation_retry=ONCE)
    await ctx.execute_activity("unit.do", "c", retry=ONCE)
    return "done"


def play(h: Harness, fail: set[str]) -> list[str]:
    """Play the activity worker once: each task sent so far succeeds, unless its type
    or its argument is in ``fail``; the tasks played, as ``type(arg)``."""
    played = []
    for out in h.tasks:
        task = WIRE.decode_task(out.headers, out.value).record
        arg = CONV.from_payload(task.args[0])
        played.append(f"{task.activity_type}({arg})")
        common = {"workflow_id": task.workflow_id, "run_id": task.run_id,
                  "activity_seq": task.activity_seq, "attempt": task.attempt}
        if task.activity_type in fail or arg in fail:
            h.send(rec.ActivityTaskFailed(failure=Failure(message="down", type="Down"), **common))
        else:
            h.send(rec.ActivityTaskCompleted(result=CONV.to_payload("ok"), **common))
    h.tasks.clear()
    h.commit()
    return played


def failed_run(tmp_path: Path) -> Harness:
    h = Harness(tmp_path, [two_steps])
    h.start("t", "unit.two_steps")
    h.commit()
    for _ in range(3):
        play(h, fail={"c", "unit.undo_b"})
    assert play(h, fail={"unit.undo_b"}) == ["unit.undo_b(b)"]
    assert described(h, "t").status is rec.WorkflowStatus.COMPENSATION_FAILED
    return h


def repair(h: Harness, request_id: str, **kw: object) -> rec.Reply:
    h.send(rec.RepairWorkflow(workflow_id="t", operator="ops", request_id=request_id,
                              **kw))  # type: ignore[arg-type]
    h.commit()
    return reply_of(h, request_id)


def results(h: Harness) -> list[rec.Reply]:
    return [r for r in h.replies if r.kind is rec.ReplyKind.RESULT]


def test_a_retried_compensation_reopens_the_run_which_survives_a_crash(tmp_path: Path) -> None:
    h = failed_run(tmp_path)
    assert len(results(h)) == 1
    assert repair(h, "r1", reason="bank is back").ok
    assert described(h, "t").status is rec.WorkflowStatus.COMPENSATING
    h.crash()
    h.restore()
    h.commit()
    h.tasks.clear()  # the dispatch before the crash was committed; the restore re-sends none
    h.run()
    assert play(h, fail=set()) == []  # nothing was left to dispatch again
    undo_b = [e for e in events(h, "t") if isinstance(e, ev.ActivityScheduled)][-1]
    assert undo_b.activity_type == "unit.undo_b"
    h.send(rec.ActivityTaskCompleted(workflow_id="t", run_id=results(h)[0].run_id or "",
                                     activity_seq=undo_b.activity_seq, attempt=1,
                                     result=CONV.to_payload("ok")))
    h.commit()
    assert play(h, fail=set()) == ["unit.undo_a(a)"]
    snapshot = described(h, "t")
    assert snapshot.status is rec.WorkflowStatus.FAILED
    assert [(n.action, n.reason, n.operator) for n in snapshot.repairs] == [
        ("retry", "bank is back", "ops")
    ]
    final = results(h)
    assert len(final) == 2 and final[-1].error is not None
    assert final[-1].error.message.startswith("activity 'unit.do' (seq 3) failed"), (
        "it ends as a compensated run does: with the step's error"
    )


def test_a_skipped_compensation_is_recorded_and_the_next_one_runs(tmp_path: Path) -> None:
    h = failed_run(tmp_path)
    assert repair(h, "r1", skip="unit.undo_b", reason="refunded by phone").ok
    assert play(h, fail=set()) == ["unit.undo_a(a)"]
    repaired = [e for e in events(h, "t") if isinstance(e, ev.CompensationRepaired)]
    assert [(e.action, e.activity_type, e.reason) for e in repaired] == [
        ("skip", "unit.undo_b", "refunded by phone")
    ]
    snapshot = described(h, "t")
    assert snapshot.status is rec.WorkflowStatus.FAILED
    assert snapshot.repairs[0].activity_type == "unit.undo_b"


def test_repairs_of_other_runs_or_unknown_steps_are_refused(tmp_path: Path) -> None:
    h = failed_run(tmp_path)
    before = len(h.history)
    refused = repair(h, "r1", skip="unit.undo_a")
    assert not refused.ok and refused.error is not None
    assert "not a failed compensation" in refused.error.message
    assert len(h.history) == before, "nothing written"
    assert len(results(h)) == 1, "no second RESULT for a run that did not change"
    h.start("open", "unit.two_steps")
    h.commit()
    h.send(rec.RepairWorkflow(workflow_id="open", request_id="r2"))
    h.commit()
    running = reply_of(h, "r2")
    assert not running.ok and running.error is not None
    assert "only a COMPENSATION_FAILED run" in running.error.message
