"""A handler run started over Kafka (no workflow named) resolves its workflow with the
built-in ``saga.operation.resolve`` activity: an operation not handled here, or a
caller not in the allow-list, ends the operation failed without running anything."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import workflow
from orchestrator.operations.activities import operation_activities
from orchestrator.operations.config import CallerEntry, OperationHandler, OperationsConfig
from orchestrator.operations.handler import OperationHandlerWorkflow
from orchestrator.operations.records import HandlerInput, Outcome
from orchestrator.testing import WorkflowEnvironment

SECRET = "0123456789abcdef-secret"
ran: list[str] = []


@workflow.defn(name="billing.charge")
async def charge(ctx: workflow.WorkflowContext, req: dict[str, Any]) -> str:
    ran.append(req["order"])
    return f"r-{req['order']}"


CONFIG = OperationsConfig(
    handlers={"billing/charge": OperationHandler("billing.charge", "billing")},
    callers=(CallerEntry("", SECRET, kafka={"bootstrap.servers": "unused:1"},
                         topic_prefix="shop"),),
)


async def _outcome(service: str, operation: str, callback: str) -> Outcome:
    req = HandlerInput(service, operation, "", "", {"order": "o-1"}, callback, "op1.x.y")
    async with WorkflowEnvironment(workflows=[OperationHandlerWorkflow, charge],
                                   activities=operation_activities(CONFIG)) as env:
        handle = await env.start_workflow(OperationHandlerWorkflow, req, id="op-1")
        outcome: Outcome = await handle.result()
        return outcome


@pytest.mark.parametrize(
    ("operation", "callback", "kind"),
    [("refund", "kafka:shop", "OperationNotFound"),
     ("charge", "kafka:elsewhere", "CallbackNotAllowed")],
)
async def test_a_refused_resolution_fails_the_operation(
    operation: str, callback: str, kind: str
) -> None:
    ran.clear()
    outcome = await _outcome("billing", operation, callback)
    assert outcome.state == "failed"
    assert outcome.failure["type"] == kind
    assert ran == [], "nothing ran"
