"""Answers to activity outcomes sent by task token, and their signature check.

A client completing, failing or heartbeating an attempt by its token sets the
command's ``request_id``; the shard then says on ``<prefix>.replies`` (kind
``ACTIVITY``) whether that attempt was the running one, in the transaction that
applies it. Activity workers set no request id and get no reply, so the replies
topic carries nothing more for the ordinary path.

With a task-token key, the shard signs each attempt it dispatches and refuses any
outcome (a worker's or a token holder's) whose ``token_signature`` is not that
attempt's: an edited token cannot reach another attempt. Pure functions.
"""

from __future__ import annotations

from orchestrator.engine.activities import Activities
from orchestrator.engine.events import Failure
from orchestrator.serde import records as rec
from orchestrator.task_token import InvalidTaskTokenError, TaskToken, signature_matches

__all__ = ["TOKEN_REJECTED", "TokenOutcome", "asks_reply", "judged_reply", "signature_problem"]

TOKEN_REJECTED = "TaskTokenRejected"
"""Failure type of the refusal of an outcome whose signature does not match."""

TokenOutcome = rec.ActivityTaskCompleted | rec.ActivityTaskFailed | rec.ActivityHeartbeat
"""The commands a task token's holder may send."""


def asks_reply(command: rec.Command) -> bool:
    """Whether ``command`` is an activity outcome whose sender waits for an answer."""
    return isinstance(command, TokenOutcome) and command.request_id is not None


def judged_reply(command: TokenOutcome, run_id: str, activities: Activities) -> rec.Reply:
    """The answer to ``command`` for an open run, judged before it is applied: ok if
    its attempt is the running one, else ``ActivityNotRunning`` saying why."""
    assert command.request_id is not None
    problem = activities.attempt_problem(command.activity_seq, command.attempt)
    return rec.Reply(
        correlation_id=command.request_id,
        kind=rec.ReplyKind.ACTIVITY,
        workflow_id=command.workflow_id,
        run_id=run_id,
        ok=problem is None,
        error=None
        if problem is None
        else Failure(
            message=f"nothing changed: {problem}", type="ActivityNotRunning", non_retryable=True
        ),
    )


def signature_problem(key: bytes, command: TokenOutcome) -> Failure | None:
    """Why ``command`` must be refused under the engine's task-token ``key``; None if
    its signature is its attempt's."""
    try:
        token = TaskToken(
            command.workflow_id, command.run_id, command.activity_seq, command.attempt,
            command.token_signature,
        )
    except InvalidTaskTokenError:
        token = None
    if token is not None and token.signature and signature_matches(key, token):
        return None
    why = "is not signed" if not command.token_signature else "does not match its attempt"
    return Failure(
        message=f"nothing changed: the task token {why} (an edited or forged token, one "
        "made before the engine had its task-token key, or one signed with another key)",
        type=TOKEN_REJECTED,
        non_retryable=True,
    )
