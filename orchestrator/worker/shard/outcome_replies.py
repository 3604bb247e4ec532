"""Answers to activity outcomes sent by task token.

A client completing, failing or heartbeating an attempt by its token sets the
command's ``request_id``; the shard then says on ``<prefix>.replies`` (kind
``ACTIVITY``) whether that attempt was the running one, in the transaction that
applies it. Activity workers set no request id and get no reply, so the replies
topic carries nothing more for the ordinary path. Pure functions.
"""

from __future__ import annotations

from orchestrator.engine.activities import Activities
from orchestrator.engine.events import Failure
from orchestrator.serde import records as rec

__all__ = ["TokenOutcome", "asks_reply", "judged_reply"]

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
