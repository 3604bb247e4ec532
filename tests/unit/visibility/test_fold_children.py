"""The child events of history event v5 in what people read: the visibility fold
takes a ChildWorkflowCancelRequested like any decision (the run stays open, its
build is listed), and ``saga history`` shows the policy and the cancel request."""

from __future__ import annotations

from orchestrator.cli_text import history_line
from orchestrator.engine import events as ev
from tests.unit.visibility.test_fold import T0, fold, started


def _children() -> list[ev.Event]:
    return [
        started(),
        ev.ChildWorkflowInitiated(seq=2, time=T0 + 1, build_id="b-1", child_seq=1,
                                  workflow_type="kid", workflow_id="wf/kid", task_queue="q",
                                  parent_close_policy=ev.PARENT_CLOSE_REQUEST_CANCEL),
        ev.ChildWorkflowStarted(seq=3, time=T0 + 2, child_seq=1, run_id="kr"),
        ev.ChildWorkflowCancelRequested(seq=4, time=T0 + 3, build_id="b-2", child_seq=1,
                                        reason="changed my mind"),
    ]


def test_the_fold_keeps_the_run_open_through_a_childs_cancel_request() -> None:
    state = fold(_children())
    assert (state.status, state.history_length, state.close_time) == ("RUNNING", 4, None)
    assert state.build_ids == ["b-1", "b-2"]


def test_history_lines_show_the_policy_and_the_cancel_request() -> None:
    initiated, asked = _children()[1], _children()[3]
    assert history_line(initiated, {}).endswith(
        "ChildWorkflowInitiated  kid wf/kid #1 (parent-close policy REQUEST_CANCEL)"
    )
    assert history_line(asked, {}).endswith(
        "ChildWorkflowCancelRequested  #1: changed my mind"
    )
