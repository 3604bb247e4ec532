"""History event v5 (children): ChildWorkflowInitiated.parent_close_policy and the
ChildWorkflowCancelRequested event round-trip; a ChildWorkflowInitiated written with
v4 (before policies) decodes as ABANDON, the behaviour it was recorded under."""

from __future__ import annotations

from orchestrator.engine import events as ev
from tests.unit.serde.test_serde_pause import WIRE, _written_with


def test_the_v5_child_events_round_trip() -> None:
    for event in (
        ev.ChildWorkflowInitiated(seq=3, time=5, build_id="b", child_seq=1, workflow_type="t",
                                  workflow_id="k", task_queue="q",
                                  parent_close_policy=ev.PARENT_CLOSE_TERMINATE),
        ev.ChildWorkflowCancelRequested(seq=4, time=6, build_id="b", child_seq=1,
                                        reason="no longer needed"),
    ):
        encoded = WIRE.encode_event("p", "r", event)
        assert dict(encoded.headers)["ce_type"] == b"saga.history.event.v7"
        assert WIRE.decode_event(encoded.headers, encoded.value).record.event == event


def test_a_v4_child_initiation_decodes_as_abandon() -> None:
    headers, value = _written_with(
        "saga.history.event.v4",
        {
            "workflow_id": "p", "run_id": "r", "seq": 3, "time": 5, "build_id": "b",
            "event": ("saga.history.event.ChildWorkflowInitiated", {
                "child_seq": 1, "workflow_type": "t", "workflow_id": "k", "task_queue": "q",
                "input": [],
            }),
        },
    )
    event = WIRE.decode_event(headers, value).record.event
    assert isinstance(event, ev.ChildWorkflowInitiated)
    assert event.parent_close_policy == ev.PARENT_CLOSE_ABANDON == "ABANDON"
    assert (event.child_seq, event.workflow_id, event.build_id) == (1, "k", "b")
