"""Stopping children from their parent on real Kafka: a parent cancels its child
through the handle (the child ends CANCELLED, the parent sees ChildWorkflowError
caused by CancelledError, its history shows the request); a parent cancelled or
terminated while it waits on a sleeping child applies the child's parent-close
policy (TERMINATE: the child ends TERMINATED, REQUEST_CANCEL: CANCELLED, ABANDON:
it keeps running). Parent and children sit on different shards; every history
replays."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.client import Client, WorkflowNotFoundError
from orchestrator.engine import events as ev
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from tests.integration import child_sagas as kids
from tests.integration.test_children_on_kafka import (
    QUEUE,
    SHARDS,
    assert_gapless_and_replays,
    engine,
    histories,
    ids_on_distinct_shards,
    only_run,
    saga,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    return layout


@pytest.fixture
def client(kafka_config: dict[str, Any], layout: TopicLayout) -> Iterator[Client]:
    with Client(kafka_config, layout=layout) as c:
        yield c


def wait_status(
    client: Client, workflow_id: str, *wanted: rec.WorkflowStatus
) -> rec.WorkflowStatus:
    """Poll describe until the workflow has one of ``wanted`` (20 s at most)."""
    deadline = time.monotonic() + 20
    status = None
    while time.monotonic() < deadline:
        try:
            status = client.get_handle(workflow_id).describe(timeout=10).status
        except WorkflowNotFoundError:
            status = None
        if status in wanted:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{workflow_id} is {status}, not one of {wanted}")


def test_a_parent_cancels_its_child_through_the_handle(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parent_id, child_id = ids_on_distinct_shards("canceller", 2)
    with engine(kafka_config, layout) as worker:
        began = time.monotonic()
        handle = client.start(kids.cancels_child, args=[child_id], id=parent_id,
                              task_queue=QUEUE)
        outcome = handle.result(timeout=20)
        took = time.monotonic() - began
        assert wait_status(client, child_id, rec.WorkflowStatus.CANCELLED)
        assert worker.error is None
        # `saga history` shows the policy and the cancel request
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_config["bootstrap.servers"])
        monkeypatch.setenv("SAGA_TOPIC_PREFIX", layout.prefix)
        monkeypatch.setenv("SAGA_SHARDS", str(SHARDS))
        shown = saga("history", parent_id).output
        assert "(parent-close policy ABANDON)" in shown
        assert "ChildWorkflowCancelRequested  #1: changed my mind" in shown
    print(f"start a child, cancel it, hear of its end: {took * 1000:.0f} ms")
    assert outcome == "ChildWorkflowError caused by CancelledError"

    logs = histories(kafka_config, layout)
    parent = only_run(logs[parent_id])
    assert_gapless_and_replays(parent)
    names = [type(e).__name__ for e in parent if type(e).__name__.startswith("Child")]
    assert names == [
        "ChildWorkflowInitiated",
        "ChildWorkflowStarted",
        "ChildWorkflowCancelRequested",
        "ChildWorkflowFailed",
    ]
    asked = next(e for e in parent if isinstance(e, ev.ChildWorkflowCancelRequested))
    assert (asked.child_seq, asked.reason) == (1, "changed my mind")
    failed = next(e for e in parent if isinstance(e, ev.ChildWorkflowFailed))
    assert failed.failure.type == "CancelledError"
    child = only_run(logs[child_id])
    assert_gapless_and_replays(child)
    assert [type(e).__name__ for e in child[-2:]] == ["WorkflowCancelRequested",
                                                        "WorkflowCancelled"]
    cancel = child[-2]
    assert isinstance(cancel, ev.WorkflowCancelRequested) and cancel.reason == "changed my mind"


def test_a_closing_parent_applies_each_childs_parent_close_policy(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client
) -> None:
    ids = ids_on_distinct_shards("policy", 4)
    cases = [  # parent id, child id, policy, how the parent is stopped, the child's end
        ("p-term", f"{ids[0]}-kid", "TERMINATE", "terminate", rec.WorkflowStatus.TERMINATED),
        ("p-cancel", f"{ids[1]}-kid", "REQUEST_CANCEL", "cancel", rec.WorkflowStatus.CANCELLED),
        ("p-abandon", f"{ids[2]}-kid", "ABANDON", "cancel", rec.WorkflowStatus.RUNNING),
    ]
    with engine(kafka_config, layout) as worker:
        began = time.monotonic()
        for parent_id, child_id, policy, _, _ in cases:
            client.start(kids.waits_on_sleeper, args=[child_id, policy], id=parent_id,
                         task_queue=QUEUE)
        for parent_id, child_id, _, stop, _ in cases:
            wait_status(client, child_id, rec.WorkflowStatus.RUNNING)
            parent = client.get_handle(parent_id)
            if stop == "terminate":
                parent.terminate("enough", wait=10)
            else:
                parent.cancel("enough", wait=10)
        for parent_id, child_id, _, stop, child_end in cases:
            wait_status(client, parent_id, rec.WorkflowStatus.TERMINATED
                        if stop == "terminate" else rec.WorkflowStatus.CANCELLED)
            wait_status(client, child_id, child_end)
        took = time.monotonic() - began
        # the abandoned child still runs once its parent's close has long been decided
        time.sleep(0.5)
        abandoned = cases[2][1]
        assert client.get_handle(abandoned).describe(timeout=10).status is (
            rec.WorkflowStatus.RUNNING
        )
        client.get_handle(abandoned).terminate("test over", wait=10)
        assert worker.error is None
    print(f"three parents stopped, their children handled by policy: {took * 1000:.0f} ms")

    logs = histories(kafka_config, layout)
    for parent_id, child_id, policy, _, child_end in cases:
        parent = only_run(logs[parent_id])
        assert_gapless_and_replays(parent)
        initiated = next(e for e in parent if isinstance(e, ev.ChildWorkflowInitiated))
        assert initiated.parent_close_policy == policy
        child = only_run(logs[child_id])
        assert_gapless_and_replays(child)
        if child_end is rec.WorkflowStatus.TERMINATED:
            last = child[-1]
            assert isinstance(last, ev.WorkflowTerminated)
            assert last.reason.endswith("closed TERMINATED (parent-close policy TERMINATE)")
        elif child_end is rec.WorkflowStatus.CANCELLED:
            asked = next(e for e in child if isinstance(e, ev.WorkflowCancelRequested))
            assert asked.reason.endswith("closed CANCELLED (parent-close policy REQUEST_CANCEL)")
