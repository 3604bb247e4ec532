"""``__describe`` and ``__history``: a run read from the owning shard's store."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import workflow
from orchestrator.converter import Payload
from orchestrator.engine.events import Event
from orchestrator.serde import records as rec
from orchestrator.serde.history_page import DESCRIBE_QUERY, HISTORY_QUERY
from orchestrator.worker.shard import reads
from tests.unit.worker.shard_harness import WIRE, Harness
from tests.unit.worker.test_engine_shard import DAY_MS, chain, hoarder, sleeper, waiter


def harness(tmp_path: Path, **kw: object) -> Harness:
    return Harness(tmp_path, [sleeper, waiter, hoarder, chain], **kw)  # type: ignore[arg-type]


def described(h: Harness, workflow_id: str) -> rec.WorkflowSnapshot:
    reply = h.read(workflow_id, DESCRIBE_QUERY)
    assert reply.ok and reply.result is not None, reply.error
    [record] = WIRE.decode_page(reply.result).records
    return WIRE.decode_snapshot(list(record.headers.items()), record.value).record


def history(h: Harness, workflow_id: str, run_id: str | None = None) -> list[Event]:
    """Every page of a run's history, as a client reads it."""
    events: list[Event] = []
    after = 0
    while True:
        reply = h.read(workflow_id, HISTORY_QUERY, run_id, after)
        assert reply.ok and reply.result is not None, reply.error
        page = WIRE.decode_page(reply.result)
        for r in page.records:
            events.append(WIRE.decode_event(list(r.headers.items()), r.value).record.event)
        if page.next_seq is None:
            return events
        after = page.next_seq


def logged(h: Harness, workflow_id: str, run_id: str) -> list[Event]:
    """The run's events as the history topic has them."""
    prefix = f"{workflow_id}/{run_id}/".encode()
    found = [
        WIRE.decode_event(e.headers, e.value).record.event
        for e in h.compacted().values()
        if e.key.startswith(prefix)
    ]
    return sorted(found, key=lambda e: e.seq)


def test_describe_answers_open_and_closed_runs_and_refuses_unknown_ids(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("open", "unit.sleeper", 3)
    h.start("closed", "unit.chain", 0)
    h.commit()
    assert described(h, "open").status is rec.WorkflowStatus.RUNNING
    closed = described(h, "closed")
    assert closed.status is rec.WorkflowStatus.COMPLETED
    assert closed.result is not None
    missing = h.read("nobody", DESCRIBE_QUERY)
    assert not missing.ok and missing.error is not None
    assert missing.error.type == "WorkflowNotFound"


def test_a_read_sees_the_decision_made_just_before_it(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("w", "unit.waiter")
    # no commit in between: the read goes out in the same transaction as the start
    assert described(h, "w").status is rec.WorkflowStatus.RUNNING


def test_history_of_every_run_of_a_chain_equals_the_log(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("c", "unit.chain", 2)  # three runs
    h.commit()
    h.run()
    runs = sorted({e.key.decode().split("/")[1] for e in h.compacted().values()} - {"snapshot"})
    assert len(runs) == 3
    for run_id in runs:
        assert history(h, "c", run_id) == logged(h, "c", run_id)
    latest = described(h, "c").run_id
    assert history(h, "c") == logged(h, "c", latest), "no run id: the latest run"
    unknown = h.read("c", HISTORY_QUERY, "no-such-run")
    assert unknown.error is not None and unknown.error.type == "WorkflowNotFound"


def test_a_long_history_comes_in_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reads, "PAGE_BYTES", 300)
    h = harness(tmp_path)
    h.start("c", "unit.chain", 0)
    h.commit()
    run_id = described(h, "c").run_id
    pages = 0
    after = 0
    while after is not None:
        reply = h.read("c", HISTORY_QUERY, None, after)
        assert reply.result is not None
        page = WIRE.decode_page(reply.result)
        assert page.records, "every page holds at least one record"
        pages += 1
        after = page.next_seq  # type: ignore[assignment]
    assert pages > 1
    assert history(h, "c") == logged(h, "c", run_id)


def test_reads_after_a_rebuild_from_the_compacted_log(tmp_path: Path) -> None:
    h = harness(tmp_path, retention_ms=10 * DAY_MS)
    h.start("s", "unit.sleeper", 1)
    h.start("c", "unit.chain", 1)
    h.commit()
    h.run(advance_ms=DAY_MS)
    rebuilt = harness(tmp_path / "elsewhere", retention_ms=10 * DAY_MS)
    rebuilt.history = list(h.history)
    rebuilt.compact()
    rebuilt.restore()
    for workflow_id in ("s", "c"):
        assert described(rebuilt, workflow_id) == described(h, workflow_id)
        assert history(rebuilt, workflow_id) == history(h, workflow_id)


def test_after_retention_a_run_is_gone_from_reads(tmp_path: Path) -> None:
    h = harness(tmp_path, retention_ms=60_000)
    h.start("c", "unit.chain", 0)
    h.commit()
    run_id = described(h, "c").run_id
    h.run(advance_ms=61_000)
    for name in (DESCRIBE_QUERY, HISTORY_QUERY):
        reply = h.read("c", name, run_id)
        assert reply.error is not None and reply.error.type == "WorkflowNotFound"


def test_a_bad_page_argument_is_refused_with_the_reason(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("c", "unit.chain", 0)
    h.commit()
    query = rec.QueryWorkflow(
        workflow_id="c", query_id="bad", query_name=HISTORY_QUERY,
        args=[Payload(metadata={"encoding": b"json/plain"}, data=b'"ten"')],
    )
    h.send(query)
    h.commit()
    reply = next(r for r in h.replies if r.correlation_id == "bad")
    assert reply.error is not None and reply.error.type == "InvalidArgument"


def test_a_workflow_cannot_take_the_reserved_query_names() -> None:
    with pytest.raises(ValueError, match="reserved"):

        @workflow.defn(name="unit.greedy")
        class Greedy:
            @workflow.run
            async def run(self, ctx: workflow.WorkflowContext) -> None:
                return None

            @workflow.query(name=DESCRIBE_QUERY)
            def mine(self) -> str:
                return "mine"
