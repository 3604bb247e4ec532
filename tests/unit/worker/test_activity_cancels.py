"""The activity worker's cancel channel without Kafka: the registry of cancels (bounded,
expiring) and attempts stopped by their AttemptCancel."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator import activity
from orchestrator.converter import DataConverter
from orchestrator.exceptions import ActivityCancelledError
from orchestrator.serde.records import ActivityCancel, ActivityTask, ActivityTaskFailed
from orchestrator.worker.activity_cancels import AttemptCancels, CancelRegistry, attempt_key
from orchestrator.worker.activity_metrics import ActivityCounts
from orchestrator.worker.activity_runner import (
    CANCELLED_TYPE,
    AttemptCancel,
    AttemptRunner,
    activity_definitions,
    is_cancellation,
)

CONV = DataConverter()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def key(n: int) -> tuple[str, str, int, int]:
    return ("wf", "run", n, 1)


def test_the_registry_remembers_a_cancel_until_it_expires() -> None:
    clock = Clock()
    registry = CancelRegistry(max_entries=10, ttl_s=60, clock=clock)
    registry.add(key(1))
    assert key(1) in registry
    assert key(2) not in registry
    assert ("wf", "run", 1, 2) not in registry  # another attempt of the same activity
    clock.now += 60
    assert key(1) in registry
    clock.now += 0.5
    assert key(1) not in registry
    assert len(registry) == 0  # an expired entry found by a lookup is dropped


def test_the_registry_drops_expired_entries_as_new_ones_come() -> None:
    clock = Clock()
    registry = CancelRegistry(max_entries=1000, ttl_s=10, clock=clock)
    for n in range(100):
        registry.add(key(n))
        clock.now += 1
    assert len(registry) <= 11
    assert key(99) in registry
    assert key(80) not in registry


def test_the_registry_is_bounded_and_forgets_the_oldest_first() -> None:
    registry = CancelRegistry(max_entries=3, ttl_s=3600, clock=Clock())
    for n in range(5):
        registry.add(key(n))
    assert len(registry) == 3
    assert registry.evicted == 2
    assert [n for n in range(5) if key(n) in registry] == [2, 3, 4]


def test_adding_again_refreshes_an_entry() -> None:
    clock = Clock()
    registry = CancelRegistry(max_entries=2, ttl_s=10, clock=clock)
    registry.add(key(1))
    registry.add(key(2))
    clock.now += 5
    registry.add(key(1))  # now the newest: key 2 goes first
    registry.add(key(3))
    assert key(1) in registry
    assert key(2) not in registry
    clock.now += 8
    assert key(1) in registry  # counted from the second add


def test_the_registry_refuses_a_useless_size() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        CancelRegistry(max_entries=0)


def test_a_task_and_its_cancel_name_the_same_attempt() -> None:
    t = task("nap")
    cancel = ActivityCancel(
        workflow_id="wf", run_id="r", activity_seq=3, attempt=2, task_queue="q",
        activity_type="nap", requested_time=0,
    )  # fmt: skip
    assert attempt_key(t) == attempt_key(cancel) == ("wf", "r", 3, 2)


def cancel_of(seq: int, attempt: int = 1) -> ActivityCancel:
    return ActivityCancel(
        workflow_id="wf", run_id="run", activity_seq=seq, attempt=attempt, task_queue="q",
        activity_type="nap", requested_time=0,
    )  # fmt: skip


def test_a_cancel_stops_every_twin_of_its_attempt_running_here_once() -> None:
    counts = ActivityCounts("q", None)
    cancels = AttemptCancels(CancelRegistry(), counts)
    first, twin, other = cancels.started(key(1)), cancels.started(key(1)), cancels.started(key(2))
    cancels.apply([cancel_of(1)])
    assert (first.requested, twin.requested, other.requested) == (True, True, False)
    assert key(1) in cancels  # remembered, for a re-delivery of its task
    assert key(2) not in cancels
    cancels.apply([cancel_of(1)])  # read again (e.g. the catch-up overlapped)
    assert counts.stats.cancels_received == 2


def test_an_attempt_is_forgotten_once_all_its_twins_finished() -> None:
    cancels = AttemptCancels(CancelRegistry(), ActivityCounts("q", None))
    first, twin = cancels.started(key(1)), cancels.started(key(1))
    cancels.finished(key(1), first)
    assert cancels.running(key(1)) == 1
    cancels.finished(key(1), first)  # twice: no harm
    cancels.finished(key(1), twin)
    assert cancels.running(key(1)) == 0
    cancels.apply([cancel_of(1)])  # nothing running to stop: only remembered
    assert not first.requested
    assert key(1) in cancels


def test_a_cancel_names_one_attempt_not_the_next() -> None:
    cancels = AttemptCancels(CancelRegistry(), ActivityCounts("q", None))
    retry = cancels.started(("wf", "run", 1, 2))
    cancels.apply([cancel_of(1, attempt=1)])
    assert not retry.requested


# --- attempts stopped by their cancel ------------------------------------------------------

_observed: dict[str, str] = {}
_sync_started = threading.Event()


@activity.defn(name="nap")
async def nap(seconds: float) -> str:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _observed["nap"] = f"CancelledError, is_cancelled={activity.is_cancelled()}"
        raise
    return "rested"


@activity.defn(name="stubborn")
async def stubborn() -> str:
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        return "returned a value instead"
    return "rested"


@activity.defn(name="grind")
def grind(limit_s: float) -> str:
    _sync_started.set()
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            activity.heartbeat()
        except ActivityCancelledError:
            _observed["grind"] = f"heartbeat raised, is_cancelled={activity.is_cancelled()}"
            raise
        time.sleep(0.005)
    return "ground"


_quick_returned = threading.Event()


@activity.defn(name="quick_on_cancel")
def quick_on_cancel() -> str:
    """Returns a value as soon as its flag is set, without calling heartbeat."""
    while not activity.is_cancelled():
        time.sleep(0.001)
    _quick_returned.set()
    return "late result"


@activity.defn(name="never")
def never() -> str:
    _observed["never"] = "ran"
    return "ran"


def task(activity_type: str, *args: object) -> ActivityTask:
    return ActivityTask(
        workflow_id="wf", run_id="r", activity_seq=3, activity_type=activity_type, attempt=2,
        task_queue="q", scheduled_time=0, args=CONV.to_payloads(args),
    )  # fmt: skip


@pytest.fixture
def runner() -> Iterator[AttemptRunner]:
    pool = ThreadPoolExecutor(2)
    yield AttemptRunner(
        activity_definitions([nap, stubborn, grind, quick_on_cancel, never]), CONV, pool,
        lambda _: None, heartbeat_throttle_s=0.05,
    )  # fmt: skip
    pool.shutdown(wait=True)


def _assert_cancelled(outcome: object) -> None:
    assert isinstance(outcome, ActivityTaskFailed)
    assert is_cancellation(outcome)
    assert outcome.failure.type == CANCELLED_TYPE
    assert outcome.failure.non_retryable


async def test_an_async_attempt_gets_cancelled_error_at_its_await(runner: AttemptRunner) -> None:
    cancel = AttemptCancel()
    asyncio.get_running_loop().call_later(0.05, cancel.cancel)
    began = time.monotonic()
    outcome = await runner.run(task("nap", 30.0), cancel)
    assert time.monotonic() - began < 1.0
    _assert_cancelled(outcome)
    assert _observed["nap"] == "CancelledError, is_cancelled=True"


async def test_a_value_returned_after_the_cancel_is_still_a_cancellation(
    runner: AttemptRunner,
) -> None:
    cancel = AttemptCancel()
    asyncio.get_running_loop().call_later(0.05, cancel.cancel)
    _assert_cancelled(await runner.run(task("stubborn"), cancel))


async def test_a_sync_attempt_sees_the_flag_and_its_heartbeat_raises(
    runner: AttemptRunner,
) -> None:
    cancel = AttemptCancel()
    loop = asyncio.get_running_loop()
    run = loop.create_task(runner.run(task("grind", 30.0), cancel))
    await loop.run_in_executor(None, _sync_started.wait, 5)
    cancel.cancel()
    outcome = await asyncio.wait_for(run, 2)
    _assert_cancelled(outcome)
    assert _observed["grind"] == "heartbeat raised, is_cancelled=True"


async def test_a_sync_value_returned_in_the_same_turn_as_the_cancel_is_a_cancellation(
    runner: AttemptRunner,
) -> None:
    """The attempt's thread returns while the loop is still busy with the cancel, so the
    runner wakes to find both the cancel and the result done (a race seen in CI)."""
    cancel = AttemptCancel()
    loop = asyncio.get_running_loop()
    run = loop.create_task(runner.run(task("quick_on_cancel"), cancel))
    await asyncio.sleep(0.05)  # the attempt is running and polling its flag

    def cancel_and_let_the_thread_return() -> None:
        cancel.cancel()
        assert _quick_returned.wait(5)  # blocks the loop until the thread returned

    loop.call_soon(cancel_and_let_the_thread_return)
    _assert_cancelled(await asyncio.wait_for(run, 2))


async def test_an_attempt_cancelled_before_it_started_is_not_called(
    runner: AttemptRunner,
) -> None:
    cancel = AttemptCancel()
    cancel.cancel()
    _assert_cancelled(await runner.run(task("never"), cancel))
    assert "never" not in _observed


def test_is_cancelled_outside_an_activity_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="outside an activity"):
        activity.is_cancelled()


def test_the_cancel_consumer_uses_the_workers_security_settings() -> None:
    from orchestrator.serde.wire import WireFormat
    from orchestrator.worker.activity_cancels import CancelReader

    secure = {
        "bootstrap.servers": "broker:9093", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u", "sasl.password": "p",
        "ssl.ca.location": "/ca.pem",
    }  # fmt: skip
    reader = CancelReader(
        secure, "p.activity-cancels", "q", WireFormat(), lookback_s=60, client_id="c"
    )
    config = reader._config  # what the consumer is built from
    assert secure.items() <= config.items()
    assert config["isolation.level"] == "read_committed"
    assert config["enable.auto.commit"] is False
