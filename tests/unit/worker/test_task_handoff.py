"""Tasks handed to an activity worker of the same process and outcomes given back
(worker/task_handoff.py), and which tasks the shard marks as such (shard/output.py,
shard/decision_records.py). No broker: real threads and a real event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from orchestrator.converter import DataConverter
from orchestrator.engine import commands as cmd
from orchestrator.serde import records as rec
from orchestrator.serde.wire import EncodedRecord
from orchestrator.worker import task_handoff
from orchestrator.worker.shard.decision_records import DecisionRecords
from orchestrator.worker.shard.executions import Execution
from orchestrator.worker.shard.records import OutRecord
from orchestrator.worker.task_handoff import MAX_START_TO_CLOSE_MS, HandoffInbox, TaskHandoff
from tests.unit.worker.shard_harness import LAYOUT, open_parts

TOPIC = LAYOUT.task_queue("q")
OTHER = LAYOUT.task_queue("other")


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(task_handoff, "time", fake)
    return fake


def _task(n: int, topic: str = TOPIC) -> OutRecord:
    return OutRecord(topic, f"wf-{n}".encode(), f"task {n}".encode(), handoff=True)


def _inbox(slots: int = 8, topic: str = TOPIC) -> HandoffInbox:
    return HandoffInbox(topic, lambda: slots)


def _later(seconds: float, action: object) -> threading.Thread:
    """Run ``action()`` on another thread after ``seconds``."""
    assert callable(action)

    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# --- HandoffInbox ------------------------------------------------------------------


def test_a_worker_takes_no_task_until_it_is_awake() -> None:
    inbox = _inbox()
    assert not inbox.awake()
    assert not inbox.offer(_task(1)), "asleep: it may be blocked in the Kafka client"
    inbox.wake()
    assert inbox.awake()
    assert inbox.offer(_task(2))
    assert inbox.take() == [_task(2)]
    assert inbox.handed == 1


def test_an_offer_near_the_end_of_the_awake_window_goes_to_the_queue(clock: Clock) -> None:
    inbox = _inbox()
    inbox.wake()
    clock.now += task_handoff.AWAKE_S - 0.05  # within the margin: may be about to block
    assert inbox.awake()
    assert not inbox.offer(_task(1))
    inbox.wake()
    clock.now += 0.5
    assert inbox.offer(_task(2)), "awake well within the window"
    clock.now += 0.8  # 1.3 s after the wake, 0.8 s after the accepted offer
    assert inbox.offer(_task(3)), "a handed task keeps the worker awake too"
    clock.now += task_handoff.AWAKE_S
    assert not inbox.awake()
    assert not inbox.offer(_task(4))
    assert inbox.take() == [_task(2), _task(3)]


def test_an_offer_needs_a_free_slot_counting_the_tasks_not_taken_yet() -> None:
    free = [2]
    inbox = HandoffInbox(TOPIC, lambda: free[0])
    inbox.wake()
    assert inbox.offer(_task(1))
    assert inbox.offer(_task(2))
    assert not inbox.offer(_task(3)), "two slots, two tasks waiting"
    assert inbox.take() == [_task(1), _task(2)]
    free[0] = 0  # the worker started both: no slot left
    assert not inbox.offer(_task(4))
    free[0] = 1
    assert inbox.offer(_task(5))
    assert inbox.handed == 3


def test_take_returns_the_tasks_in_the_order_handed_and_only_once() -> None:
    inbox = _inbox()
    inbox.wake()
    for n in range(5):
        assert inbox.offer(_task(n))
    assert inbox.take() == [_task(n) for n in range(5)]
    assert inbox.take() == []


def test_close_returns_the_tasks_not_taken_and_refuses_more() -> None:
    inbox = _inbox()
    inbox.wake()
    assert inbox.offer(_task(1))
    assert inbox.take() == [_task(1)]
    assert inbox.offer(_task(2))
    assert inbox.offer(_task(3))
    assert inbox.close() == [_task(2), _task(3)], "to send to the queue"
    inbox.wake()
    assert not inbox.offer(_task(4))
    assert inbox.take() == []
    assert inbox.close() == []


async def test_wait_returns_when_another_thread_hands_a_task_over() -> None:
    inbox = _inbox()
    inbox.bind(asyncio.get_running_loop())
    inbox.wake()
    offered: list[bool] = []
    thread = _later(0.1, lambda: offered.append(inbox.offer(_task(1))))
    began = time.monotonic()
    await inbox.wait(10.0)
    waited = time.monotonic() - began
    thread.join()
    assert offered == [True]
    assert waited < 5.0, f"woken by the offer, not the timeout ({waited:.2f}s)"
    assert inbox.take() == [_task(1)]


async def test_wait_without_an_offer_lasts_its_timeout_and_not_with_a_task_waiting() -> None:
    inbox = _inbox()
    inbox.bind(asyncio.get_running_loop())
    began = time.monotonic()
    await inbox.wait(0.2)
    assert time.monotonic() - began >= 0.19
    inbox.wake()
    assert inbox.offer(_task(1))
    await asyncio.sleep(0)  # the offer's wake-up call runs
    began = time.monotonic()
    await inbox.wait(10.0)
    assert time.monotonic() - began < 5.0, "a task is there already"


async def test_wait_on_an_unbound_inbox_sleeps_its_timeout() -> None:
    inbox = _inbox()
    began = time.monotonic()
    await inbox.wait(0.1)
    assert time.monotonic() - began >= 0.09


# --- TaskHandoff ---------------------------------------------------------------------


def test_a_task_goes_to_the_inbox_of_its_topic_until_that_worker_leaves() -> None:
    handoff = TaskHandoff()
    mine, other = _inbox(), _inbox(topic=OTHER)
    for inbox in (mine, other):
        inbox.wake()
        handoff.join(inbox)
    assert handoff.offer(_task(1))
    assert handoff.offer(_task(2, OTHER))
    assert not handoff.offer(_task(3, LAYOUT.task_queue("nobody"))), "no worker here"
    assert mine.take() == [_task(1)]
    assert other.take() == [_task(2, OTHER)]
    handoff.leave(mine)
    assert not handoff.offer(_task(4))
    assert mine.take() == []
    assert handoff.offer(_task(5, OTHER)), "the other worker stays"


def test_a_worker_that_leaves_does_not_remove_its_successor_on_the_queue() -> None:
    handoff = TaskHandoff()
    old, new = _inbox(), _inbox()
    new.wake()
    handoff.join(old)
    handoff.join(new)  # replaces old for the topic
    handoff.leave(old)
    assert handoff.offer(_task(1))
    assert new.take() == [_task(1)]


def test_an_offer_the_inbox_refuses_goes_to_the_queue() -> None:
    handoff = TaskHandoff()
    inbox = _inbox(slots=0)
    handoff.join(inbox)
    assert not handoff.offer(_task(1)), "asleep"
    inbox.wake()
    assert not handoff.offer(_task(1)), "no free slot"
    assert not handoff.handed_within(60.0), "nothing was handed"


def test_handed_within_tells_whether_a_task_was_handed_lately(clock: Clock) -> None:
    handoff = TaskHandoff()
    inbox = _inbox()
    handoff.join(inbox)
    assert not handoff.handed_within(1.0)
    inbox.wake()
    assert handoff.offer(_task(1))
    assert handoff.handed_within(0.05)
    clock.now += 0.1
    assert not handoff.handed_within(0.05)
    assert handoff.handed_within(1.0)


def _outcome(n: int) -> EncodedRecord:
    return EncodedRecord(f"wf-{n}".encode(), f"outcome {n}".encode(), [])


def test_the_engine_awaits_outcomes_only_while_a_handed_task_is_out(clock: Clock) -> None:
    handoff = TaskHandoff()
    handoff.serve(lambda shard: True)
    inbox = _inbox()
    handoff.join(inbox)
    inbox.wake()
    assert not handoff.awaiting_outcomes(), "nothing handed: the engine blocks in Kafka"
    assert handoff.offer(_task(1))
    assert handoff.offer(_task(2))
    assert handoff.awaiting_outcomes()
    assert handoff.give_back(0, _outcome(1))
    assert handoff.returned() == [(0, _outcome(1))]
    assert handoff.awaiting_outcomes(), "task 2 is still out"
    assert handoff.give_back(0, _outcome(2))
    handoff.returned()
    assert not handoff.awaiting_outcomes(), "all back: between runs the engine blocks"


def test_an_outcome_that_never_comes_back_in_memory_stops_counting(clock: Clock) -> None:
    handoff = TaskHandoff()
    inbox = _inbox()
    handoff.join(inbox)
    inbox.wake()
    assert handoff.offer(_task(1))  # its outcome goes through Kafka (no engine serves)
    assert not handoff.give_back(0, _outcome(1))
    clock.now += MAX_START_TO_CLOSE_MS / 1000 / 2
    assert handoff.awaiting_outcomes(), "it may still be running"
    clock.now += MAX_START_TO_CLOSE_MS / 1000
    assert not handoff.awaiting_outcomes(), "longer than an attempt may run: not coming"


def test_an_outcome_comes_back_only_for_a_shard_the_engine_serves() -> None:
    handoff = TaskHandoff()
    assert not handoff.give_back(0, _outcome(1)), "no engine serves: through Kafka"
    served = {0, 2}
    handoff.serve(lambda shard: shard in served)
    assert handoff.give_back(0, _outcome(1))
    assert not handoff.give_back(1, _outcome(2))
    assert handoff.give_back(2, _outcome(3))
    served.discard(2)  # the shard moved to another worker
    assert not handoff.give_back(2, _outcome(4))
    assert handoff.has_returned()
    assert handoff.returned() == [(0, _outcome(1)), (2, _outcome(3))]
    assert not handoff.has_returned()
    assert handoff.returned() == []


def test_wait_returned_wakes_when_another_thread_gives_an_outcome_back() -> None:
    handoff = TaskHandoff()
    handoff.serve(lambda shard: True)
    thread = _later(0.1, lambda: handoff.give_back(1, _outcome(1)))
    began = time.monotonic()
    handoff.wait_returned(10.0)
    waited = time.monotonic() - began
    thread.join()
    assert waited < 5.0, f"woken by the outcome, not the timeout ({waited:.2f}s)"
    assert handoff.returned() == [(1, _outcome(1))]
    began = time.monotonic()
    handoff.wait_returned(0.2)
    assert time.monotonic() - began >= 0.19, "taken: nothing to wake for"


def test_after_the_engine_stops_serving_outcomes_go_through_kafka() -> None:
    handoff = TaskHandoff()
    handoff.serve(lambda shard: True)
    assert handoff.give_back(0, _outcome(1))
    handoff.stop_serving()
    assert not handoff.give_back(0, _outcome(2)), "nothing would take it back"
    assert handoff.returned() == [(0, _outcome(1))], "given back before: still there"


def test_no_outcome_is_kept_after_the_stop_while_a_worker_gives_back() -> None:
    handoff = TaskHandoff()
    handoff.serve(lambda shard: True)
    accepted: list[EncodedRecord] = []
    going = threading.Event()

    def give() -> None:
        n = 0
        while True:
            outcome = _outcome(n)
            if not handoff.give_back(0, outcome):
                return
            accepted.append(outcome)
            going.set()
            n += 1

    thread = threading.Thread(target=give)
    thread.start()
    assert going.wait(10.0)
    handoff.stop_serving()
    taken = [outcome for _, outcome in handoff.returned()]  # the engine's last take
    thread.join(10.0)
    assert handoff.returned() == [], "given back after the last take: lost"
    assert taken == accepted


# --- which tasks may be handed ---------------------------------------------------------


def _schedule(start_to_close_ms: int | None) -> cmd.ScheduleActivityTask:
    return cmd.ScheduleActivityTask(
        workflow_id="wf", run_id="r1", workflow_type="unit.type", activity_seq=1, attempt=1,
        activity_type="charge", task_queue="q", args=DataConverter().to_payloads([5]),
        scheduled_at=1_000, attempt_started_at=1_000, start_to_close_ms=start_to_close_ms,
    )


def test_only_a_task_with_a_short_start_to_close_timeout_may_be_handed(tmp_path: Path) -> None:
    parts = open_parts(tmp_path)
    records = DecisionRecords(
        output=parts.output, layout=LAYOUT, wire=parts.output.wire, timers=parts.timers,
        stats=parts.stats, local=None, token_key=None,
    )
    run = Execution("wf", "r1", "unit.type", "q", 1_000)
    (timed,) = records.of(run, _schedule(5_000))
    (untimed,) = records.of(run, _schedule(None))
    assert (timed.topic, timed.handoff) == (TOPIC, True)
    assert (untimed.topic, untimed.handoff) == (TOPIC, False)
    task = rec.ActivityTask(
        workflow_id="wf", run_id="r1", activity_seq=1, activity_type="a", attempt=1,
        task_queue="q", scheduled_time=1, start_to_close_timeout_ms=3_000,
    )
    assert parts.output.task(task).handoff
    assert parts.output.task(rec.ActivityTask(
        workflow_id="wf", run_id="r1", activity_seq=1, activity_type="a", attempt=1,
        task_queue="q", scheduled_time=1,
    )).handoff is False
    # a lost attempt is retried when its timeout runs out: a long one goes to the queue
    assert not parts.output.task(rec.ActivityTask(
        workflow_id="wf", run_id="r1", activity_seq=1, activity_type="a", attempt=1,
        task_queue="q", scheduled_time=1, start_to_close_timeout_ms=10_001,
    )).handoff
    assert parts.output.task(rec.ActivityTask(
        workflow_id="wf", run_id="r1", activity_seq=1, activity_type="a", attempt=1,
        task_queue="q", scheduled_time=1, start_to_close_timeout_ms=10_000,
    )).handoff
