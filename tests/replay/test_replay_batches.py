"""Saved histories of the built-in batch workflow (recorded in memory by
``tests.replay.record_batch_histories``) replay against the current code, event for
event: a change to ``saga.batch`` that would break running batches fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine import events as ev
from orchestrator.engine.replayer import history_from_json
from tests.replay import batch_scenarios as sc
from tests.replay.record_histories import assert_replays_to_the_same_commands

HISTORIES = Path(__file__).parent / "histories"
SAVED = sorted(p.stem for p in HISTORIES.glob("batch_*.json"))


def test_every_scenario_is_saved() -> None:
    assert set(SAVED) == {"batch_signal_retried", "batch_reset_cancelled"}


@pytest.mark.parametrize("stem", SAVED)
def test_saved_batch_history_replays(stem: str) -> None:
    history = history_from_json((HISTORIES / f"{stem}.json").read_text())
    assert isinstance(history[-1], ev.WorkflowCompleted)
    assert_replays_to_the_same_commands(sc.WORKFLOWS, {stem: history})
