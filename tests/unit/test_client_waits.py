"""How long the clients wait: a closed AsyncClient wakes its waiting callers, and
``result(timeout=...)`` after COMPENSATION_FAILED stays within its timeout.

The clients run on fakes of their Kafka producer and reply listener: no broker
ever answers, so every wait ends by close or by timeout."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.client import AsyncClient, Client
from orchestrator.client._common import CommandBuilder, ReplyBuffer
from orchestrator.converter import DataConverter
from orchestrator.engine.events import Failure
from orchestrator.exceptions import (
    CompensationError,
    ReplyTimeoutError,
    WorkflowFailedError,
)
from orchestrator.log.topics import TopicLayout
from orchestrator.serde.records import Reply, ReplyKind
from orchestrator.serde.wire import WireFormat

WIRE = WireFormat()


def builder() -> CommandBuilder:
    return CommandBuilder(WIRE, DataConverter(), 1, source="/test/client")


def compensation_failed(workflow_id: str) -> Reply:
    """The RESULT reply of a run that ended COMPENSATION_FAILED."""
    return Reply(
        correlation_id=f"result/{workflow_id}",
        kind=ReplyKind.RESULT,
        workflow_id=workflow_id,
        run_id="run-1",
        ok=False,
        error=Failure(
            message="compensation failed",
            type="CompensationError",
            cause=Failure(message="card declined", type="Declined"),
        ),
    )


# --- the asyncio client ------------------------------------------------------------------


class FakeAioProducer:
    async def send_and_wait(self, topic: str, **_: Any) -> None:
        return None

    async def stop(self) -> None:
        return None


class SilentListener:
    """A reply listener on a topic nobody writes to."""

    async def getmany(self, *partitions: Any, timeout_ms: int = 0) -> dict[Any, Any]:
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def stop(self) -> None:
        return None


def async_client() -> AsyncClient:
    return AsyncClient(
        FakeAioProducer(),  # type: ignore[arg-type]
        SilentListener(),  # type: ignore[arg-type]
        {},
        TopicLayout(prefix="t"),
        builder(),
        kafka_config={},
    )


@pytest.mark.parametrize("wait", ["query", "result", "update"])
async def test_closing_the_async_client_ends_calls_waiting_without_timeout(wait: str) -> None:
    client = async_client()
    handle = client.get_handle("order-1")
    calls = {
        "query": lambda: handle.query("status", timeout=None),  # type: ignore[arg-type]
        "result": handle.result,
        "update": lambda: handle.update("approve", timeout=None),  # type: ignore[arg-type]
    }
    waiting = asyncio.ensure_future(calls[wait]())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await client.close()
    with pytest.raises(ReplyTimeoutError, match="client closed"):
        await asyncio.wait_for(waiting, 5)


async def test_a_call_after_close_does_not_wait_for_a_reply() -> None:
    client = async_client()
    await client.close()
    await client.close()  # a second close changes nothing
    with pytest.raises(ReplyTimeoutError, match="client closed"):
        await asyncio.wait_for(client.get_handle("order-1").query("status", timeout=None), 5)  # type: ignore[arg-type]


async def test_async_result_after_compensation_failed_keeps_to_its_timeout() -> None:
    client = async_client()
    try:
        handle = client.get_handle("order-1")
        async with client._arrived:
            client._replies.offer(compensation_failed("order-1"))
        started = time.monotonic()
        with pytest.raises(WorkflowFailedError) as info:
            await asyncio.wait_for(handle.result(timeout=0.3), 5)
        assert time.monotonic() - started < 2
        assert info.value.status == "COMPENSATION_FAILED"
        assert info.value.compensation_errors == []  # history could not be read in time
        assert isinstance(info.value.cause, CompensationError)
    finally:
        await client.close()


# --- the blocking client -------------------------------------------------------------------


class FakeProducer:
    """Acknowledges every command on flush."""

    def __init__(self) -> None:
        self._pending: list[Callable[[Any, Any], None]] = []

    def produce(self, topic: str, *, on_delivery: Callable[[Any, Any], None], **_: Any) -> None:
        self._pending.append(on_delivery)

    def flush(self, timeout: float = -1) -> int:
        for delivered in self._pending:
            delivered(None, None)
        self._pending.clear()
        return 0


def blocking_client() -> Client:
    """A Client whose producer is a fake and whose replies come from the test."""
    client = Client.__new__(Client)
    client._kafka = {}
    client.layout = TopicLayout(prefix="t")
    client._producer = FakeProducer()
    client.builder = builder()
    client._replies = ReplyBuffer(topic=client.layout.replies)
    client._cond = threading.Condition()
    client._closed = threading.Event()
    return client


def test_result_after_compensation_failed_keeps_to_its_timeout() -> None:
    client = blocking_client()
    handle = client.get_handle("order-1")
    client._replies.offer(compensation_failed("order-1"))
    started = time.monotonic()
    with pytest.raises(WorkflowFailedError) as info:
        handle.result(timeout=0.3)
    assert time.monotonic() - started < 2
    assert info.value.status == "COMPENSATION_FAILED"
    assert info.value.compensation_errors == []
    assert isinstance(info.value.cause, CompensationError)
