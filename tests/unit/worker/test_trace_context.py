"""The W3C trace context of a start travels with every record of the run's life."""

from __future__ import annotations

from pathlib import Path

from orchestrator.serde import records as rec
from orchestrator.worker.shard.executions import trace_of
from tests.unit.worker.shard_harness import CONV, Harness
from tests.unit.worker.test_engine_shard import DAY_MS, chain, sleeper, waiter

START = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
SIGNAL = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path, [sleeper, waiter, chain])


def test_a_sleeping_runs_records_keep_the_starts_trace_across_eviction(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("s", "unit.sleeper", 1, traceparent=START)
    h.commit()
    h.stop()  # the run leaves memory; its trace is in the store's records
    h.shard = h.open_shard()
    h.restore()
    h.run(advance_ms=DAY_MS)
    assert h.results() == {"s": "slept 1d"}
    history = [e for e in h.history if e.value is not None]
    assert len(history) >= 4
    assert {trace_of(e.headers) for e in history} == {START}
    assert {trace_of(r.headers) for r in h.reply_records} == {START}


def test_a_reply_carries_its_commands_trace_and_history_the_runs(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("w", "unit.waiter", traceparent=START)
    h.commit()
    signal = rec.SignalWorkflow(
        workflow_id="w", signal_name="go", args=[CONV.to_payload("x")], request_id="sig-1"
    )
    h.send(signal, traceparent=SIGNAL)
    h.commit()
    answer = next(
        r for r in h.reply_records if r.key == b"sig-1" or (r.key or b"").startswith(b"sig-1")
    )
    assert trace_of(answer.headers) == SIGNAL
    assert {trace_of(e.headers) for e in h.history if e.value is not None} == {START}


def test_the_next_run_of_a_chain_joins_the_same_trace(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("c", "unit.chain", 2, traceparent=START)
    h.commit()
    h.run()
    runs = {e.key.split(b"/")[1] for e in h.history if not e.key.endswith(b"snapshot")}
    assert len(runs) == 3
    assert {trace_of(e.headers) for e in h.history if e.value is not None} == {START}


def test_without_a_trace_nothing_is_invented(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("c", "unit.chain", 0)
    h.commit()
    assert {trace_of(e.headers) for e in h.history if e.value is not None} == {None}
