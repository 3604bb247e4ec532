"""Task tokens: the address of one activity attempt, for completing it from outside.

An activity that answers later (``raise activity.CompleteAsync()``) hands
``activity.info().task_token`` to whoever will finish it: a webhook handler, a
message consumer, an operator. The token names the workflow id, the run id, the
activity's sequence number in its run and the attempt; with it, a client sends the
same outcome commands (``ActivityTaskCompleted``, ``ActivityTaskFailed``,
``ActivityHeartbeat``) the activity worker would have sent.

Format: ``"v1."`` followed by the URL-safe base64 (no padding) of the compact JSON
array ``[workflow_id, run_id, activity_seq, attempt]``. It is readable by anyone
and carries no signature: the engine checks every outcome against the run's state
and drops one whose run, activity or attempt is not the one running
(docs/concepts.md, "Completing an activity later").
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from orchestrator.exceptions import OrchestratorError

__all__ = ["MAX_TOKEN_CHARS", "InvalidTaskTokenError", "TaskToken"]

_VERSION = "v1."
MAX_TOKEN_CHARS = 4096
"""Longer strings are refused before decoding (workflow ids are short business ids)."""


class InvalidTaskTokenError(OrchestratorError, ValueError):
    """A string that is not a task token this version can read; the message says why."""


@dataclass(frozen=True, slots=True)
class TaskToken:
    """One activity attempt: ``(workflow_id, run_id, activity_seq, attempt)``."""

    workflow_id: str
    run_id: str
    activity_seq: int
    attempt: int

    def __post_init__(self) -> None:
        problem = _problem(self.workflow_id, self.run_id, self.activity_seq, self.attempt)
        if problem:
            raise InvalidTaskTokenError(f"invalid task token: {problem}")

    def encode(self) -> str:
        """The token as an opaque, URL-safe string."""
        fields = [self.workflow_id, self.run_id, self.activity_seq, self.attempt]
        raw = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
        return _VERSION + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, token: str) -> TaskToken:
        """Read a token made by :meth:`encode`; InvalidTaskTokenError says what is wrong."""
        if not isinstance(token, str):
            raise InvalidTaskTokenError(f"a task token is a string, not {type(token).__name__}")
        token = token.strip()
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidTaskTokenError(f"task token longer than {MAX_TOKEN_CHARS} characters")
        version, dot, body = token.partition(".")
        if not dot or not version:
            raise InvalidTaskTokenError("not a task token (expected 'v1.<base64>')")
        if version + "." != _VERSION:
            raise InvalidTaskTokenError(f"task token version {version!r} is not supported")
        try:
            raw = base64.b64decode(
                body + "=" * (-len(body) % 4), altchars=b"-_", validate=True
            )
            fields = json.loads(raw.decode())
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise InvalidTaskTokenError(f"task token is corrupt: {exc}") from None
        if not isinstance(fields, list) or len(fields) != 4:
            raise InvalidTaskTokenError("task token is corrupt: expected 4 fields")
        workflow_id, run_id, activity_seq, attempt = fields
        problem = _problem(workflow_id, run_id, activity_seq, attempt)
        if problem:
            raise InvalidTaskTokenError(f"task token is corrupt: {problem}")
        return cls(workflow_id, run_id, activity_seq, attempt)


def _problem(workflow_id: object, run_id: object, activity_seq: object, attempt: object) -> str:
    if not isinstance(workflow_id, str) or not workflow_id:
        return "workflow_id must be a non-empty string"
    if not isinstance(run_id, str) or not run_id:
        return "run_id must be a non-empty string"
    for name, value in (("activity_seq", activity_seq), ("attempt", attempt)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{name} must be a positive integer"
    return ""
