"""A run's priority and fairness key (given by its start): its activities and child
workflows that name none take them, continue-as-new keeps them, describe shows them
(shard harness, no broker; the tasks are the records a flow-controlled queue reads)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from orchestrator import workflow
from orchestrator.engine import events as ev
from orchestrator.serde import records as rec
from orchestrator.serde.history_page import DESCRIBE_QUERY
from orchestrator.worker.shard import children
from tests.unit.worker.shard_harness import LAYOUT, WIRE, Harness
from tests.unit.worker.test_pause import described, events


@workflow.defn(name="unit.prio.acts")
async def acts(ctx: workflow.WorkflowContext) -> None:
    await asyncio.gather(
        ctx.execute_activity("inherits", result_type=int),
        ctx.execute_activity("own", priority=1, fairness_key="own", result_type=int),
        ctx.execute_activity("own_priority", priority=0, result_type=int),
    )


@workflow.defn(name="unit.prio.kid")
async def kid(ctx: workflow.WorkflowContext) -> int:
    return int(await ctx.execute_activity("kid_act", result_type=int))


@workflow.defn(name="unit.prio.parent")
async def parent(ctx: workflow.WorkflowContext) -> None:
    await asyncio.gather(
        ctx.execute_child_workflow(kid, id="kid-inherits"),
        ctx.execute_child_workflow(kid, id="kid-own", priority=9, fairness_key="vip"),
    )


@workflow.defn(name="unit.prio.chain")
async def chain(ctx: workflow.WorkflowContext, n: int) -> int:
    if n > 0:
        ctx.continue_as_new(n - 1)
    return int(await ctx.execute_activity("last", result_type=int))


def harness(path: Path) -> Harness:
    return Harness(path, [acts, kid, parent, chain])


def tasks(h: Harness) -> dict[str, tuple[int, str]]:
    out = {}
    for t in h.tasks:
        if t.topic.startswith(LAYOUT.commands):
            continue
        task = WIRE.decode_task(t.headers, t.value).record
        out[task.activity_type] = (task.priority, task.fairness_key)
    return out


def child_starts(h: Harness) -> list[rec.StartWorkflow]:
    out = []
    for t in h.tasks:
        if t.topic == LAYOUT.commands:
            command = WIRE.decode_command(t.headers, t.value).record
            if isinstance(command, rec.StartWorkflow):
                out.append(command)
    return out


def test_activities_without_their_own_take_the_runs(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("a", "unit.prio.acts", priority=5, fairness_key="tenantA")
    h.commit()
    assert tasks(h) == {
        "inherits": (5, "tenantA"),
        "own": (1, "own"),
        "own_priority": (0, "tenantA"),  # an explicit 0 is its own, the key the run's
    }
    started = events(h, "a")[0]
    assert isinstance(started, ev.WorkflowStarted)
    assert (started.priority, started.fairness_key) == (5, "tenantA")


def test_a_run_started_without_them_dispatches_as_before(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("a", "unit.prio.acts")
    h.commit()
    assert tasks(h)["inherits"] == (0, "")


def test_children_without_their_own_take_the_parents(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("p", "unit.prio.parent", priority=5, fairness_key="tenantA")
    h.commit()
    starts = {s.workflow_id: s for s in child_starts(h)}
    assert (starts["kid-inherits"].priority, starts["kid-inherits"].fairness_key) == (
        5, "tenantA",
    )
    assert (starts["kid-own"].priority, starts["kid-own"].fairness_key) == (9, "vip")
    for start in starts.values():  # the child runs start on the shard: their activities
        h.send(start)
    h.commit()
    kid_started = events(h, "kid-inherits")[0]
    assert isinstance(kid_started, ev.WorkflowStarted) and kid_started.priority == 5
    kid_tasks = [
        WIRE.decode_task(t.headers, t.value).record
        for t in h.tasks
        if t.topic != LAYOUT.commands
    ]
    assert sorted((k.workflow_id, k.priority, k.fairness_key) for k in kid_tasks) == [
        ("kid-inherits", 5, "tenantA"), ("kid-own", 9, "vip"),
    ]


def test_continue_as_new_keeps_them_and_describe_shows_them(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("c", "unit.prio.chain", 2, priority=5, fairness_key="tenantA")
    h.commit()
    h.run()
    assert tasks(h) == {"last": (5, "tenantA")}
    snapshot = described(h, "c")
    assert snapshot.status is rec.WorkflowStatus.RUNNING
    runs = [e for e in events(h, "c") if isinstance(e, ev.WorkflowStarted)]
    assert [(r.priority, r.fairness_key) for r in runs] == [(5, "tenantA")] * 3
    assert snapshot.run_id == runs[-1].run_id
    assert (snapshot.priority, snapshot.fairness_key) == (5, "tenantA")
    assert h.read("c", DESCRIBE_QUERY).ok


def test_a_next_run_rebuilt_by_a_restore_keeps_them() -> None:
    snapshot = rec.WorkflowSnapshot(
        workflow_id="c", run_id="r1", workflow_type="t", task_queue="q",
        status=rec.WorkflowStatus.CONTINUED_AS_NEW, start_time=1, last_seq=3,
        priority=5, fairness_key="tenantA",
    )
    last = ev.WorkflowContinuedAsNew(seq=3, time=2, new_run_id="r2", workflow_type="t",
                                     task_queue="q")
    start = children.next_run_after(snapshot, last)
    assert (start.priority, start.fairness_key) == (5, "tenantA")
