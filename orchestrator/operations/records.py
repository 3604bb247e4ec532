"""The records the operation activities and the handler workflow exchange (JSON through
the default payload converter), and the names of the built-ins."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CALLBACK_ACTIVITY",
    "CANCEL_ACTIVITY",
    "HANDLER_WORKFLOW",
    "RESOLVE_ACTIVITY",
    "START_ACTIVITY",
    "STATES",
    "STATUS_ACTIVITY",
    "CallbackRequest",
    "CancelRequest",
    "HandlerInput",
    "Outcome",
    "StartRequest",
    "operation_id_for",
    "outcome_signal",
]

START_ACTIVITY = "saga.operation.start"
CANCEL_ACTIVITY = "saga.operation.cancel"
STATUS_ACTIVITY = "saga.operation.status"
CALLBACK_ACTIVITY = "saga.operation.callback"
RESOLVE_ACTIVITY = "saga.operation.resolve"
HANDLER_WORKFLOW = "saga.operation.handler"
STATES = ("succeeded", "failed", "cancelled")
"""The final states of an operation (``running`` before)."""


def outcome_signal(operation_key: str) -> str:
    """The signal that carries an operation's outcome to the run waiting for it."""
    return f"saga.operation.outcome/{operation_key}"


def operation_id_for(service: str, operation: str, request_id: str) -> str:
    """The handler's operation id (and workflow id of its handler run) for a request id:
    the same request always maps to the same run. The format must never change, or a
    start retried across a deploy would start a second run."""
    digest = hashlib.sha256(f"{service}\n{operation}\n{request_id}".encode()).hexdigest()
    return f"op-{digest[:32]}"


@dataclass(frozen=True, slots=True)
class StartRequest:
    """What ``saga.operation.start`` sends: the run and key make the callback token."""

    endpoint: str
    operation: str
    input: Any
    request_id: str
    workflow_id: str
    run_id: str
    operation_key: str


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """The operation that ``saga.operation.cancel`` cancels or
    ``saga.operation.status`` reads."""

    endpoint: str
    operation: str
    operation_id: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """An operation's final state: its result, or its failure (``message``, ``type``,
    optional ``cause``: the same shape, the chain of causes)."""

    state: str
    result: Any = None
    failure: Any = None


@dataclass(frozen=True, slots=True)
class HandlerInput:
    """The handler workflow's input: what to run and whom to call back. An empty
    ``workflow`` (a start over Kafka, whose caller does not know it) is resolved by the
    handler run with ``saga.operation.resolve``."""

    service: str
    operation: str
    workflow: str
    task_queue: str
    input: Any
    callback_url: str
    callback_token: str


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """What ``saga.operation.callback`` posts (signed) to ``url``."""

    url: str
    callback_token: str
    operation_id: str
    outcome: Outcome
