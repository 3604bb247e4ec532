"""Signals de-duplicated by request id on the shard (no broker): a re-sent signal is
acknowledged and not recorded again, also after an eviction, a crash, a restore from
the log onto a new disk, a pause, and for signal-with-start."""

from __future__ import annotations

from pathlib import Path

from orchestrator import workflow
from orchestrator.engine import events as ev
from orchestrator.serde import records as rec
from orchestrator.worker.shard.engine_shard import ShardTuning
from tests.unit.worker.shard_harness import CONV, Harness
from tests.unit.worker.test_pause import events, pause, reply_of, unpause


@workflow.defn(name="unit.inbox")
async def inbox(ctx: workflow.WorkflowContext) -> list[str]:
    got: list[str] = []
    ctx.set_signal_handler("note", got.append)
    await ctx.wait_condition(lambda: "end" in got)
    return got


def harness(path: Path, **kw: object) -> Harness:
    return Harness(path, [inbox], **kw)  # type: ignore[arg-type]


def started(path: Path, **kw: object) -> Harness:
    h = harness(path, **kw)
    h.start("box", "unit.inbox")
    h.commit()
    return h


def note(
    h: Harness, value: str, *, request_id: str | None = None, ce_id: str | None = None
) -> None:
    command = rec.SignalWorkflow(
        workflow_id="box", signal_name="note", args=[CONV.to_payload(value)],
        request_id=request_id,
    )
    h.send(command, ce_id=ce_id)
    h.commit()


def received(h: Harness) -> list[ev.SignalReceived]:
    return [e for e in events(h, "box") if isinstance(e, ev.SignalReceived)]


def finish(h: Harness) -> list[str]:
    note(h, "end")
    result = h.results()["box"]
    assert isinstance(result, list)
    return result


def test_the_same_record_twice_is_applied_once_and_both_sends_are_acknowledged(
    tmp_path: Path,
) -> None:
    h = started(tmp_path)
    note(h, "a", ce_id="ce-1")
    note(h, "a", ce_id="ce-1")  # a producer's retry: same record, same ce_id
    assert [e.request_id for e in received(h)] == ["ce-1"]
    replies = [r for r in h.replies if r.correlation_id == "ce-1"]
    assert len(replies) == 2 and all(r.ok for r in replies)
    assert finish(h) == ["a", "end"]


def test_a_client_retry_with_the_same_request_id_is_applied_once(tmp_path: Path) -> None:
    h = started(tmp_path)
    note(h, "a", request_id="req-1", ce_id="ce-1")
    note(h, "a", request_id="req-1", ce_id="ce-2")  # new record, same request id
    note(h, "a", request_id="req-2", ce_id="ce-3")  # a second signal, same content
    assert reply_of(h, "req-1").ok
    assert [e.request_id for e in received(h)] == ["req-1", "req-2"]
    assert finish(h) == ["a", "a", "end"]


def test_the_ids_survive_an_eviction_a_crash_and_a_restore_onto_a_new_disk(
    tmp_path: Path,
) -> None:
    h = started(tmp_path / "state", tuning=ShardTuning(cache_size=1))
    note(h, "a", request_id="req-1")
    h.start("other", "unit.inbox")  # evicts box from the cache of one
    h.commit()
    note(h, "a", request_id="req-1")
    h.crash()
    h.restore()
    h.run()
    note(h, "a", request_id="req-1")
    h.stop()
    fresh = harness(tmp_path / "elsewhere")  # rebuilt from the log alone
    fresh.history = h.history
    fresh.commands_offset = h.commands_offset
    fresh.restore()
    fresh.run()
    note(fresh, "a", request_id="req-1")
    assert [e.request_id for e in received(fresh)] == ["req-1"]
    assert finish(fresh) == ["a", "end"]


def test_a_signal_held_by_a_pause_is_held_once_and_applied_once(tmp_path: Path) -> None:
    h = started(tmp_path)
    assert pause(h, "box").ok
    note(h, "a", request_id="req-1")
    note(h, "a", request_id="req-1")
    held = [e for e in events(h, "box") if isinstance(e, ev.InputDeferred)]
    assert [(e.kind, e.request_id) for e in held] == [("signal", "req-1")]
    assert unpause(h, "box").ok
    note(h, "a", request_id="req-1")  # after the unpause too
    assert [e.request_id for e in received(h)] == ["req-1"]
    assert finish(h) == ["a", "end"]


def test_a_signal_with_start_resent_to_the_running_run_is_applied_once(
    tmp_path: Path,
) -> None:
    h = started(tmp_path)
    swap = rec.SignalWithStart(signal_name="note", args=[CONV.to_payload("b")])
    for _ in range(2):
        h.start("box", "unit.inbox", signal_with_start=swap, request_id="s-1")
        h.commit()
    assert [e.request_id for e in received(h)] == ["s-1"]
    assert finish(h) == ["b", "end"]



def test_a_reset_run_keeps_the_ids_of_the_signals_it_carries_over(tmp_path: Path) -> None:
    h = started(tmp_path)
    note(h, "a", request_id="req-1")
    h.send(rec.ResetWorkflow(workflow_id="box", event_seq=1, reason="bad deploy",
                             operator="ops", request_id="reset-1"))
    h.commit()
    assert reply_of(h, "reset-1").ok
    note(h, "a", request_id="req-1")  # a late retry reaches the new run
    # recorded by the old run, and by the new one when the reset delivered it again
    assert [e.request_id for e in received(h)] == ["req-1", "req-1"]
    assert finish(h) == ["a", "end"]
