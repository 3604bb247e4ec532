"""The clients' confirmed commands on a real engine: start(wait_started=) gives the run
id, signal/cancel/terminate(wait=) surface the shard's refusals."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.client import AsyncClient, Client, IdReusePolicy
from orchestrator.exceptions import ApplicationError
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.http_sagas import Account

pytestmark = pytest.mark.integration


@pytest.fixture
def layout(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str
) -> Iterator[TopicLayout]:
    layout = TopicLayout(prefix=topic_prefix, shards=2)
    ensure_topics(admin, layout)
    options = ProcessorOptions(worker_id=f"{topic_prefix}-w", transaction_timeout_ms=5000)
    with EngineWorker(kafka_config, layout, [Account], options=options):
        yield layout


def refusal(info: pytest.ExceptionInfo[ApplicationError]) -> str:
    return info.value.type


def test_sync_client_confirms_and_surfaces_refusals(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    with Client(kafka_config, layout=layout) as client:
        first = client.start(Account, 5, id="c-1", task_queue="q", wait_started=20)
        again = client.start(Account, 6, id="c-1", task_queue="q", wait_started=20)
        assert first.run_id is not None and again.run_id == first.run_id
        first.signal("deposit", 2, wait=20)
        with pytest.raises(ApplicationError) as info:
            first.signal("deposit", "two", wait=20)
        assert refusal(info) == "CommandRejected"
        first.signal("close", wait=20)
        assert first.result(timeout=20) == 7
        with pytest.raises(ApplicationError) as info:
            first.cancel(wait=20)
        assert refusal(info) == "WorkflowClosed"
        with pytest.raises(ApplicationError) as info:
            client.get_handle("c-404").terminate("x", wait=20)
        assert refusal(info) == "WorkflowNotFound"
        with pytest.raises(ApplicationError) as info:
            client.start(
                Account,
                1,
                id="c-1",
                task_queue="q",
                id_reuse_policy=IdReusePolicy.REJECT_DUPLICATE,
                wait_started=20,
            )
        assert refusal(info) == "WorkflowAlreadyStarted"


async def test_async_client_confirms_and_surfaces_refusals(
    kafka_config: dict[str, Any], layout: TopicLayout
) -> None:
    async with await AsyncClient.connect(kafka_config, layout=layout) as client:
        handle = await client.start(Account, 1, id="a-1", task_queue="q", wait_started=20)
        assert handle.run_id is not None
        await handle.terminate("operator", wait=20)
        with pytest.raises(ApplicationError) as info:
            await handle.signal("deposit", 1, wait=20)
        assert refusal(info) == "WorkflowClosed"
        with pytest.raises(ApplicationError) as info:
            await client.get_handle("a-404").cancel(wait=20)
        assert refusal(info) == "WorkflowNotFound"
