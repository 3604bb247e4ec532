"""Task tokens: round trip, what a token looks like, clear errors for bad ones, and
the engine's signature: it names one attempt, and an edited token no longer matches."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import pytest

from orchestrator import activity
from orchestrator.activity import ActivityInfo
from orchestrator.task_token import (
    MAX_TOKEN_CHARS,
    InvalidTaskTokenError,
    TaskToken,
    attempt_signature,
    signature_matches,
)

URL_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")


KEY = b"k" * 32


def _body(raw: bytes, version: str = "v1.") -> str:
    return version + base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        TaskToken("order-1", "9f1c2b7e-0000-4000-8000-000000000001", 1, 1),
        TaskToken("a/b c?d=e&f#g", "r", 12, 345),  # slashes, spaces, URL characters
        TaskToken("Überweisung-✓", "run", 2**40, 2**31),  # non-ASCII, large numbers
    ],
)
def test_a_token_round_trips_and_is_url_safe(token: TaskToken) -> None:
    text = token.encode()
    assert text.startswith("v1.")
    assert URL_SAFE.match(text), text
    assert TaskToken.decode(text) == token
    assert TaskToken.decode(f"  {text}\n") == token  # pasted with whitespace


def test_activity_info_gives_the_token_of_its_attempt() -> None:
    when = datetime(2026, 12, 3, tzinfo=UTC)
    info = ActivityInfo(
        workflow_id="wf-1", run_id="run-1", workflow_type="", activity_type="charge",
        activity_seq=4, attempt=3, task_queue="q", scheduled_time=when,
        attempt_started_time=when,
    )
    assert TaskToken.decode(info.task_token) == TaskToken("wf-1", "run-1", 4, 3)


def test_complete_async_is_not_swallowed_by_except_exception() -> None:
    assert not issubclass(activity.CompleteAsync, Exception)
    with pytest.raises(activity.CompleteAsync):
        try:
            raise activity.CompleteAsync
        except Exception:
            pytest.fail("caught by except Exception")


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("", "not a task token"),
        ("hello", "not a task token"),
        (".abc", "not a task token"),
        ("v3.WyJhIiwiYiIsMSwxXQ", "version 'v3' is not supported"),
        (_body(b'["a", "b", 1, 1]', "v2."), "expected 5 fields"),  # signed, lost its signature
        (_body(b'["a", "b", 1, 1, ""]', "v2."), "signature must be a non-empty string"),
        (_body(b'["a", "b", 1, 1, 7]', "v2."), "signature must be a non-empty string"),
        (_body(b'["a", "b", 1, 1, "s"]'), "expected 4 fields"),
        ("v1.***", "corrupt"),
        ("v1.WyJh", "corrupt"),  # truncated: not JSON
        (_body(b"\xff\xfe"), "corrupt"),  # not UTF-8
        (_body(b'{"workflow_id": "a"}'), "expected 4 fields"),
        (_body(b'["a", "b", 1]'), "expected 4 fields"),
        (_body(b'["", "b", 1, 1]'), "workflow_id must be a non-empty string"),
        (_body(b'["a", "", 1, 1]'), "run_id must be a non-empty string"),
        (_body(b'["a", null, 1, 1]'), "run_id must be a non-empty string"),
        (_body(b'["a", "b", 0, 1]'), "activity_seq must be a positive integer"),
        (_body(b'["a", "b", 1, -2]'), "attempt must be a positive integer"),
        (_body(b'["a", "b", "1", 1]'), "activity_seq must be a positive integer"),
        (_body(b'["a", "b", 1, true]'), "attempt must be a positive integer"),
        (_body(b'["a", "b", 1, 1.5]'), "attempt must be a positive integer"),
        ("v1." + "A" * MAX_TOKEN_CHARS, "longer than"),
    ],
)
def test_malformed_tokens_say_what_is_wrong(token: str, says: str) -> None:
    with pytest.raises(InvalidTaskTokenError, match=re.escape(says)):
        TaskToken.decode(token)


def test_a_token_is_a_value_error_and_is_built_only_from_valid_fields() -> None:
    assert issubclass(InvalidTaskTokenError, ValueError)
    with pytest.raises(InvalidTaskTokenError, match="attempt"):
        TaskToken("a", "b", 1, 0)
    with pytest.raises(InvalidTaskTokenError, match="a string"):
        TaskToken.decode(123)  # type: ignore[arg-type]


def test_a_signed_token_names_its_attempt_and_an_edited_one_does_not_match() -> None:
    signature = attempt_signature(KEY, "order-1", "run-1", 2, 1)
    token = TaskToken("order-1", "run-1", 2, 1, signature)
    text = token.encode()
    assert text.startswith("v2.") and URL_SAFE.match(text)
    assert TaskToken.decode(text) == token
    assert signature_matches(KEY, TaskToken.decode(text))
    assert len(base64.urlsafe_b64decode(signature + "==")) == 16
    for edited in (
        TaskToken("order-1", "run-1", 3, 1, signature),  # another activity of the run
        TaskToken("order-1", "run-1", 2, 2, signature),  # the next attempt
        TaskToken("order-2", "run-1", 2, 1, signature),  # another workflow
        TaskToken("order-1", "run-1", 2, 1, "A" * 22),  # a made-up signature
    ):
        assert not signature_matches(KEY, edited), edited
    assert not signature_matches(b"another key" * 3, token)
    assert not signature_matches(KEY, TaskToken("order-1", "run-1", 2, 1)), "unsigned"


def test_activity_info_gives_a_signed_token_when_its_task_is_signed() -> None:
    when = datetime(2026, 12, 3, tzinfo=UTC)
    signature = attempt_signature(KEY, "wf-1", "run-1", 4, 3)
    info = ActivityInfo(
        workflow_id="wf-1", run_id="run-1", workflow_type="", activity_type="charge",
        activity_seq=4, attempt=3, task_queue="q", scheduled_time=when,
        attempt_started_time=when, token_signature=signature,
    )
    assert info.task_token.startswith("v2.")
    assert signature_matches(KEY, TaskToken.decode(info.task_token))
