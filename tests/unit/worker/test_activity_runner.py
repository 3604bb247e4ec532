"""AttemptRunner without Kafka: outcomes, timeouts, heartbeats, registration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator import activity
from orchestrator.converter import DataConverter
from orchestrator.exceptions import ApplicationError
from orchestrator.serde.records import (
    ActivityHeartbeat,
    ActivityTask,
    ActivityTaskCompleted,
    ActivityTaskFailed,
)
from orchestrator.worker.activity_runner import AttemptRunner, activity_definitions, is_timeout

CONV = DataConverter()


@activity.defn(name="add")
async def add(a: int, b: int) -> int:
    return a + b


@activity.defn(name="slow_sync")
def slow_sync(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


@activity.defn(name="beats")
async def beats(n: int) -> str:
    for i in range(n):
        activity.heartbeat(i)
        await asyncio.sleep(0.02)
    return activity.info().idempotency_key


@activity.defn(name="sync_beats")
def sync_beats(n: int) -> int:
    for i in range(n):
        activity.heartbeat(i)
        time.sleep(0.02)
    return n


@activity.defn(name="fail")
def fail() -> None:
    raise ApplicationError("nope", type="Nope")


def task(activity_type: str, *args: object, **fields: object) -> ActivityTask:
    return ActivityTask(
        workflow_id="wf",
        run_id="r",
        activity_seq=3,
        activity_type=activity_type,
        attempt=2,
        task_queue="q",
        scheduled_time=0,
        args=CONV.to_payloads(args),
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def sent() -> list[ActivityHeartbeat]:
    return []


@pytest.fixture
def runner(sent: list[ActivityHeartbeat]) -> Iterator[AttemptRunner]:
    pool = ThreadPoolExecutor(4)
    yield AttemptRunner(
        activity_definitions([add, slow_sync, beats, sync_beats, fail]),
        CONV,
        pool,
        sent.append,
        identity="test",
        heartbeat_throttle_s=0.05,
    )
    pool.shutdown(wait=True)


async def test_completed_and_failed(runner: AttemptRunner) -> None:
    done = await runner.run(task("add", 2, 3))
    assert isinstance(done, ActivityTaskCompleted)
    assert CONV.from_payload(done.result, int) == 5
    assert (done.attempt, done.identity) == (2, "test")
    failed = await runner.run(task("fail"))
    assert isinstance(failed, ActivityTaskFailed)
    assert (failed.failure.type, failed.failure.message) == ("Nope", "nope")
    assert not failed.failure.non_retryable
    unknown = await runner.run(task("missing"))
    assert isinstance(unknown, ActivityTaskFailed)
    assert unknown.failure.non_retryable and "'missing'" in unknown.failure.message


async def test_sync_start_to_close_timeout_abandons_the_thread(runner: AttemptRunner) -> None:
    started = time.monotonic()
    outcome = await runner.run(task("slow_sync", 0.5, start_to_close_timeout_ms=100))
    assert time.monotonic() - started < 0.4
    assert is_timeout(outcome)


async def test_heartbeats_are_throttled_and_keep_the_attempt_alive(
    runner: AttemptRunner, sent: list[ActivityHeartbeat]
) -> None:
    # about 1 s of beats 20 ms apart against a 400 ms heartbeat timeout: alive only
    # because it beats (the margin is for a loaded machine, where a 20 ms sleep can last
    # 200 ms)
    outcome = await runner.run(task("beats", 50, heartbeat_timeout_ms=400))
    assert isinstance(outcome, ActivityTaskCompleted)
    assert CONV.from_payload(outcome.result, str) == "wf/r/3"
    assert 2 <= len(sent) < 50  # throttled, latest details win
    assert CONV.from_payloads(sent[-1].details, [int]) == [49]
    sent.clear()
    outcome = await runner.run(task("sync_beats", 30, heartbeat_timeout_ms=400))
    assert isinstance(outcome, ActivityTaskCompleted)
    assert sent and CONV.from_payloads(sent[-1].details, [int]) == [29]


def test_registration_by_mapping_and_duplicates() -> None:
    defs = activity_definitions({"plus": add, "add": add})
    assert sorted(defs) == ["add", "plus"]
    with pytest.raises(ValueError, match="registered twice"):
        activity_definitions([add, add])
