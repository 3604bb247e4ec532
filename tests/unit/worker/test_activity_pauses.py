"""The held-task buffer, the pause table and the pause record (no broker)."""

from __future__ import annotations

import pytest

from orchestrator.client import PendingActivityInfo
from orchestrator.client._pauses import fold_pauses, pause_record, waiting_on_paused
from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.serde.history_page import PendingActivity
from orchestrator.serde.records import ActivityPause
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.activity_pauses import HeldTasks, PauseTable
from orchestrator.worker.shard.pending import pending_activities


def _pause(queue: str, kind: str, *, paused: bool, at: int) -> ActivityPause:
    return ActivityPause(task_queue=queue, activity_type=kind, paused=paused, time=at)


def test_held_tasks_keep_arrival_order_per_type() -> None:
    held: HeldTasks[int] = HeldTasks(max_held=10)
    for n, kind in enumerate(["a", "b", "a", "a", "b"]):
        held.hold(kind, n)

    assert len(held) == 5 and held.counts() == {"a": 3, "b": 2}
    assert held.release("a") == [0, 2, 3]
    assert len(held) == 2 and held.count("a") == 0
    assert held.release("a") == []
    assert held.release("b") == [1, 4]
    assert len(held) == 0


def test_held_tasks_report_full_at_the_bound_and_never_drop() -> None:
    held: HeldTasks[int] = HeldTasks(max_held=3)
    full: list[bool] = []
    for n in (1, 2, 3, 4):  # at 4 the caller has stopped fetching; nothing is dropped
        held.hold("a", n)
        full.append(held.full)
    assert full == [False, False, True, True] and len(held) == 4
    assert held.release("a") == [1, 2, 3, 4]
    full.append(held.full)
    assert full[-1] is False


def test_held_tasks_discard_keeps_the_rest_in_order() -> None:
    held: HeldTasks[tuple[int, int]] = HeldTasks(max_held=10)
    for item in [(0, 1), (1, 2), (0, 3), (1, 4)]:
        held.hold("a", item)
    held.hold("b", (1, 5))

    assert held.discard(lambda t: t[0] != 1) == 3  # partition 1 revoked
    assert len(held) == 2 and held.counts() == {"a": 2}
    assert held.release("a") == [(0, 1), (0, 3)]


def test_held_tasks_need_a_positive_bound() -> None:
    with pytest.raises(ValueError, match="max_held"):
        HeldTasks[int](0)


def test_pause_table_latest_record_wins_and_keeps_the_unpause_time() -> None:
    table = PauseTable()
    assert not table.is_paused("q", "a")
    assert table.apply(_pause("q", "a", paused=True, at=10))
    assert table.is_paused("q", "a") and not table.is_paused("q", "b")
    assert not table.is_paused("other", "a")
    assert table.unpaused_at("q", "a") is None
    assert not table.apply(_pause("q", "a", paused=True, at=11))  # no change
    assert table.apply(_pause("q", "a", paused=False, at=20))
    assert not table.is_paused("q", "a")
    assert table.unpaused_at("q", "a") == 20


def test_pause_table_lists_paused_types_sorted() -> None:
    table = PauseTable()
    table.apply(_pause("q2", "z", paused=True, at=1))
    table.apply(_pause("q1", "b", paused=True, at=1))
    table.apply(_pause("q1", "a", paused=True, at=1))
    table.apply(_pause("q1", "b", paused=False, at=2))

    assert [(p.task_queue, p.activity_type) for p in table.paused()] == [("q1", "a"), ("q2", "z")]
    assert [p.activity_type for p in table.paused("q1")] == ["a"]


def test_fold_pauses_matches_the_table() -> None:
    records = [
        _pause("q", "a", paused=True, at=1),
        _pause("q", "b", paused=True, at=2),
        _pause("q", "a", paused=False, at=3),
    ]
    assert [p.activity_type for p in fold_pauses(records, "q")] == ["b"]
    assert fold_pauses(records, "other") == []


def test_pause_record_validates_and_round_trips_on_the_wire() -> None:
    record = pause_record("q", "charge", paused=True, reason="bank down", operator="ops")
    assert record.paused and record.reason == "bank down" and record.operator == "ops"
    wire = WireFormat()
    encoded = wire.encode_pause(record)
    assert encoded.key == b"q/charge"
    assert wire.decode_pause(encoded.headers, encoded.value).record == record

    with pytest.raises(ValueError, match="task queue"):
        pause_record("a/b", "charge", paused=True)
    with pytest.raises(ValueError, match="activity type"):
        pause_record("q", "", paused=True)


def _scheduled(seq: int, kind: str, queue: str = "q") -> ev.ActivityScheduled:
    policy = ev.RetryPolicyRecord(initial_ms=1000, backoff=2.0, maximum_ms=60_000)
    return ev.ActivityScheduled(seq=seq, time=seq, activity_seq=seq, activity_type=kind,
                                task_queue=queue, retry_policy=policy)


class _Paused:
    """The engine's view of the pauses topic: ``a`` is paused on ``q``."""

    def is_paused(self, task_queue: str, activity_type: str) -> bool:
        return (task_queue, activity_type) == ("q", "a")

    def unpaused_at(self, task_queue: str, activity_type: str) -> int | None:
        return None


def test_describe_lists_the_unfinished_activities_and_marks_those_held_by_a_pause() -> None:
    failure = ev.Failure(message="busy", type="Busy")
    events: list[ev.Event] = [
        _scheduled(1, "a"),
        ev.ActivityCompleted(seq=2, time=2, activity_seq=1, attempt=1,
                             result=DataConverter().to_payload(1)),
        _scheduled(3, "a"),  # open, paused
        _scheduled(4, "b"),  # open, not paused; its second attempt is next
        ev.ActivityAttemptFailed(seq=5, time=5, activity_seq=4, attempt=1, failure=failure,
                                 next_retry_at=9),
        _scheduled(6, "a", queue="other"),  # open, its queue is not paused
        _scheduled(7, "c"),
        ev.ActivityFailed(seq=8, time=8, activity_seq=7, attempt=1, failure=failure),
    ]
    assert pending_activities(events, _Paused()) == [
        PendingActivity(activity_seq=3, activity_type="a", task_queue="q", attempt=1,
                        paused=True),
        PendingActivity(activity_seq=4, activity_type="b", task_queue="q", attempt=2),
        PendingActivity(activity_seq=6, activity_type="a", task_queue="other", attempt=1),
    ]
    assert [p.paused for p in pending_activities(events, None)] == [False] * 3
    assert [p.activity_seq for p in pending_activities(events, None, limit=2)] == [3, 4]


def test_waiting_on_paused_names_the_pause_of_each_held_activity() -> None:
    pending = [
        PendingActivityInfo(activity_seq=3, activity_type="a", task_queue="q", attempt=1,
                            paused=True),
        PendingActivityInfo(activity_seq=4, activity_type="b", task_queue="q", attempt=1),
        PendingActivityInfo(activity_seq=5, activity_type="a", task_queue="other", attempt=1),
    ]
    paused = [ActivityPause(task_queue="q", activity_type="a", paused=True, reason="down",
                            operator="ops", time=7)]

    assert waiting_on_paused(pending, paused) == [{
        "activity_seq": 3, "activity_type": "a", "task_queue": "q", "paused_since": 7,
        "reason": "down", "operator": "ops",
    }]
    assert waiting_on_paused(pending, []) == []
