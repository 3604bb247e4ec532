"""Starts against a workflow id's latest run: repeats, reuse policies (see start_policy.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from orchestrator import workflow
from orchestrator.serde import records as rec
from tests.unit.worker.shard_harness import CONV, LAYOUT, WIRE, Harness

DAY_MS = 86_400_000


@workflow.defn(name="unit.quick")
async def quick(ctx: workflow.WorkflowContext, n: int) -> int:
    return n * 2


@workflow.defn(name="unit.collector")
async def collector(ctx: workflow.WorkflowContext) -> list[str]:
    got: list[str] = []
    ctx.set_signal_handler("go", got.append)
    await ctx.sleep(timedelta(days=1))
    return got


@workflow.defn(name="unit.countdown")
async def countdown(ctx: workflow.WorkflowContext, n: int) -> int:
    if n > 0:
        ctx.continue_as_new(n - 1)
    return n


WORKFLOWS = [quick, collector, countdown]


def harness(path: Path, **kw: object) -> Harness:
    return Harness(path, WORKFLOWS, **kw)  # type: ignore[arg-type]


def starts(h: Harness) -> list[rec.Reply]:
    return [r for r in h.replies if r.kind is rec.ReplyKind.START]


def result_replies(h: Harness, workflow_id: str) -> list[rec.Reply]:
    return [r for r in h.replies if r.kind is rec.ReplyKind.RESULT and r.workflow_id == workflow_id]


def test_a_start_resent_after_its_run_closed_gets_its_reply_and_runs_nothing(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path)
    h.start("order-1", "unit.quick", 21, ce_id="ce-1")
    h.start("order-2", "unit.quick", 5, request_id="req-2", ce_id="ce-2")
    h.commit()
    assert h.results() == {"order-1": 42, "order-2": 10}
    h.start("order-1", "unit.quick", 21, ce_id="ce-1")  # the same record again
    h.start("order-2", "unit.quick", 5, request_id="req-2", ce_id="ce-2b")  # a client's retry
    h.commit()
    replies = starts(h)
    assert [(r.correlation_id, r.ok) for r in replies] == [
        ("ce-1", True),
        ("req-2", True),
        ("ce-1", True),
        ("req-2", True),
    ]
    assert replies[0].run_id == replies[2].run_id
    assert replies[1].run_id == replies[3].run_id
    for workflow_id in ("order-1", "order-2"):
        assert h.events_of(workflow_id).count("WorkflowStarted") == 1
        assert len(result_replies(h, workflow_id)) == 1


def test_a_new_request_after_the_run_closed_still_starts_a_new_run(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("order", "unit.quick", 1, request_id="first")
    h.commit()
    h.start("order", "unit.quick", 2, request_id="second")
    h.commit()
    first, second = starts(h)
    assert first.run_id != second.run_id
    assert h.events_of("order").count("WorkflowStarted") == 2
    h.start("order", "unit.quick", 1, request_id="first")  # older than the latest run
    h.commit()
    assert starts(h)[-1].run_id not in (first.run_id, second.run_id)


def test_a_repeat_while_the_run_is_open_gets_the_same_reply_and_signals_nothing(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path)
    go = rec.SignalWithStart(signal_name="go", args=[CONV.to_payload("once")])
    h.start("c", "unit.collector", request_id="r1", signal_with_start=go)
    h.commit()
    h.start("c", "unit.collector", request_id="r1", signal_with_start=go, ce_id="again")
    h.commit()
    first, repeat = starts(h)
    assert (repeat.ok, repeat.run_id, repeat.error) == (True, first.run_id, None)
    h.run(advance_ms=DAY_MS)
    assert h.results() == {"c": ["once"]}
    assert h.events_of("c").count("SignalReceived") == 1


def test_repeats_are_recognised_by_a_store_rebuilt_from_the_log(tmp_path: Path) -> None:
    h = harness(tmp_path / "a")
    h.start("order", "unit.quick", 4, request_id="r")
    h.commit()
    h.stop()
    h.compact()
    other = harness(tmp_path / "b")
    other.history = h.history
    other.commands_offset = h.commands_offset
    other.restore()
    other.run()
    other.start("order", "unit.quick", 4, request_id="r", ce_id="resent")
    other.commit()
    assert starts(other)[0].run_id == starts(h)[0].run_id
    assert other.events_of("order").count("WorkflowStarted") == 1
    assert result_replies(other, "order") == []


def test_a_repeat_after_continue_as_new_names_the_run_the_start_created(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("cd", "unit.countdown", 3, request_id="r")
    h.commit()
    assert h.results() == {"cd": 0}
    h.start("cd", "unit.countdown", 3, request_id="r")
    h.commit()
    first, repeat = starts(h)
    assert repeat.run_id == first.run_id
    assert h.events_of("cd").count("WorkflowStarted") == 4, "one chain of four runs, no more"


def test_after_retention_the_id_is_free_and_the_same_request_starts_again(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path, retention_ms=DAY_MS)
    h.start("order", "unit.quick", 1, request_id="r")
    h.commit()
    h.run(advance_ms=DAY_MS + 1)  # tombstones: history and snapshot are gone
    h.start("order", "unit.quick", 1, request_id="r")
    h.commit()
    assert len(result_replies(h, "order")) == 2


TERMINATE = rec.IdReusePolicy.TERMINATE_IF_RUNNING


def test_terminate_if_running_ends_the_running_run_and_starts_the_new_one_at_once(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path)
    h.start("acct", "unit.collector", request_id="old")
    h.commit()
    out = h.send(
        rec.StartWorkflow(
            workflow_id="acct",
            workflow_type="unit.quick",
            task_queue="q",
            input=[CONV.to_payload(4)],
            id_reuse_policy=TERMINATE,
            request_id="new",
        )
    )
    decided = [  # what this one command's decision hands to its transaction
        type(WIRE.decode_event(o.headers, o.value).record.event).__name__
        for o in out
        if o.topic == LAYOUT.history and o.key is not None and not o.key.endswith(b"/snapshot")
    ]
    assert decided == ["WorkflowTerminated", "WorkflowStarted", "WorkflowCompleted"]
    h.commit()
    old, new = starts(h)
    assert new.ok and new.run_id != old.run_id
    ended, finished = result_replies(h, "acct")
    assert (ended.run_id, ended.ok) == (old.run_id, False)
    assert ended.error is not None and ended.error.type == "Terminated"
    assert "request new" in ended.error.message and "TERMINATE_IF_RUNNING" in ended.error.message
    assert (finished.run_id, CONV.from_payload(finished.result)) == (new.run_id, 8)
    assert h.events_of("acct") == [
        "WorkflowStarted",
        "TimerStarted",
        "WorkflowTerminated",
        "WorkflowStarted",
        "WorkflowCompleted",
    ]
    h.run(advance_ms=2 * DAY_MS)  # the terminated run's timer fires nothing
    assert len(result_replies(h, "acct")) == 2


def test_terminate_if_running_on_a_closed_id_starts_a_new_run(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("acct", "unit.quick", 1)
    h.commit()
    h.start("acct", "unit.quick", 2, id_reuse_policy=TERMINATE)
    h.commit()
    assert [r.ok for r in starts(h)] == [True, True]
    assert h.events_of("acct").count("WorkflowTerminated") == 0
    assert [CONV.from_payload(r.result) for r in result_replies(h, "acct")] == [2, 4]


def test_terminate_if_running_sent_twice_terminates_nothing_the_second_time(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path)
    h.start("acct", "unit.collector", request_id="old")
    h.start("acct", "unit.collector", request_id="new", id_reuse_policy=TERMINATE)
    h.commit()
    h.start("acct", "unit.collector", request_id="new", id_reuse_policy=TERMINATE)
    h.commit()
    _, new, repeat = starts(h)
    assert repeat.run_id == new.run_id
    assert h.events_of("acct").count("WorkflowTerminated") == 1
    h.run(advance_ms=DAY_MS)
    assert [r.run_id for r in result_replies(h, "acct")][-1] == new.run_id


def test_terminate_if_running_of_an_unknown_type_terminates_nothing(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("acct", "unit.collector")
    h.start("acct", "unit.nobody", id_reuse_policy=TERMINATE)
    h.commit()
    refused = starts(h)[-1]
    assert not refused.ok and refused.error is not None
    assert refused.error.type == "UnknownWorkflowType"
    assert len(h.dead_letters) == 1
    assert "WorkflowTerminated" not in h.events_of("acct")
