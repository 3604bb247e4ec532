"""A parent stops its child on the shard (no broker): the cancel through a handle and
the parent-close policy become commands to the child's shard, with the parent's
source and request id; the child's shard applies them only to the run that parent
started, answers nobody, and a run that merely holds the same workflow id is never
touched (nor is a child that continued as new missed). A parked parent's terminate
applies the policy too."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from orchestrator import workflow
from orchestrator.engine import events as ev
from orchestrator.serde import records as rec
from orchestrator.worker.shard import children
from orchestrator.worker.shard.records import InRecord, OutRecord
from tests.unit.engine.test_child_cancel import ALL, awaits
from tests.unit.worker.shard_harness import LAYOUT, WIRE, Harness
from tests.unit.worker.test_pause import described, events


def forward(h: Harness, rounds: int = 10) -> list[OutRecord]:
    """Feed the commands the shard wrote (child starts, reports, stops) back to it,
    until it writes none; the commands it wrote."""
    seen: list[OutRecord] = []
    for _ in range(rounds):
        h.commit()
        sent = [t for t in h.tasks if t.topic == LAYOUT.commands]
        h.tasks = [t for t in h.tasks if t.topic != LAYOUT.commands]
        if not sent:
            return seen
        seen += sent
        for out in sent:
            assert out.key is not None
            record = InRecord(LAYOUT.commands, 0, h.commands_offset, out.key, out.value,
                              list(out.headers))
            h.commands_offset += 1
            h.pending += h.shard.handle(record, h.clock.now)
    raise AssertionError("the shard kept writing commands")


def stops(sent: list[OutRecord]) -> list[tuple[str, rec.Command]]:
    out = []
    for record in sent:
        decoded = WIRE.decode_command(record.headers, record.value)
        if isinstance(decoded.record, rec.CancelWorkflow | rec.TerminateWorkflow):
            out.append((decoded.cloud_event.source, decoded.record))
    return out


def test_a_cancel_through_the_handle_reaches_the_child_and_only_it(tmp_path: Path) -> None:
    h = Harness(tmp_path, ALL)
    h.start("p", "parent.cancels", "kid.waits")
    sent = forward(h)
    [(source, stop)] = stops(sent)
    assert source == children.PARENT_SOURCE
    assert isinstance(stop, rec.CancelWorkflow) and stop.workflow_id == "kid"
    assert stop.reason == "no longer needed"
    assert h.results()["p"] == "ChildWorkflowError: CancelledError"
    assert described(h, "kid").status is rec.WorkflowStatus.CANCELLED
    assert "ChildWorkflowCancelRequested" in h.events_of("p")
    # the child's shard answered the parent's cancel to nobody
    assert not [r for r in h.replies if r.correlation_id == stop.request_id]


def test_the_policy_is_applied_when_the_parent_closes(tmp_path: Path) -> None:
    h = Harness(tmp_path, ALL)
    h.start("p1", "parent.leaves", "TERMINATE", True, ce_id="c1")
    forward(h)
    assert described(h, "kid").status is rec.WorkflowStatus.TERMINATED
    last = events(h, "kid")[-1]
    assert isinstance(last, ev.WorkflowTerminated)
    assert "closed FAILED (parent-close policy TERMINATE)" in last.reason


def test_a_refused_childs_stop_leaves_the_run_holding_the_id_alone(tmp_path: Path) -> None:
    h = Harness(tmp_path, ALL)
    h.start("kid", "kid.sleeps", ce_id="someone-else")  # holds the id, no parent
    h.commit()
    # the parent closes in the decision that starts its child: the terminate follows
    # the start on the child's shard, which refuses the start and drops the terminate
    h.start("p", "parent.forgets", "TERMINATE", ce_id="c2")
    sent = forward(h)
    [(source, stop)] = stops(sent)
    assert source == children.PARENT_SOURCE and isinstance(stop, rec.TerminateWorkflow)
    assert described(h, "p").status is rec.WorkflowStatus.COMPLETED
    assert described(h, "kid").status is rec.WorkflowStatus.RUNNING
    assert h.events_of("kid") == ["WorkflowStarted", "TimerStarted"]


def test_a_child_started_by_a_closing_parent_is_stopped_after_its_start(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, ALL)
    h.start("p", "parent.forgets", "REQUEST_CANCEL", ce_id="c3")
    forward(h)
    assert described(h, "p").status is rec.WorkflowStatus.COMPLETED
    assert described(h, "kid").status is rec.WorkflowStatus.CANCELLED


def test_from_parent_matches_only_the_parents_own_stop_ids() -> None:
    parent = rec.ParentExecution(workflow_id="p/x", run_id="r", child_seq=2)
    cancel = rec.CancelWorkflow(workflow_id="kid", request_id="p/x/r/child/2/cancel")
    terminate = rec.TerminateWorkflow(workflow_id="kid", reason="",
                                      request_id="p/x/r/child/2/terminate")
    assert children.from_parent(parent, cancel)
    assert children.from_parent(parent, terminate)
    assert not children.from_parent(None, cancel)
    other = rec.ParentExecution(workflow_id="p/x", run_id="r", child_seq=3)
    assert not children.from_parent(other, cancel)
    swapped = rec.CancelWorkflow(workflow_id="kid", request_id="p/x/r/child/2/terminate")
    assert not children.from_parent(parent, swapped)


@workflow.defn(name="parent.awaits")
async def awaits_changed(ctx: workflow.WorkflowContext, policy: str) -> str:
    """parent.awaits as a bad deploy changed it: it no longer starts the child first,
    so its runs that did cannot be replayed (they park)."""
    await ctx.sleep(timedelta(seconds=1))
    return "changed"


def test_a_parked_parent_terminated_by_a_reset_applies_the_policy(tmp_path: Path) -> None:
    h = Harness(tmp_path, ALL)
    h.start("p", "parent.awaits", "TERMINATE", ce_id="c4")
    forward(h)
    assert described(h, "kid").status is rec.WorkflowStatus.RUNNING
    # the bad deploy: the parent's next replay parks it
    h.workflows = [w for w in ALL if w is not awaits] + [awaits_changed]
    h.crash()
    h.send(rec.SignalWorkflow(workflow_id="p", signal_name="wake"))
    h.commit()
    assert described(h, "p").parked
    # the reset terminates the parked run (no code runs) and starts a new one from
    # event 1; the old run's child gets its TERMINATE
    h.send(rec.ResetWorkflow(workflow_id="p", event_seq=1, reason="bad deploy",
                             request_id="reset-1"))
    forward(h)
    old_run = events(h, "p")
    assert any(isinstance(e, ev.WorkflowTerminated) for e in old_run)
    assert described(h, "kid").status is rec.WorkflowStatus.TERMINATED


@workflow.defn(name="kid.chain")
async def chain(ctx: workflow.WorkflowContext, n: int) -> int:
    """Sleeps a second, then continues as new, for ever."""
    await ctx.sleep(timedelta(seconds=1))
    ctx.continue_as_new(n + 1)


@workflow.defn(name="parent.fails_later")
async def fails_later(ctx: workflow.WorkflowContext) -> str:
    await ctx.start_child_workflow(
        chain, 0, id="kid", parent_close_policy=workflow.ParentClosePolicy.TERMINATE
    )
    await ctx.wait_signal("fail")
    raise RuntimeError("parent fails")


def test_the_policy_reaches_a_child_that_continued_as_new(tmp_path: Path) -> None:
    h = Harness(tmp_path, [chain, fails_later])
    h.start("p", "parent.fails_later", ce_id="c5")
    forward(h)
    h.run(advance_ms=1500)
    h.run(advance_ms=1500)
    forward(h)
    assert h.events_of("kid").count("WorkflowContinuedAsNew") >= 2
    h.send(rec.SignalWorkflow(workflow_id="p", signal_name="fail"))
    forward(h)
    assert described(h, "p").status is rec.WorkflowStatus.FAILED
    kid = described(h, "kid")
    assert kid.status is rec.WorkflowStatus.TERMINATED and kid.run_id != kid.start_run_id
