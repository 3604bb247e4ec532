"""The page activity's ledger on PostgreSQL (no Kafka: the client and the listing are
fakes): a page run again touches nothing twice and counts each run once; a run claimed
by an attempt that died gets the operation again (a signal with the same request id,
which the run applies once);
refusals are skipped with why; a shard that does not answer fails the attempt, and
counts as failed from the third attempt on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from orchestrator import activity
from orchestrator.batch.pages import LEDGER_TABLE, BatchPages, ledger_ddl, signal_request_id
from orchestrator.batch.spec import BatchFilter, BatchOp, BatchOperation
from orchestrator.exceptions import ReplyTimeoutError, WorkflowNotFoundError
from orchestrator.visibility.store import RunRow

pytestmark = pytest.mark.integration
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FILTER = BatchFilter(workflow_type="t")


def row(i: int) -> RunRow:
    return RunRow(
        workflow_id=f"w-{i}", run_id=f"r-{i}", workflow_type="t", task_queue="q",
        status="RUNNING", start_time=T0, close_time=None, current_step=None,
        history_length=3, search_attributes={}, memo={}, error=None, parked=None,
        paused=None, build_ids=[], shard=0, updated_at=T0,
    )


class FakeHandle:
    def __init__(self, client: FakeClient, workflow_id: str, run_id: str | None) -> None:
        self.client, self.key = client, f"{workflow_id}/{run_id}"

    def _act(self, what: str) -> None:
        self.client.calls.append((what, self.key))
        failure = self.client.failing.get(self.key)
        if failure is not None:
            raise failure

    def signal(
        self, name: str, *args: Any, wait: float | None = None, request_id: str | None = None
    ) -> None:
        self._act(f"signal {name} {args} {request_id}")

    def cancel(self, reason: str = "", *, wait: float | None = None) -> None:
        self._act("cancel")

    def reset(self, reason: str = "", **_: Any) -> str:
        self._act("reset")
        return "new"


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.failing: dict[str, Exception] = {}

    def get_handle(self, workflow_id: str, run_id: str | None = None) -> FakeHandle:
        return FakeHandle(self, workflow_id, run_id)


@contextmanager
def attempt(n: int) -> Iterator[None]:
    info = activity.ActivityInfo("batch:b", "run", "saga.batch", "saga.batch.page", 3, n,
                                 "saga.batch", T0, T0)
    with activity.running(info, lambda _: None):
        yield


@pytest.fixture
def pages(database: str, monkeypatch: pytest.MonkeyPatch) -> tuple[BatchPages, FakeClient]:
    client = FakeClient()
    pages = BatchPages(lambda: client, database)  # type: ignore[arg-type,return-value]
    listing = [row(i) for i in range(5)]

    def list_page(
        filter: BatchFilter, cursor: str | None, size: int, op: BatchOp
    ) -> tuple[list[RunRow], str | None]:
        start = 0 if cursor is None else int(cursor) + 1
        page = listing[start:start + size]
        return page, (str(start + size - 1) if start + size < len(listing) else None)

    monkeypatch.setattr(pages, "list_page", list_page)
    return pages, client


def test_a_page_run_again_touches_nothing_twice(pages: tuple[BatchPages, FakeClient]) -> None:
    batch, client = pages
    op = BatchOperation(BatchOp.SIGNAL, signal_name="poke", signal_args=["x"])
    with attempt(1):
        first = batch.page("b", op, FILTER, None, 3, 0)
        again = batch.page("b", op, FILTER, None, 3, 0)
        last = batch.page("b", op, FILTER, first.next_cursor, 3, 0)
    assert (first.listed, first.next_cursor, first.totals.done) == (3, "2", 3)
    assert (again.listed, again.totals.done) == (3, 3)
    assert (last.listed, last.next_cursor, last.totals.done) == (2, None, 5)
    assert [key for _, key in client.calls] == [f"w-{i}/r-{i}" for i in range(5)]
    other = BatchOperation(BatchOp.CANCEL)
    with attempt(1):
        assert batch.page("b2", other, FILTER, None, 3, 0).totals.done == 3, "per batch"


def test_a_claim_without_outcome_is_sent_again_a_signal_with_its_stable_request_id(
    pages: tuple[BatchPages, FakeClient], database: str
) -> None:
    batch, client = pages
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(ledger_ddl())
        for batch_id in ("sig", "can"):
            conn.execute(f"INSERT INTO {LEDGER_TABLE} (batch_id, workflow_id, run_id, outcome)"
                         " VALUES (%s, 'w-1', 'r-1', 'claimed')", [batch_id])
    with attempt(2):
        sig = batch.page("sig", BatchOperation(BatchOp.SIGNAL, signal_name="p"), FILTER,
                         None, 3, 0)
        can = batch.page("can", BatchOperation(BatchOp.CANCEL), FILTER, None, 3, 0)
    assert (sig.totals.done, sig.totals.in_doubt) == (3, 0)
    assert (can.totals.done, can.totals.in_doubt) == (3, 0)
    signals = [(what, k) for what, k in client.calls if what.startswith("signal")]
    assert signals == [
        (f"signal p () {signal_request_id('sig', f'r-{i}')}", f"w-{i}/r-{i}") for i in range(3)
    ]
    assert signal_request_id("sig", "r-1") == "batch/sig/r-1"  # what the dead attempt sent
    assert [k for what, k in client.calls if what == "cancel"] == [f"w-{i}/r-{i}" for i in range(3)]


def test_refusals_are_skipped_and_silence_fails_the_attempt_then_the_run(
    pages: tuple[BatchPages, FakeClient],
) -> None:
    batch, client = pages
    client.failing["w-0/r-0"] = WorkflowNotFoundError("no such workflow run: 'w-0'")
    client.failing["w-1/r-1"] = ReplyTimeoutError("no reply")
    op = BatchOperation(BatchOp.RESET, bad_build="bad")
    with attempt(1), pytest.raises(ReplyTimeoutError):
        batch.page("b", op, FILTER, None, 3, 0)
    with attempt(3):
        done = batch.page("b", op, FILTER, None, 3, 0)
    t = done.totals
    assert (t.done, t.skipped, t.failed, t.in_doubt) == (1, 1, 1, 0)
    assert t.skipped_sample == {"w-0/r-0": "no such workflow run: 'w-0'"}
    assert list(t.failed_sample) == ["w-1/r-1"] and "no answer" in t.failed_sample["w-1/r-1"]
    assert client.calls.count(("reset", "w-0/r-0")) == 1, "a refusal is final"
