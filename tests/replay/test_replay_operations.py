"""Saved histories of the built-in operation handler workflow (recorded in memory by
``tests.replay.record_operation_histories``) replay against the current code, event
for event: a change to ``saga.operation.handler`` that would break operations being
handled fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine import events as ev
from orchestrator.engine.replayer import history_from_json
from tests.replay import operation_scenarios as sc
from tests.replay.record_histories import assert_replays_to_the_same_commands

HISTORIES = Path(__file__).parent / "histories"
SAVED = sorted(p.stem for p in HISTORIES.glob("operation_*.json"))


def test_every_scenario_is_saved() -> None:
    assert set(SAVED) == {
        "operation_handler_succeeded", "operation_handler_failed",
        "operation_handler_cancelled", "operation_handler_kafka_succeeded",
    }


@pytest.mark.parametrize("stem", SAVED)
def test_saved_operation_history_replays(stem: str) -> None:
    history = history_from_json((HISTORIES / f"{stem}.json").read_text())
    assert isinstance(history[-1], ev.WorkflowCompleted)
    assert_replays_to_the_same_commands(sc.WORKFLOWS, {stem: history})
