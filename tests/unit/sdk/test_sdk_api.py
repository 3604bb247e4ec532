"""The public surface: exports, the error tree, the status table, activity helpers."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator import activity, exceptions, workflow
from orchestrator.activity import ActivityInfo
from orchestrator.status import TRANSITIONS, WorkflowStatus, is_transition_valid


def test_workflow_module_exports() -> None:
    assert set(workflow.__all__) == {
        "ActivityOptions", "ChildWorkflowHandle", "HandlerSpec", "ParentClosePolicy",
        "RetryPolicy", "Saga", "SagaScope",
        "WorkflowContext", "WorkflowDefinition", "WorkflowInfo", "WorkflowStatus", "days",
        "definition_of", "defn", "hours", "minutes", "query", "run", "seconds", "signal",
        "update", "update_validator",
    }
    for name in workflow.__all__:
        assert getattr(workflow, name) is not None


def test_exceptions_follow_the_documented_tree() -> None:
    doc = exceptions.__doc__ or ""
    for name in exceptions.__all__:
        assert name in doc, f"{name} missing from the tree in the module docstring"
    for control in (exceptions.ContinueAsNew, exceptions.NonDeterminismError,
                    exceptions.NondeterministicCallError):
        assert not issubclass(control, Exception), "control flow must escape except Exception"
    for failure in (exceptions.ApplicationError, exceptions.ActivityError,
                    exceptions.ChildWorkflowError, exceptions.CompensationError):
        assert issubclass(failure, exceptions.FailureError)
    assert exceptions.ApplicationError("x", non_retryable=True).retryable is False
    assert exceptions.ApplicationError("x").retryable is True
    assert exceptions.PayloadConversionError.retryable is False


def test_non_determinism_error_names_seq_expected_actual() -> None:
    err = exceptions.NonDeterminismError("mismatch", seq=7, expected="A(x)", actual="B(y)")
    assert str(err) == "mismatch (event seq 7: expected A(x), got B(y))"


def test_status_transition_table() -> None:
    running, comp = WorkflowStatus.RUNNING, WorkflowStatus.COMPENSATING
    assert is_transition_valid(running, comp)
    assert is_transition_valid(comp, WorkflowStatus.COMPENSATION_FAILED)
    assert not is_transition_valid(running, WorkflowStatus.COMPENSATION_FAILED)
    assert not is_transition_valid(WorkflowStatus.COMPLETED, running)
    terminal = {s for s in WorkflowStatus if s.is_terminal}
    assert terminal == set(WorkflowStatus) - {running, comp}
    assert set(TRANSITIONS) == set(WorkflowStatus)


def test_activity_info_outside_an_activity_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="outside an activity"):
        activity.info()
    assert not activity.in_activity()


async def test_activity_info_and_heartbeat_inside_running() -> None:
    from datetime import UTC, datetime

    now = datetime(2025, 1, 1, tzinfo=UTC)
    info = ActivityInfo("wf", "run", "t", "pay", 3, 2, "q", now, now)
    beats: list[object] = []
    with activity.running(info, beats.append):
        await asyncio.sleep(0)
        assert activity.info().idempotency_key == "wf/run/3"
        activity.heartbeat("50%")
    assert beats == [("50%",)]
