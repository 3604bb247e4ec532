"""The attempts an activity worker runs, without a broker: what each one sends (the
outcome record, decoded back), what is counted, and which task offset is finished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator import activity
from orchestrator.converter import DataConverter
from orchestrator.serde.records import (
    ActivityCancel,
    ActivityTask,
    ActivityTaskCompleted,
    ActivityTaskFailed,
)
from orchestrator.serde.wire import EncodedRecord, WireFormat
from orchestrator.worker.activity_attempts import RunningAttempts
from orchestrator.worker.activity_cancels import AttemptCancels, CancelRegistry
from orchestrator.worker.activity_metrics import ActivityCounts
from orchestrator.worker.activity_runner import (
    CANCELLED_TYPE,
    AttemptRunner,
    activity_definitions,
)

CONV = DataConverter()
WIRE = WireFormat(source="/test")


@activity.defn(name="echo")
async def echo(text: str) -> str:
    return text


@activity.defn(name="later")
async def later() -> str:
    raise activity.CompleteAsync


@activity.defn(name="boom")
def boom() -> str:
    raise ValueError("no")


@activity.defn(name="nap")
async def nap() -> str:
    await asyncio.sleep(30)
    return "rested"


def task(activity_type: str, *args: object, seq: int = 1) -> ActivityTask:
    return ActivityTask(
        workflow_id="wf", run_id="r", activity_seq=seq, activity_type=activity_type,
        attempt=1, task_queue="q", scheduled_time=0, args=CONV.to_payloads(args),
    )  # fmt: skip


class Worker:
    """The parts a RunningAttempts reports to, recording what they were given."""

    def __init__(self, runner: AttemptRunner) -> None:
        self.sent: list[tuple[str, EncodedRecord, tuple[int, int]]] = []
        self.finished: list[tuple[int, int]] = []
        self.counts = ActivityCounts("q", None)
        self.cancels = AttemptCancels(CancelRegistry(), self.counts)
        self.attempts = RunningAttempts(
            runner,
            lambda *sent: self.sent.append(sent),
            self.cancels,
            self.counts,
            wire=WIRE,
            topic="t.tasks.q",
            finished=lambda p, o: self.finished.append((p, o)),
        )

    async def settle(self) -> None:
        await asyncio.wait_for(asyncio.gather(*self.attempts.tasks), 5)

    def outcomes(self) -> list[object]:
        return [WIRE.decode_command(rec.headers, rec.value).record for _, rec, _ in self.sent]


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    pool = ThreadPoolExecutor(2)
    runner = AttemptRunner(
        activity_definitions([echo, later, boom, nap]), CONV, pool, lambda _: None
    )
    yield Worker(runner)
    pool.shutdown(wait=True)


async def test_a_completed_attempt_sends_its_result_for_its_offset(worker: Worker) -> None:
    worker.attempts.start(task("echo", "hi"), partition=2, offset=40, traceparent=None)
    assert worker.attempts.running == 1
    await worker.settle()
    [(workflow_id, _, finishes)] = worker.sent
    assert (workflow_id, finishes) == ("wf", (2, 40))
    [outcome] = worker.outcomes()
    assert isinstance(outcome, ActivityTaskCompleted)
    assert CONV.from_payload(outcome.result, str) == "hi"
    assert worker.finished == []  # the sender finishes it once acknowledged
    assert (worker.counts.stats.started, worker.counts.stats.completed) == (1, 1)
    assert worker.attempts.running == 0
    assert not worker.attempts.tasks


async def test_a_failure_is_sent_as_a_retryable_failure(worker: Worker) -> None:
    worker.attempts.start(task("boom"), partition=0, offset=1, traceparent=None)
    await worker.settle()
    [outcome] = worker.outcomes()
    assert isinstance(outcome, ActivityTaskFailed)
    assert (outcome.failure.type, outcome.failure.non_retryable) == ("ValueError", False)
    assert worker.counts.stats.failed == 1


async def test_complete_async_sends_nothing_and_finishes_the_offset_at_once(
    worker: Worker,
) -> None:
    worker.attempts.start(task("later"), partition=1, offset=7, traceparent=None)
    await worker.settle()
    assert worker.sent == []
    assert worker.finished == [(1, 7)]
    assert worker.counts.stats.pending == 1


async def test_a_cancel_reaches_a_running_attempt_and_is_forgotten_after(
    worker: Worker,
) -> None:
    worker.attempts.start(task("nap", seq=5), partition=0, offset=3, traceparent=None)
    await asyncio.sleep(0.01)
    worker.cancels.apply([ActivityCancel(
        workflow_id="wf", run_id="r", activity_seq=5, attempt=1, task_queue="q",
        activity_type="nap", requested_time=0,
    )])  # fmt: skip
    await worker.settle()
    [outcome] = worker.outcomes()
    assert isinstance(outcome, ActivityTaskFailed)
    assert outcome.failure.type == CANCELLED_TYPE
    assert worker.counts.stats.cancelled == 1
    assert worker.cancels.running(("wf", "r", 5, 1)) == 0


async def test_cancel_all_stops_the_tasks_without_an_outcome(worker: Worker) -> None:
    worker.attempts.start(task("nap"), partition=0, offset=3, traceparent=None)
    await asyncio.sleep(0.01)
    worker.attempts.cancel_all()
    await asyncio.gather(*worker.attempts.tasks, return_exceptions=True)
    assert worker.sent == []
    assert worker.finished == []  # its offset stays unfinished: re-delivered
    assert worker.attempts.running == 0
