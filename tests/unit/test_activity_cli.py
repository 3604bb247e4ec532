"""``saga activity token`` and ``decode``: the offline commands (the others send to
Kafka and are tested in tests/integration/test_async_completion_on_kafka.py)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.task_token import TaskToken


def test_token_and_decode_round_trip() -> None:
    made = CliRunner().invoke(main, ["activity", "token", "order/42", "run-1", "3", "2"])
    assert made.exit_code == 0, made.output
    token = made.output.strip()
    assert TaskToken.decode(token) == TaskToken("order/42", "run-1", 3, 2)
    read = CliRunner().invoke(main, ["activity", "decode", token])
    assert json.loads(read.output) == {
        "workflow_id": "order/42", "run_id": "run-1", "activity_seq": 3, "attempt": 2,
    }


def test_bad_tokens_and_fields_are_usage_errors() -> None:
    bad = CliRunner().invoke(main, ["activity", "decode", "v1.***"])
    assert bad.exit_code == 2 and "corrupt" in bad.output
    zero = CliRunner().invoke(main, ["activity", "token", "w", "r", "1", "0"])
    assert zero.exit_code == 2 and "attempt must be a positive integer" in zero.output
    token = TaskToken("w", "r", 1, 1).encode()
    no_json = CliRunner().invoke(main, ["activity", "complete", token, "--result", "{"])
    assert no_json.exit_code == 2 and "not valid JSON" in no_json.output
