"""Scenarios of the built-in ``saga.operation.handler`` workflow, for saved histories
(files ``operation_<stem>.json``), recorded in memory by ``python -m
tests.replay.record_operation_histories``. Operations being handled are executions in
production: every saved history must replay against the current handler workflow
(``test_replay_operations.py``).

The handled workflow is a sample child; the callback and resolve activities are fakes
whose results are in the histories, so replay needs only the workflows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator import activity, workflow
from orchestrator.engine import events as ev
from orchestrator.exceptions import ApplicationError
from orchestrator.operations.handler import OperationHandlerWorkflow
from orchestrator.operations.records import (
    CALLBACK_ACTIVITY,
    RESOLVE_ACTIVITY,
    CallbackRequest,
    HandlerInput,
)
from orchestrator.testing import WorkflowEnvironment

START = datetime(2026, 12, 4, 12, tzinfo=UTC)


@workflow.defn(name="billing.charge")
async def charge(ctx: workflow.WorkflowContext, req: dict[str, Any]) -> dict[str, Any]:
    """Takes an hour; declines amounts over 1000."""
    await ctx.sleep(timedelta(hours=1))
    if req["amount"] > 1000:
        raise ApplicationError("card declined", type="Declined", non_retryable=True)
    return {"receipt": f"r-{req['order']}"}


#: what a replayer needs for every handler history (the child replays on its own)
WORKFLOWS: list[Any] = [OperationHandlerWorkflow, charge]


@activity.defn(name=CALLBACK_ACTIVITY)
async def callback(req: CallbackRequest) -> None:
    return None


@activity.defn(name=RESOLVE_ACTIVITY)
async def resolve(req: HandlerInput) -> list[str]:
    return ["billing.charge", "billing"]


def _input(order: str, amount: int) -> HandlerInput:
    return HandlerInput("billing", "charge", "billing.charge", "billing",
                        {"order": order, "amount": amount},
                        "https://shop.example/v1/operation-callbacks", "op1.token.mac")


async def in_memory_histories() -> dict[str, list[ev.Event]]:
    """Each scenario's handler history, by file stem."""
    out: dict[str, list[ev.Event]] = {}
    env = WorkflowEnvironment(workflows=WORKFLOWS, activities=[callback, resolve],
                              start_time=START)
    async with env:
        handle = await env.start_workflow(OperationHandlerWorkflow, _input("o-1", 42),
                                          id="op-succeeded")
        assert (await handle.result()).state == "succeeded"
        out["operation_handler_succeeded"] = handle.history

        handle = await env.start_workflow(OperationHandlerWorkflow, _input("o-2", 5000),
                                          id="op-failed")
        assert (await handle.result()).state == "failed"
        out["operation_handler_failed"] = handle.history

        handle = await env.start_workflow(OperationHandlerWorkflow, _input("o-3", 7),
                                          id="op-cancelled")
        await env.sleep(timedelta(minutes=5))
        await handle.cancel("the caller was cancelled")
        assert (await handle.result()).state == "cancelled"
        out["operation_handler_cancelled"] = handle.history

        # started over Kafka: the caller names no workflow, the handler run resolves it
        kafka = HandlerInput("billing", "charge", "", "", {"order": "o-4", "amount": 9},
                             "kafka:shop", "op1.token.mac")
        handle = await env.start_workflow(OperationHandlerWorkflow, kafka, id="op-kafka")
        assert (await handle.result()).result == {"receipt": "r-o-4"}
        out["operation_handler_kafka_succeeded"] = handle.history
    return out
