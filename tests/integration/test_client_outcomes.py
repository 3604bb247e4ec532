"""What a caller is told when a run does not complete, or cannot start, or is closed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import workflow
from orchestrator.client import AsyncClient, Client, WorkflowNotFoundError, WorkflowStatus
from orchestrator.exceptions import ApplicationError, QueryError, WorkflowFailedError
from orchestrator.log.dlq_tools import read_dead_letters
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "outcomes"


@workflow.defn(name="outcomes.sleeper")
class Sleeper:
    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext) -> str:
        await ctx.sleep(timedelta(hours=1))
        return "woke"

    @workflow.query
    def state(self) -> str:
        return "sleeping"


@workflow.defn(name="outcomes.quick")
async def quick(ctx: workflow.WorkflowContext, n: int) -> int:
    await ctx.sleep(timedelta(milliseconds=10))
    return n * 5


@dataclass(frozen=True)
class Receipt:
    order_id: str
    total: int


@workflow.defn(name="outcomes.receipt")
async def receipt(ctx: workflow.WorkflowContext, order_id: str, items: list[int]) -> Receipt:
    return Receipt(order_id, sum(items))


@pytest.fixture
def client(kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str) -> Iterator[Client]:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    options = ProcessorOptions(worker_id=f"{topic_prefix}-engine", transaction_timeout_ms=5000)
    with (
        EngineWorker(kafka_config, layout, [Sleeper, quick, receipt], options=options),
        Client(kafka_config, layout=layout) as c,
    ):
        yield c


def test_cancelled_and_terminated_runs_say_so_to_the_waiting_caller(client: Client) -> None:
    cancelled = client.start(Sleeper, id="o-cancel", task_queue=QUEUE, wait_started=20)
    terminated = client.start(Sleeper, id="o-term", task_queue=QUEUE, wait_started=20)
    assert cancelled.query("state", timeout=20) == "sleeping"
    cancelled.cancel("customer changed their mind")
    terminated.terminate("operator stop")

    with pytest.raises(WorkflowFailedError) as first:
        cancelled.result(timeout=20)
    assert first.value.status == "CANCELLED"
    assert "cancelled" in str(first.value)
    with pytest.raises(WorkflowFailedError) as second:
        terminated.result(timeout=20)
    assert second.value.status == "TERMINATED"
    assert "operator stop" in str(second.value)

    # a closed run answers queries with a clear refusal, not an engine error
    with pytest.raises(QueryError, match="CANCELLED; queries are answered by open runs"):
        cancelled.query("state", timeout=20)


def test_start_of_an_unknown_type_is_refused_at_once_and_kept_in_the_dlq(
    client: Client, kafka_config: dict[str, Any], topic_prefix: str
) -> None:
    began = time.monotonic()
    with pytest.raises(ApplicationError, match=r"unknown workflow type 'outcomes\.nope'"):
        client.start("outcomes.nope", id="o-unknown", task_queue=QUEUE, wait_started=20)
    assert time.monotonic() - began < 15  # a reply, not the timeout
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    letters = list(read_dead_letters(kafka_config, layout.dlq))
    assert [letter.key for letter in letters] == [b"o-unknown"]
    assert "unknown workflow type" in letters[0].reason


def test_a_late_client_reads_a_closed_run_from_the_shard_that_owns_it(
    client: Client, kafka_config: dict[str, Any], topic_prefix: str
) -> None:
    handle = client.start(
        quick, 25, id="o-quick", task_queue=QUEUE, search_attributes={"customer": "c-1"}
    )
    assert handle.result(timeout=20) == 125
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    with Client(kafka_config, layout=layout) as late:  # it never saw the RESULT reply
        old = late.get_handle("o-quick")
        assert old.result(timeout=20, result_type=int) == 125
        described = old.describe(timeout=20)
        assert described.status is WorkflowStatus.COMPLETED
        assert described.search_attributes == {"customer": "c-1"}
        assert described.close_time is not None
        found = late.fetch_history("o-quick", timeout=20)
        assert found.run_id == described.run_id
        assert [e.seq for e in found.events] == list(range(1, described.last_seq + 1))
        names = [type(e).__name__ for e in found.events]
        assert names[0] == "WorkflowStarted"
        assert names[-1] == "WorkflowCompleted"
        assert "TimerFired" in names
        with pytest.raises(WorkflowNotFoundError):
            late.get_handle("o-never").describe(timeout=20)
        assert late.fetch_history("o-never", timeout=20).events == []


async def test_the_async_client_reads_describe_result_and_history(
    client: Client, kafka_config: dict[str, Any], topic_prefix: str
) -> None:
    client.start(quick, 2, id="o-async", task_queue=QUEUE).result(timeout=20)
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    async with await AsyncClient.connect(kafka_config, layout=layout) as late:
        handle = late.get_handle("o-async")
        assert await handle.result(timeout=20) == 10
        described = await handle.describe(timeout=20)
        assert described.status is WorkflowStatus.COMPLETED
        found = await late.fetch_history("o-async", timeout=20)
        assert [type(e).__name__ for e in found.events][-1] == "WorkflowCompleted"


async def test_a_handle_started_from_a_typed_workflow_returns_its_return_type(
    client: Client, kafka_config: dict[str, Any], topic_prefix: str
) -> None:
    # the handle's type says Receipt (tests/typing/typed_edges.py checks that with mypy);
    # this checks the value is one, through both clients, and by name as plain JSON
    handle = client.start(receipt, args=["r-1", [2, 3]], id="o-receipt", task_queue=QUEUE)
    got: Receipt = handle.result(timeout=20)
    assert got == Receipt("r-1", 5)
    assert client.get_handle("o-receipt").result(timeout=20) == {"order_id": "r-1", "total": 5}
    assert client.get_handle("o-receipt", result_type=Receipt).result(timeout=20) == got
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    async with await AsyncClient.connect(kafka_config, layout=layout) as aclient:
        ahandle = await aclient.start(
            receipt, args=["r-2", [4]], id="o-receipt-2", task_queue=QUEUE
        )
        assert await ahandle.result(timeout=20) == Receipt("r-2", 4)
        by_name = aclient.get_handle("o-receipt-2", result_type=Receipt)
        assert await by_name.result(timeout=20) == Receipt("r-2", 4)
