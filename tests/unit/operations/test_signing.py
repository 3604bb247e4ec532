"""Callback signatures and callback tokens: what verifies and what does not; the
callback activity signs only for allow-listed URLs."""

from __future__ import annotations

import pytest

from orchestrator.exceptions import ApplicationError
from orchestrator.operations import CallerEntry, OperationsConfig
from orchestrator.operations.activities import operation_activities
from orchestrator.operations.records import CallbackRequest, Outcome
from orchestrator.operations.signing import (
    CallbackToken,
    InvalidCallbackError,
    sign_body,
    signature_valid,
)

SECRET = "s" * 20
OTHER = "o" * 20


def test_a_body_verifies_under_its_secret_only() -> None:
    body = b'{"state":"succeeded","result":1}'
    header = sign_body(SECRET, body)
    assert header.startswith("sha256=")
    assert signature_valid(SECRET, body, header)
    assert not signature_valid(OTHER, body, header)
    assert not signature_valid(SECRET, body + b" ", header), "any change breaks it"
    assert not signature_valid(SECRET, body, None)
    assert not signature_valid(SECRET, body, header.removeprefix("sha256="))


def test_a_token_round_trips_and_its_mac_binds_every_field() -> None:
    token = CallbackToken("order-1", "run-1", "key-1", "payments")
    text = token.encode(SECRET)
    read, body, mac = CallbackToken.read(text)
    assert read == token
    assert CallbackToken.verify(SECRET, body, mac)
    assert not CallbackToken.verify(OTHER, body, mac)
    forged = CallbackToken("order-2", "run-1", "key-1", "payments").encode(OTHER)
    _, forged_body, _ = CallbackToken.read(forged)
    assert not CallbackToken.verify(SECRET, forged_body, mac), "a MAC moved to another body"


@pytest.mark.parametrize(
    "bad",
    ["", "op1", "op1.x", "v1.abc.def", "op1.!!!.mac", "op1.W10.mac", 42, "op1.a.b.c", "x" * 5000],
)
def test_malformed_tokens_are_refused(bad: object) -> None:
    with pytest.raises(InvalidCallbackError):
        CallbackToken.read(bad)


async def test_the_callback_activity_refuses_a_url_outside_the_allow_list() -> None:
    config = OperationsConfig(callers=(CallerEntry("https://a.example/cb", SECRET),))
    [send] = [a for a in operation_activities(config)
              if a.__name__ == "send_callback"]
    with pytest.raises(ApplicationError, match="allow-list") as refused:
        await send(CallbackRequest("http://169.254.169.254/x", "t", "op-1",
                                   Outcome("succeeded", 1)))
    assert refused.value.non_retryable
