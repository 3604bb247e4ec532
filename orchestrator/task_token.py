"""Task tokens: the address of one activity attempt, for completing it from outside.

An activity that answers later (``raise activity.CompleteAsync()``) hands
``activity.info().task_token`` to whoever will finish it: a webhook handler, a
message consumer, an operator. The token names the workflow id, the run id, the
activity's sequence number in its run and the attempt; with it, a client sends the
same outcome commands (``ActivityTaskCompleted``, ``ActivityTaskFailed``,
``ActivityHeartbeat``) the activity worker would have sent.

Format: ``"v1."`` followed by the URL-safe base64 (no padding) of the compact JSON
array ``[workflow_id, run_id, activity_seq, attempt]``; or, when the engine workers
have a task-token key (``SAGA_TASK_TOKEN_KEY``), ``"v2."`` and the array with a fifth
element, the attempt's signature (:func:`attempt_signature`). Either is readable by
anyone. The engine checks every outcome against the run's state and refuses one
whose run, activity or attempt is not the one running; with a key it also refuses
one whose signature does not match the attempt it names, so a v2 token cannot be
edited into the token of another attempt (docs/concepts.md, "Completing an activity
later").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from orchestrator.exceptions import OrchestratorError

__all__ = [
    "MAX_TOKEN_CHARS",
    "InvalidTaskTokenError",
    "TaskToken",
    "attempt_signature",
    "signature_matches",
]

_VERSION = "v1."
_SIGNED = "v2."
_SIGNATURE_BYTES = 16  # HMAC-SHA256 truncated to 128 bits: far beyond guessing
MAX_TOKEN_CHARS = 4096
"""Longer strings are refused before decoding (workflow ids are short business ids)."""


class InvalidTaskTokenError(OrchestratorError, ValueError):
    """A string that is not a task token this version can read; the message says why."""


@dataclass(frozen=True, slots=True)
class TaskToken:
    """One activity attempt: ``(workflow_id, run_id, activity_seq, attempt)``, and the
    engine's ``signature`` of it (empty when the engine workers have no task-token key)."""

    workflow_id: str
    run_id: str
    activity_seq: int
    attempt: int
    signature: str = ""

    def __post_init__(self) -> None:
        problem = _problem(self.workflow_id, self.run_id, self.activity_seq, self.attempt)
        if problem:
            raise InvalidTaskTokenError(f"invalid task token: {problem}")

    def encode(self) -> str:
        """The token as an opaque, URL-safe string (``v2.`` when signed, else ``v1.``)."""
        fields: list[str | int] = [self.workflow_id, self.run_id, self.activity_seq, self.attempt]
        if self.signature:
            fields.append(self.signature)
        raw = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
        version = _SIGNED if self.signature else _VERSION
        return version + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

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
        if version + "." not in (_VERSION, _SIGNED):
            raise InvalidTaskTokenError(f"task token version {version!r} is not supported")
        size = 5 if version + "." == _SIGNED else 4
        try:
            raw = base64.b64decode(
                body + "=" * (-len(body) % 4), altchars=b"-_", validate=True
            )
            fields = json.loads(raw.decode())
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise InvalidTaskTokenError(f"task token is corrupt: {exc}") from None
        if not isinstance(fields, list) or len(fields) != size:
            raise InvalidTaskTokenError(f"task token is corrupt: expected {size} fields")
        workflow_id, run_id, activity_seq, attempt = fields[:4]
        problem = _problem(workflow_id, run_id, activity_seq, attempt)
        signature = fields[4] if size == 5 else ""
        if not problem and (not isinstance(signature, str) or (size == 5 and not signature)):
            problem = "signature must be a non-empty string"
        if problem:
            raise InvalidTaskTokenError(f"task token is corrupt: {problem}")
        return cls(workflow_id, run_id, activity_seq, attempt, signature)


def attempt_signature(
    key: bytes, workflow_id: str, run_id: str, activity_seq: int, attempt: int
) -> str:
    """The engine's signature of one attempt: HMAC-SHA256 with ``key`` over the compact
    JSON array of the four fields, truncated to 16 bytes, URL-safe base64 (no padding)."""
    fields = [workflow_id, run_id, activity_seq, attempt]
    raw = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
    digest = hmac.new(key, raw, hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def signature_matches(key: bytes, token: TaskToken) -> bool:
    """Whether ``token.signature`` is its attempt's under ``key`` (constant-time)."""
    expected = attempt_signature(
        key, token.workflow_id, token.run_id, token.activity_seq, token.attempt
    )
    return hmac.compare_digest(expected.encode(), token.signature.encode())


def _problem(workflow_id: object, run_id: object, activity_seq: object, attempt: object) -> str:
    if not isinstance(workflow_id, str) or not workflow_id:
        return "workflow_id must be a non-empty string"
    if not isinstance(run_id, str) or not run_id:
        return "run_id must be a non-empty string"
    for name, value in (("activity_seq", activity_seq), ("attempt", attempt)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{name} must be a positive integer"
    return ""
