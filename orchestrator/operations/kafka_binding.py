"""The Kafka binding of the operations contract, for a caller and a handler that are
both deployments of this orchestrator on Kafka (docs/operations-api.md#the-kafka-binding).

Start, cancel and status are commands on the handler deployment's commands topic (a
start of the built-in handler workflow, its id derived from the request id; a cancel
of that run; a read of its snapshot); the callback is a signal command on the
caller deployment's commands topic. Each call connects a client to the other
deployment for its length: these calls are rare next to the work they stand for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from orchestrator.client import AsyncClient
from orchestrator.exceptions import ApplicationError, WorkflowFailedError, WorkflowNotFoundError
from orchestrator.log.topics import TopicLayout
from orchestrator.operations.config import CallerEntry, Endpoint
from orchestrator.operations.records import (
    HANDLER_WORKFLOW,
    CallbackRequest,
    CancelRequest,
    HandlerInput,
    Outcome,
    operation_id_for,
    outcome_signal,
)
from orchestrator.operations.signing import CallbackToken, InvalidCallbackError
from orchestrator.serde.records import IdReusePolicy

__all__ = ["call_back", "cancel", "start", "status"]

_WAIT_S = 10.0
_GONE = ("WorkflowNotFound", "WorkflowClosed")


@asynccontextmanager
async def _client(kafka: Mapping[str, str], prefix: str) -> AsyncIterator[AsyncClient]:
    client = await AsyncClient.connect(dict(kafka), layout=TopicLayout(prefix=prefix))
    try:
        yield client
    finally:
        await client.close()


def _final(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


async def start(
    ep: Endpoint, operation: str, input: Any, *, request_id: str, callback: str, token: str
) -> list[Any]:
    """Start the handler run on ``ep``'s deployment (once per request id):
    ``["running", operation_id, None]``."""
    operation_id = operation_id_for(ep.service, operation, request_id)
    async with _client(ep.kafka, ep.topic_prefix) as client:
        try:
            await client.start(
                HANDLER_WORKFLOW,
                HandlerInput(ep.service, operation, "", "", input, callback, token),
                id=operation_id, task_queue=ep.task_queue,
                id_reuse_policy=IdReusePolicy.REJECT_DUPLICATE,
                memo={"operation": f"{ep.service}/{operation}"}, wait_started=_WAIT_S,
            )
        except ApplicationError as exc:
            if exc.type != "WorkflowAlreadyStarted":
                raise
    return ["running", operation_id, None]


async def cancel(ep: Endpoint, req: CancelRequest) -> None:
    """Cancel the handler run; one that has ended (or never started) is fine."""
    async with _client(ep.kafka, ep.topic_prefix) as client:
        try:
            await client.get_handle(req.operation_id).cancel(
                "operation cancel requested", wait=_WAIT_S
            )
        except ApplicationError as exc:
            if exc.type not in _GONE:
                raise


async def status(ep: Endpoint, req: CancelRequest) -> list[Any]:
    """``[state, result, failure]`` of the handler run (an unknown one: failed)."""
    unknown = ["failed", None, {"message": f"the handler knows no operation "
                                           f"{req.operation_id!r}", "type": "NotFound"}]
    async with _client(ep.kafka, ep.topic_prefix) as client:
        handle = client.get_handle(req.operation_id, result_type=Outcome)
        try:
            described = await handle.describe(timeout=_WAIT_S)
        except WorkflowNotFoundError:
            return unknown
        if (described.workflow_type != HANDLER_WORKFLOW
                or described.memo.get("operation") != f"{ep.service}/{req.operation}"):
            return unknown
        if described.is_open:
            return ["running", None, None]
        try:
            outcome: Outcome = await handle.result(timeout=_WAIT_S)
        except WorkflowFailedError as exc:  # the handler run was terminated or failed
            return ["failed", None, {"message": str(exc), "type": "HandlerRunFailed"}]
    return [outcome.state, outcome.result, outcome.failure]


async def call_back(caller: CallerEntry, req: CallbackRequest) -> None:
    """Signal the outcome to the run the callback token names, on the caller's
    commands topic, after checking the token's MAC under the caller's secret."""
    try:
        token, body, mac = CallbackToken.read(req.callback_token)
    except InvalidCallbackError as exc:
        raise _final(f"callback refused: {exc}", "OperationCallbackRefused") from None
    if not CallbackToken.verify(caller.secret, body, mac):
        raise _final("callback refused: the callback token does not verify",
                     "OperationCallbackRefused")
    outcome = req.outcome
    async with _client(caller.kafka, caller.topic_prefix) as client:
        handle = client.get_handle(token.workflow_id, token.run_id)
        try:
            await handle.signal(
                outcome_signal(token.operation_key), outcome.state, outcome.result,
                outcome.failure, wait=_WAIT_S, request_id=f"{req.operation_id}/outcome",
            )
        except ApplicationError as exc:
            if exc.type in _GONE:  # the waiting run is gone or closed: nobody to tell
                raise _final(f"callback not delivered: {exc.type}", exc.type) from None
            raise
