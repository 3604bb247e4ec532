"""Outcomes of activity attempts sent by task token (async completion), for both clients.

No I/O here: each function builds the command an activity worker would have sent
for the attempt the token names. With ``reply`` (the clients' default) the command
carries a fresh ``request_id``, and the shard answers on ``<prefix>.replies`` whether
that attempt was the running one (an ``ActivityNotRunning`` refusal says why not;
nothing changed then). Without, the send is fire-and-forget, as a worker's is.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from orchestrator.client._common import CommandBuilder, OutgoingCommand
from orchestrator.engine.events import Failure
from orchestrator.serde.records import (
    ActivityHeartbeat,
    ActivityTaskCompleted,
    ActivityTaskFailed,
)
from orchestrator.task_token import TaskToken

__all__ = ["complete_command", "fail_command", "heartbeat_command"]


def complete_command(
    builder: CommandBuilder, token: str, result: Any, *, reply: bool = True
) -> OutgoingCommand:
    """``ActivityTaskCompleted`` with ``result`` for the attempt ``token`` names."""
    t = TaskToken.decode(token)
    request_id = uuid.uuid4().hex if reply else None
    command = ActivityTaskCompleted(
        workflow_id=t.workflow_id,
        run_id=t.run_id,
        activity_seq=t.activity_seq,
        attempt=t.attempt,
        result=builder.converter.to_payload(result),
        identity=builder.source,
        request_id=request_id,
        token_signature=t.signature,
    )
    return builder._out(command, request_id or uuid.uuid4().hex, None)


def fail_command(
    builder: CommandBuilder,
    token: str,
    message: str,
    *,
    error_type: str,
    non_retryable: bool,
    details: Sequence[Any],
    reply: bool = True,
) -> OutgoingCommand:
    """``ActivityTaskFailed`` for the attempt ``token`` names; the workflow's retry
    policy decides what follows, as for an error the activity raised."""
    t = TaskToken.decode(token)
    request_id = uuid.uuid4().hex if reply else None
    if not error_type:
        raise ValueError("error_type must not be empty")
    failure = Failure(
        message=message,
        type=error_type,
        non_retryable=non_retryable,
        details=builder.converter.to_payloads(list(details)),
    )
    command = ActivityTaskFailed(
        workflow_id=t.workflow_id,
        run_id=t.run_id,
        activity_seq=t.activity_seq,
        attempt=t.attempt,
        failure=failure,
        identity=builder.source,
        request_id=request_id,
        token_signature=t.signature,
    )
    return builder._out(command, request_id or uuid.uuid4().hex, None)


def heartbeat_command(
    builder: CommandBuilder, token: str, details: Sequence[Any], *, reply: bool = True
) -> OutgoingCommand:
    """``ActivityHeartbeat`` with ``details`` for the attempt ``token`` names."""
    t = TaskToken.decode(token)
    request_id = uuid.uuid4().hex if reply else None
    command = ActivityHeartbeat(
        workflow_id=t.workflow_id,
        run_id=t.run_id,
        activity_seq=t.activity_seq,
        attempt=t.attempt,
        details=builder.converter.to_payloads(list(details)),
        request_id=request_id,
        token_signature=t.signature,
    )
    return builder._out(command, request_id or uuid.uuid4().hex, None)
