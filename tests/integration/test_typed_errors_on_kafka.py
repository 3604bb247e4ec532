"""What a caller catches through the real client: the same exception classes as in
the test environment, typed refusals, remote stack traces, compensation errors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import Client, IdReusePolicy
from orchestrator.exceptions import (
    ApplicationError,
    CompensationError,
    WorkflowAlreadyStartedError,
    WorkflowClosedError,
    WorkflowFailedError,
    WorkflowNotFoundError,
)
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.retry import RetryPolicy
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "typed"
TWICE = RetryPolicy(initial=timedelta(milliseconds=50), max_attempts=2)


@activity.defn(name="typed.reserve")
async def reserve(item: str) -> str:
    return f"reserved {item}"


@activity.defn(name="typed.release")
async def release(item: str) -> None:
    raise ApplicationError(f"warehouse refuses to release {item}", type="ReleaseRefused")


@workflow.defn(name="typed.declines")
async def declines(ctx: workflow.WorkflowContext, card: str) -> None:
    raise ApplicationError(f"card {card} declined", type="CardDeclined", non_retryable=True)


@workflow.defn(name="typed.stuck_compensation")
async def stuck_compensation(ctx: workflow.WorkflowContext, item: str) -> None:
    saga = ctx.saga()
    await saga.step(reserve, item, compensate=release, compensation_retry=TWICE)
    raise ApplicationError("payment failed", type="PaymentFailed", non_retryable=True)


def test_a_caller_catches_typed_errors_with_remote_stack_traces(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    options = ProcessorOptions(worker_id=f"{topic_prefix}-engine", transaction_timeout_ms=5000)
    with (
        EngineWorker(kafka_config, layout, [declines, stuck_compensation], options=options),
        ActivityWorker(kafka_config, QUEUE, [reserve, release], layout=layout),
        Client(kafka_config, layout=layout) as client,
    ):
        declined = client.start(declines, "4242", id="typed-1", task_queue=QUEUE)
        with pytest.raises(WorkflowFailedError) as failed:
            declined.result(timeout=60)
        assert failed.value.status == "FAILED"
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "CardDeclined"
        assert "in declines" in cause.remote_stack_trace, "raised in the workflow's code"

        stuck = client.start(stuck_compensation, "lamp", id="typed-2", task_queue=QUEUE)
        with pytest.raises(WorkflowFailedError) as comp:
            stuck.result(timeout=60)
        assert comp.value.status == "COMPENSATION_FAILED"
        assert isinstance(comp.value.cause, CompensationError)
        assert isinstance(comp.value.cause.original, ApplicationError)
        assert comp.value.cause.original.type == "PaymentFailed"
        [gave_up] = comp.value.compensation_errors  # the release, after its two attempts
        assert "failed after 2 attempt(s)" in str(gave_up)
        refused = gave_up.__cause__
        assert isinstance(refused, ApplicationError) and refused.type == "ReleaseRefused"
        assert "warehouse refuses to release lamp" in str(refused)
        assert "in release" in refused.remote_stack_trace, "the activity worker's trace"

        # refusals of commands are typed (and still ApplicationErrors of that type)
        with pytest.raises(WorkflowAlreadyStartedError):
            client.start(
                declines, "1", id="typed-1", task_queue=QUEUE,
                id_reuse_policy=IdReusePolicy.REJECT_DUPLICATE, wait_started=30,
            )
        with pytest.raises(WorkflowNotFoundError):
            client.get_handle("typed-nobody").signal("go", wait=30)
        with pytest.raises(WorkflowClosedError) as closed:
            client.get_handle("typed-1").cancel("too late", wait=30)
        assert closed.value.type == "WorkflowClosed"
