"""The engine's bookkeeping of handed tasks' outcomes per batch, and its wait for them."""

from __future__ import annotations

import time

from orchestrator.serde.wire import EncodedRecord
from orchestrator.worker.shard.handoff_batches import HandoffBatches


def _outcome(workflow_id: str, n: int = 0) -> tuple[int, EncodedRecord]:
    return (3, EncodedRecord(workflow_id.encode(), f"outcome {n}".encode(), []))


def test_a_batch_waits_only_while_a_handed_task_has_not_come_back() -> None:
    batches = HandoffBatches(hold_s=60.0)
    assert batches.hold_left() == 0.0, "nothing handed: commit now"
    batches.handed(b"a")
    batches.handed(b"a")
    batches.handed(b"b")
    assert batches.hold_left() > 59.0
    batches.returned(_outcome("a"))
    batches.returned(_outcome("b"))
    assert batches.hold_left() > 0.0, "one task of run a is still out"
    batches.returned(_outcome("a", 1))
    assert batches.hold_left() == 0.0


def test_the_wait_is_bounded_from_its_first_look() -> None:
    batches = HandoffBatches(hold_s=0.02)
    batches.handed(b"a")
    first = batches.hold_left()
    assert 0.0 < first <= 0.02
    time.sleep(0.03)
    assert batches.hold_left() == 0.0, "the bound passed: commit without it"


def test_outcomes_are_kept_until_their_batch_commits() -> None:
    batches = HandoffBatches()
    one, two, three = _outcome("a", 1), _outcome("b", 2), _outcome("c", 3)
    batches.returned(one)
    batches.hand_over()
    batches.returned(two)
    assert batches.uncommitted() == [one, two], "in flight, then gathered"
    batches.committed()
    assert batches.uncommitted() == [two]
    batches.hand_over()
    batches.returned(three)
    batches.drop()
    assert batches.uncommitted() == []


def test_a_new_batch_starts_without_the_old_waits() -> None:
    batches = HandoffBatches(hold_s=60.0)
    batches.handed(b"a")
    assert batches.hold_left() > 0.0
    batches.hand_over()
    assert batches.hold_left() == 0.0, "the handed task's outcome joins a later batch"


def test_a_batch_waits_for_the_outcome_of_a_task_sent_through_a_queue() -> None:
    batches = HandoffBatches(queued_hold_s=60.0, queued_hold_max_s=120.0)
    batches.queued(b"a")
    assert batches.hold_left() > 59.0
    batches.heard_from(b"other run")
    assert batches.hold_left() > 0.0, "run a's outcome has not been read"
    batches.heard_from(b"a")
    assert batches.hold_left() == 0.0


def test_a_batch_a_client_or_another_run_waits_for_does_not_wait_for_queued_tasks() -> None:
    batches = HandoffBatches(hold_s=60.0, queued_hold_s=60.0, queued_hold_max_s=120.0)
    batches.queued(b"a")
    batches.answering = True
    assert batches.hold_left() == 0.0, "a reply in the batch: commit now"
    batches.handed(b"b")
    assert batches.hold_left() > 59.0, "a handed task's outcome comes within the hold"
    batches.hand_over()
    batches.queued(b"a")
    assert batches.hold_left() > 59.0, "the next batch starts without the reply"


def test_each_task_sent_restarts_the_wait_up_to_its_bound() -> None:
    batches = HandoffBatches(queued_hold_s=0.3, queued_hold_max_s=0.5)
    batches.queued(b"a")
    assert 0.0 < batches.hold_left() <= 0.3
    time.sleep(0.2)
    batches.queued(b"b")
    assert batches.hold_left() > 0.25, "the wait runs from the last task sent"
    time.sleep(0.2)
    batches.queued(b"c")
    left = batches.hold_left()
    assert 0.0 < left <= 0.5 - 0.4, "no longer than the bound from the first look"
    time.sleep(0.15)
    assert batches.hold_left() == 0.0, "past the bound: commit with the tasks still out"
