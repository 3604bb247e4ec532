"""The version a run is pinned to, in the visibility row: from its WorkflowStarted, 1
for runs recorded before versions existed, and shown in the runs' JSON."""

from __future__ import annotations

import dataclasses

from orchestrator.engine import events as ev
from orchestrator.visibility.schema import COLUMNS
from orchestrator.visibility.sink import from_ms
from orchestrator.visibility.store import RunRow
from tests.unit.visibility.test_fold import T0, fold, started


def test_the_row_keeps_the_version_the_run_started_on() -> None:
    v2 = dataclasses.replace(started(), workflow_version=2)
    later = ev.TimerStarted(seq=2, time=T0, build_id="b", timer_id="timer/1", fire_at=T0 + 9)
    assert fold([v2, later]).workflow_version == 2
    assert fold([started()]).workflow_version == 1  # a run of before versions: 1


def test_the_version_is_a_column_readers_see() -> None:
    assert "workflow_version" in COLUMNS
    row = RunRow(
        workflow_id="w", run_id="r", workflow_type="t", task_queue="q", status="RUNNING",
        start_time=from_ms(T0), close_time=None, current_step=None, history_length=1,
        search_attributes={}, memo={}, error=None, parked=None, paused=None, build_ids=[],
        shard=0, updated_at=from_ms(T0), workflow_version=3,
    )
    assert row.to_json()["workflow_version"] == 3
    assert RunRow.from_db({**row.to_json(), "start_time": row.start_time,
                           "updated_at": row.updated_at}).workflow_version == 3
