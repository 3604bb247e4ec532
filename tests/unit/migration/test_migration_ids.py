"""The permanent id formats of the migration tools, pinned."""

from __future__ import annotations

import pytest

from orchestrator.migration.bridge import LegacyMessage, MalformedMessageError, json_translator
from orchestrator.migration.ids import (
    bridge_request_id,
    bridge_workflow_id,
    outbox_request_id,
    outbox_workflow_id,
)


def test_formats_are_pinned() -> None:
    # Changing any of these makes replays start duplicates: never edit, add new ones.
    assert outbox_workflow_id("payment-42") == "payment-42"
    assert outbox_request_id("saga_outbox", 7) == "outbox/saga_outbox/7"
    assert bridge_workflow_id("payments.legacy", 3, 1200) == "payments.legacy/3/1200"
    assert bridge_workflow_id("payments.legacy", 3, 1200, "pay-9") == "pay-9"
    assert bridge_request_id("payments.legacy", 3, 1200) == "bridge/payments.legacy/3/1200"


@pytest.mark.parametrize("bad", ["", " x", "x ", "\tx"])
def test_blank_or_padded_business_keys_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="business key"):
        outbox_workflow_id(bad)
    with pytest.raises(ValueError, match="business key"):
        bridge_workflow_id("t", 0, 0, bad)


def message(value: bytes | None) -> LegacyMessage:
    return LegacyMessage("legacy", 0, 5, None, value)


def test_json_translator() -> None:
    start = json_translator("payment_id")(message(b'{"payment_id": "p-1", "amount": 5}'))
    assert start.business_key == "p-1"
    assert start.input == {"payment_id": "p-1", "amount": 5}
    assert json_translator()(message(b"{}")).business_key is None


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (None, MalformedMessageError),
        (b"not json", ValueError),
        (b"\xff\xfe", ValueError),
        (b"[1, 2]", MalformedMessageError),
        (b'{"amount": 5}', KeyError),
        (b'{"payment_id": 12}', MalformedMessageError),
    ],
)
def test_json_translator_rejects_malformed(value: bytes | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        json_translator("payment_id")(message(value))
