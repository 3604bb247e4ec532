"""The ``saga.batch`` workflow in the in-process environment: paging by cursor, totals
from the ledger, a page attempt that fails and runs again, cancel, continue-as-new;
and the pure parts (begin, the pacer, validation, the progress line). The page and
count activities are replaced by fakes over an in-memory listing and ledger."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator import activity
from orchestrator.batch import workflow as batch_workflow
from orchestrator.batch.cli import description_json, progress_line
from orchestrator.batch.pages import Pacer
from orchestrator.batch.spec import (
    COUNT_ACTIVITY,
    PAGE_ACTIVITY,
    BatchDescription,
    BatchFilter,
    BatchOp,
    BatchOperation,
    BatchState,
    BatchStatus,
    BatchTotals,
    PageResult,
)
from orchestrator.batch.workflow import BatchWorkflow, begin, describe_state
from orchestrator.client._batch import new_batch
from orchestrator.schedules.calendar import to_ms
from orchestrator.testing import WorkflowEnvironment

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RUNS = [f"r{i:02}" for i in range(23)]


class Fake:
    """The visibility listing (RUNS, in order) and the ledger of applied operations."""

    applied: list[str] = []  # noqa: RUF012 - reset per test by the fixture
    cursors: list[str | None] = []  # noqa: RUF012
    fail_once_at: str | None = None


@activity.defn(name=COUNT_ACTIVITY)
def count(filter: BatchFilter, op: BatchOp) -> int:
    return len(RUNS)


@activity.defn(name=PAGE_ACTIVITY)
def page(
    batch_id: str, operation: BatchOperation, filter: BatchFilter, cursor: str | None,
    page_size: int, rate: float,
) -> PageResult:
    Fake.cursors.append(cursor)
    start = 0 if cursor is None else RUNS.index(cursor) + 1
    rows = RUNS[start:start + page_size]
    for run in rows:
        if run not in Fake.applied:  # the ledger: a run once
            Fake.applied.append(run)
        if run == Fake.fail_once_at:
            Fake.fail_once_at = None
            raise RuntimeError("killed mid-page")
    more = start + page_size < len(RUNS)
    return PageResult(len(rows), rows[-1] if more else None, BatchTotals(done=len(Fake.applied)))


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    Fake.applied, Fake.cursors, Fake.fail_once_at = [], [], None
    async with WorkflowEnvironment(
        workflows=[BatchWorkflow], activities=[count, page], start_time=T0
    ) as environment:
        yield environment


def state(batch_id: str = "b", page_size: int = 5) -> BatchState:
    return BatchState(batch_id, BatchOperation(BatchOp.CANCEL, reason="x"),
                      BatchFilter(workflow_type="t"), rate=0, page_size=page_size)


async def test_pages_through_by_cursor_and_ends_with_the_totals(env: WorkflowEnvironment) -> None:
    handle = await env.start_workflow(BatchWorkflow, state(), id="batch:b")
    done: BatchDescription = await handle.result(result_type=BatchDescription)
    assert done.status is BatchStatus.COMPLETED
    assert (done.total, done.listed, done.pages, done.totals.done) == (23, 23, 5, 23)
    assert Fake.cursors == [None, "r04", "r09", "r14", "r19"]
    assert Fake.applied == RUNS
    assert done.filter.started_before == T0, "runs started after the batch are left out"


async def test_a_page_that_fails_runs_again_from_its_cursor_touching_nothing_twice(
    env: WorkflowEnvironment,
) -> None:
    Fake.fail_once_at = "r12"
    handle = await env.start_workflow(BatchWorkflow, state(), id="batch:b")
    done: BatchDescription = await handle.result(result_type=BatchDescription)
    assert Fake.cursors == [None, "r04", "r09", "r09", "r14", "r19"]
    assert Fake.applied == RUNS
    assert (done.listed, done.pages, done.totals.done) == (23, 5, 23)


async def test_continues_as_new_keeping_cursor_and_counts(
    env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_workflow, "CONTINUE_AFTER", 2)
    handle = await env.start_workflow(BatchWorkflow, state(page_size=3), id="batch:b")
    done: BatchDescription = await handle.result(result_type=BatchDescription)
    assert (done.listed, done.pages, done.totals.done) == (23, 8, 23)
    assert Fake.cursors.count(None) == 1, "a continued run goes on from its cursor"
    assert Fake.applied == RUNS


async def test_cancel_stops_after_the_page_under_way(env: WorkflowEnvironment) -> None:
    handle = await env.start_workflow(BatchWorkflow, state(page_size=1), id="batch:b")
    running: BatchDescription = await handle.update("cancel", "enough",
                                                    result_type=BatchDescription)
    assert running.cancel_reason == "enough"
    done: BatchDescription = await handle.result(result_type=BatchDescription)
    assert done.status is BatchStatus.CANCELLED
    assert done.pages <= 1 and len(Fake.applied) <= 1


def test_begin_bounds_the_start_time_once() -> None:
    s = state()
    begin(s, to_ms(T0), "tok")
    assert s.filter.started_before == T0 and s.created_ms == to_ms(T0)
    begin(s, to_ms(T0 + timedelta(hours=1)), "other")
    assert s.filter.started_before == T0, "a continued run keeps its bound"
    assert s.ledger_id == "b/tok", "and its ledger"
    earlier = replace(state(), filter=BatchFilter(started_before=T0 - timedelta(days=1)))
    begin(earlier, to_ms(T0), "tok")
    assert earlier.filter.started_before == T0 - timedelta(days=1)


def test_pacer_spaces_calls() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    pacer = Pacer(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        pacer.wait()
    assert now[0] == pytest.approx(1.0) and slept == [pytest.approx(0.25)] * 4
    unpaced = Pacer(0, clock=lambda: 0.0, sleep=sleep)
    unpaced.wait()
    unpaced.wait()
    assert len(slept) == 4


@pytest.mark.parametrize(("operation", "problem"), [
    (BatchOperation(BatchOp.SIGNAL), "needs a signal name"),
    (BatchOperation(BatchOp.CANCEL, signal_name="x"), "signal batches only"),
    (BatchOperation(BatchOp.RESET, bad_build="b", event_seq=3), "not both"),
    (BatchOperation(BatchOp.PAUSE, bad_build="b"), "reset batches only"),
    (BatchOperation(BatchOp.TERMINATE), "needs a reason"),
])
def test_invalid_operations_are_refused(operation: BatchOperation, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        new_batch("b", operation, BatchFilter(status="RUNNING"), rate=1, page_size=10)


def test_an_empty_filter_or_bad_id_is_refused_unless_asked() -> None:
    op = BatchOperation(BatchOp.CANCEL)
    with pytest.raises(ValueError, match="every run"):
        new_batch("b", op, BatchFilter(), rate=1, page_size=10)
    assert new_batch("b", op, BatchFilter(), rate=1, page_size=10, allow_all=True)[0] == "batch:b"
    with pytest.raises(ValueError, match="batch id"):
        new_batch("no spaces", op, BatchFilter(status="RUNNING"), rate=1, page_size=10)
    with pytest.raises(ValueError, match="page size"):
        new_batch("b", op, BatchFilter(status="RUNNING"), rate=1, page_size=0)


def test_progress_line() -> None:
    s = state()
    s.total, s.totals = 10, BatchTotals(done=4, skipped=1)
    line = progress_line(describe_state(s))
    assert line == f"[{'#' * 15}{'.' * 15}] 5/10 done=4 skipped=1 failed=0 running"


def test_description_json_is_plain_json() -> None:
    s = state()
    begin(s, to_ms(T0), "tok")
    out = description_json(describe_state(s))
    assert json.loads(json.dumps(out)) == out
    assert out["status"] == "running" and out["operation"]["op"] == "cancel"
    assert out["filter"]["started_before"] == T0.isoformat()
