"""Saved histories of the built-in schedule workflow (recorded in memory and on real
Kafka by ``tests.replay.record_schedule_histories``) replay against the current
code, event for event: a change to ``saga.schedule`` that would break running
schedules fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.engine import events as ev
from orchestrator.engine.replayer import history_from_json
from tests.replay import schedule_scenarios as sc
from tests.replay.record_histories import assert_replays_to_the_same_commands

HISTORIES = Path(__file__).parent / "histories"
SAVED = sorted(p.stem for p in HISTORIES.glob("*schedule_*.json"))


def test_every_scenario_is_saved() -> None:
    expected = {"schedule_skip", "schedule_buffer_all", "schedule_cancel_other",
                "schedule_terminate_other", "schedule_cron_dst_jitter", "schedule_operator",
                "kafka_schedule_skip"}
    assert set(SAVED) == expected


@pytest.mark.parametrize("stem", SAVED)
def test_saved_schedule_history_replays(stem: str) -> None:
    history = history_from_json((HISTORIES / f"{stem}.json").read_text())
    assert isinstance(history[-1], ev.WorkflowCompleted)  # each ends with a delete
    assert any(isinstance(e, ev.ChildWorkflowInitiated) for e in history)
    assert_replays_to_the_same_commands(sc.WORKFLOWS, {stem: history})

