"""Replay: saved histories against current code, non-determinism, and patching."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.engine import events as ev
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.inputs import ActivityTaskCompleted
from orchestrator.exceptions import NonDeterminismError
from orchestrator.status import WorkflowStatus
from orchestrator.testing import Replayer, WorkflowEnvironment, history_from_json, history_to_json
from orchestrator.workflow import definition_of
from tests.integration.child_sagas import cancels_child, waits_on_sleeper
from tests.integration.repair_sagas import order as repaired_order
from tests.replay import sample_sagas as s
from tests.replay.batch_scenarios import WORKFLOWS as BATCHES
from tests.replay.operation_scenarios import WORKFLOWS as OPERATIONS
from tests.replay.record_histories import assert_replays_to_the_same_commands, scenarios
from tests.replay.schedule_scenarios import WORKFLOWS as SCHEDULES
from tests.replay.shipped_scenarios import WORKFLOWS as SHIPPED

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
CURRENT = [s.transfer, s.Subscription, s.payout, s.trip, s.Cart, s.versioned_v2_patched, *SHIPPED,
           *SCHEDULES, *BATCHES, *OPERATIONS,
           repaired_order,  # kafka_repair_skipped.json: an operator's repair, on Kafka
           # kafka_child_*.json: a child cancelled through its handle, a parent-close policy
           cancels_child, waits_on_sleeper]


@pytest.fixture(autouse=True)
def _clean_ledger() -> Iterator[None]:
    s.reset()
    yield
    s.reset()


def test_there_are_saved_histories() -> None:
    assert len(HISTORIES) >= 9 + 15  # samples; shipped sagas in memory and on Kafka


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_saved_history_replays_against_current_code(path: Path) -> None:
    history = history_from_json(path.read_text())
    result = Replayer(workflows=CURRENT).replay(history)
    assert result.events == len(history)
    assert result.status.is_terminal
    assert s.LEDGER == [], "replay must not run activities"


async def test_every_acceptance_history_replays_to_the_same_commands() -> None:
    assert_replays_to_the_same_commands(CURRENT, await scenarios())


async def test_json_export_round_trips_every_event_field() -> None:
    for history in (await scenarios()).values():
        text = history_to_json(history)
        assert history_from_json(text) == history


def test_changed_workflow_raises_non_determinism_naming_seq_expected_actual() -> None:
    history = history_from_json((Path(__file__).parent / "histories/versioned_v1.json").read_text())
    scheduled_b = next(
        e for e in history if isinstance(e, ev.ActivityScheduled) and e.activity_type == "step_b"
    )

    with pytest.raises(NonDeterminismError) as info:
        Replayer(workflows=[s.versioned_v2_unguarded]).replay(history)

    assert info.value.seq == scheduled_b.seq
    assert info.value.expected is not None and "step_b" in info.value.expected
    assert info.value.actual is not None and "audit" in info.value.actual
    assert f"event seq {scheduled_b.seq}" in str(info.value)


def test_patched_change_replays_old_histories() -> None:
    history = history_from_json((Path(__file__).parent / "histories/versioned_v1.json").read_text())
    result = Replayer(workflows=[s.versioned_v2_patched]).replay(history)
    assert result.status is WorkflowStatus.COMPLETED


def _v1_prefix(upto_activity: str) -> list[ev.Event]:
    full = history_from_json((Path(__file__).parent / "histories/versioned_v1.json").read_text())
    end = next(
        i for i, e in enumerate(full)
        if isinstance(e, ev.ActivityScheduled) and e.activity_type == upto_activity
    )
    return full[: end + 1]


def _complete_last(executor: WorkflowExecutor, value: str) -> list[ev.Event]:
    last = executor.history[-1]
    assert isinstance(last, ev.ActivityScheduled)
    decision = executor.apply(
        [ActivityTaskCompleted(activity_seq=last.activity_seq, attempt=1,
                               result=executor.converter.to_payload(value))],
        last.time + 1000,
    )
    return decision.events


def test_running_execution_past_the_patch_point_stays_on_the_old_path() -> None:
    # Old code had already scheduled step_b when the patched code was deployed.
    executor = WorkflowExecutor(definition_of(s.versioned_v2_patched), _v1_prefix("step_b"))
    new = _complete_last(executor, "b")
    assert [type(e).__name__ for e in new] == ["ActivityCompleted", "WorkflowCompleted"]
    assert executor.status is WorkflowStatus.COMPLETED


def test_running_execution_reaching_the_patch_point_later_takes_the_new_path() -> None:
    # Old code was waiting for step_a: the decision at the patch point is not made
    # yet, so the new path is safe, and the marker records that it was taken.
    executor = WorkflowExecutor(definition_of(s.versioned_v2_patched), _v1_prefix("step_a"))
    new = _complete_last(executor, "a")
    assert [type(e).__name__ for e in new] == [
        "ActivityCompleted", "MarkerRecorded", "ActivityScheduled"
    ]
    scheduled = new[-1]
    assert isinstance(scheduled, ev.ActivityScheduled) and scheduled.activity_type == "audit"
    Replayer(workflows=[s.versioned_v2_patched]).replay(executor.history)


async def test_patched_change_takes_the_new_path_for_new_runs() -> None:
    env = WorkflowEnvironment(workflows=[s.versioned_v2_patched], activities=s.ALL_ACTIVITIES)
    handle = await env.start_workflow(s.versioned_v2_patched)
    assert await handle.result() == ["a", "audit", "b"]
    markers = [e for e in handle.history if isinstance(e, ev.MarkerRecorded)]
    assert [(m.marker_name, m.marker_id) for m in markers] == [("patch", "add-audit")]
    # and that new history replays with the patched code, not with the old one
    Replayer(workflows=[s.versioned_v2_patched]).replay(handle.history)
    with pytest.raises(NonDeterminismError):
        Replayer(workflows=[s.versioned_v1]).replay(handle.history)


def test_replayer_names_an_unregistered_workflow_type() -> None:
    history = history_from_json((Path(__file__).parent / "histories/transfer_ok.json").read_text())
    with pytest.raises(Exception, match="no workflow 'transfer' registered"):
        Replayer(workflows=[s.Cart]).replay(history)
