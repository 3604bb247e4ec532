"""Saga semantics (docs/sagas.md) on real Kafka, with an engine worker and an activity
worker in process: compensations in reverse order, parallel compensation, the pivot,
a cancel that arrives while compensations run, and COMPENSATION_FAILED.

Each run's activities log their effects under the run's id; a test checks that log,
the status ``describe()`` reports, the error ``result()`` raises and the history the
engine serves (``fetch_history``). One engine and one activity worker serve the module.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import Client
from orchestrator.converter import DataConverter
from orchestrator.devstack import providers
from orchestrator.engine import events as ev
from orchestrator.exceptions import ApplicationError, CompensationError, WorkflowFailedError
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.retry import RetryPolicy
from orchestrator.status import WorkflowStatus
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "saga-semantics"
WAIT_S = 60.0
STEP_RETRY = RetryPolicy(initial=timedelta(milliseconds=100), backoff=1.0, max_attempts=1)
UNDO_RETRY = RetryPolicy(initial=timedelta(milliseconds=100), backoff=1.0, max_attempts=2)
FLAKY_FAILURES = 2
CONVERTER = DataConverter()


@dataclass
class Plan:
    """What one run does: its steps (each with an undo), in order."""

    run: str
    steps: list[str]
    fail_at: str = ""  # this step fails terminally
    pivot_at: str = ""  # this step is the pivot
    flaky: str = ""  # this step fails its first FLAKY_FAILURES attempts (retryably)
    undo_fails: list[str] = field(default_factory=list)  # these undos fail every attempt
    hold: list[str] = field(default_factory=list)  # these effects wait for release()
    parallel: bool = False
    together: int = 0  # undos wait (bounded) until this many have started


# --- what the activities did, per run -------------------------------------------------

_lock = threading.Lock()
_effects: dict[str, list[str]] = {}
_undos_started: dict[str, int] = {}
_released: dict[str, threading.Event] = {}


def record(run: str, what: str) -> None:
    with _lock:
        _effects.setdefault(run, []).append(what)


def effects(run: str) -> list[str]:
    with _lock:
        return list(_effects.get(run, []))


def release(run: str) -> None:
    with _lock:
        _released.setdefault(run, threading.Event()).set()


def wait_until(what: str, check: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Wait for ``check`` to hold (a synchronisation point, not an assertion)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def _until(check: Callable[[], bool], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _held(plan: Plan, what: str) -> None:
    if what in plan.hold:
        record(plan.run, f"{what} holding")
        with _lock:
            event = _released.setdefault(plan.run, threading.Event())
        if not await _until(event.is_set, 2 * WAIT_S):
            raise ApplicationError(f"{what} was never released", non_retryable=True)


@activity.defn(name="sem.do")
async def do(plan: Plan, tag: str) -> str:
    attempt = activity.info().attempt
    await _held(plan, f"do {tag}")
    if tag == plan.fail_at:
        record(plan.run, f"{tag} refused")
        raise ApplicationError(f"{tag} refused", type="Refused", non_retryable=True)
    if tag == plan.flaky and attempt <= FLAKY_FAILURES:
        record(plan.run, f"{tag} attempt {attempt} failed")
        raise ApplicationError(f"{tag} flaked", type="Flaky")
    record(plan.run, f"do {tag}")
    return tag


@activity.defn(name="sem.undo")
async def undo(plan: Plan, tag: str) -> None:
    if tag in plan.undo_fails:
        record(plan.run, f"undo {tag} attempt {activity.info().attempt} failed")
        raise ApplicationError(f"undo {tag} failed", type="UndoFailed")
    record(plan.run, f"undo {tag} started")
    with _lock:
        _undos_started[plan.run] = _undos_started.get(plan.run, 0) + 1

    def all_started() -> bool:
        with _lock:
            return _undos_started[plan.run] >= plan.together

    together = await _until(all_started, 15.0)
    await _held(plan, f"undo {tag}")
    record(plan.run, f"undo {tag}" + (" (all started)" if plan.together and together else ""))


@workflow.defn(name="sem.saga")
async def saga_of(ctx: workflow.WorkflowContext, plan: Plan) -> list[str]:
    saga = ctx.saga(parallel_compensation=plan.parallel)
    done = []
    for tag in plan.steps:
        done.append(await saga.step(
            do, plan, tag, compensate=undo, compensate_args=(plan, tag),
            pivot=tag == plan.pivot_at, retry=STEP_RETRY, compensation_retry=UNDO_RETRY,
            task_queue=QUEUE, start_to_close=timedelta(seconds=4 * WAIT_S),
        ))
    return done


# --- one engine and one activity worker for the module --------------------------------


@pytest.fixture(scope="module")
def client(kafka: providers.KafkaHandle) -> Iterator[Client]:
    config: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap_servers}
    prefix = f"sem{uuid.uuid4().hex[:8]}"
    layout = TopicLayout(prefix=prefix, shards=SHARDS)
    ensure_topics(AdminClient(config), layout, [QUEUE])
    options = ProcessorOptions(worker_id=f"{prefix}-engine", transaction_timeout_ms=5000)
    with (
        EngineWorker(config, layout, [saga_of], options=options),
        ActivityWorker(config, QUEUE, [do, undo], layout=layout),
        Client(config, layout=layout) as c,
    ):
        yield c


def start(client: Client, plan: Plan) -> None:
    client.start(saga_of, plan, id=plan.run, task_queue=QUEUE)


def failed(client: Client, run: str) -> WorkflowFailedError:
    with pytest.raises(WorkflowFailedError) as info:
        client.get_handle(run).result(timeout=WAIT_S)
    return info.value


def status(client: Client, run: str) -> WorkflowStatus:
    return client.get_handle(run).describe(timeout=WAIT_S).status


def history(client: Client, run: str) -> list[ev.Event]:
    return client.fetch_history(run, timeout=WAIT_S).events


def undone(events: list[ev.Event]) -> list[str]:
    """The steps whose undo the engine scheduled, in order."""
    return [
        CONVERTER.from_payloads(e.input, [Plan, str])[1]
        for e in events
        if isinstance(e, ev.ActivityScheduled) and e.activity_type == "sem.undo"
    ]


def kinds(events: list[ev.Event], *types: type[ev.Event]) -> list[str]:
    return [type(e).__name__ for e in events if isinstance(e, types)]


def run_id() -> str:
    return f"sem-{uuid.uuid4().hex[:8]}"


# --- the tests ---------------------------------------------------------------------------


def test_compensations_run_in_reverse_order_of_the_steps(client: Client) -> None:
    plan = Plan(run_id(), ["a", "b", "c", "d"], fail_at="d")
    start(client, plan)
    error = failed(client, plan.run)

    assert error.status == "FAILED"
    assert error.cause is not None and "d refused" in str(error.cause)
    assert [e for e in effects(plan.run) if not e.endswith("started")] == [
        "do a", "do b", "do c", "d refused", "undo c", "undo b", "undo a",
    ]
    assert status(client, plan.run) is WorkflowStatus.FAILED
    events = history(client, plan.run)
    comp = next(e for e in events if isinstance(e, ev.CompensationStarted))
    assert comp.compensations == ["sem.undo"] * 3
    assert comp.cause is not None and "d refused" in comp.cause.message
    assert undone(events) == ["c", "b", "a"]  # d failed: nothing of it to undo
    assert kinds(events, ev.CompensationCompleted, ev.WorkflowFailed) == [
        "CompensationCompleted", "WorkflowFailed",
    ]


def test_parallel_compensation_starts_every_undo_at_once(client: Client) -> None:
    plan = Plan(run_id(), ["a", "b", "c", "d"], fail_at="d", parallel=True, together=3)
    start(client, plan)
    assert failed(client, plan.run).status == "FAILED"

    undos = [e for e in effects(plan.run) if e.startswith("undo")]
    # every undo had started before any of them finished
    assert sorted(undos[:3]) == ["undo a started", "undo b started", "undo c started"]
    assert sorted(undos[3:]) == [f"undo {t} (all started)" for t in "abc"]
    events = history(client, plan.run)
    comp_at = next(i for i, e in enumerate(events) if isinstance(e, ev.CompensationStarted))
    # the three undos were scheduled in one decision, before any of them completed
    assert kinds(events[comp_at + 1 : comp_at + 4], ev.ActivityScheduled) == [
        "ActivityScheduled"
    ] * 3
    assert sorted(undone(events)) == ["a", "b", "c"]
    assert status(client, plan.run) is WorkflowStatus.FAILED


def test_after_the_pivot_steps_are_retried_forward_not_compensated(client: Client) -> None:
    plan = Plan(run_id(), ["a", "b", "c"], pivot_at="b", flaky="c")
    start(client, plan)
    # STEP_RETRY allows one attempt; after the pivot the step is retried without limit
    assert client.get_handle(plan.run).result(timeout=WAIT_S) == ["a", "b", "c"]

    assert effects(plan.run) == [
        "do a", "do b", "c attempt 1 failed", "c attempt 2 failed", "do c",
    ]
    assert status(client, plan.run) is WorkflowStatus.COMPLETED
    events = history(client, plan.run)
    c_scheduled = [e for e in events if isinstance(e, ev.ActivityScheduled)][2]
    assert c_scheduled.retry_policy.max_attempts == 0
    assert c_scheduled.retry_policy.expire_after_ms is None
    assert len(kinds(events, ev.ActivityAttemptFailed)) == FLAKY_FAILURES
    assert kinds(events, ev.CompensationStarted) == []


def test_a_terminal_failure_after_the_pivot_compensates_nothing(client: Client) -> None:
    plan = Plan(run_id(), ["a", "b", "c"], pivot_at="b", fail_at="c")
    start(client, plan)
    error = failed(client, plan.run)

    assert error.status == "FAILED"
    assert effects(plan.run) == ["do a", "do b", "c refused"]
    events = history(client, plan.run)
    assert kinds(events, ev.CompensationStarted) == []
    assert isinstance(events[-1], ev.WorkflowFailed)


def test_a_cancel_during_compensation_does_not_interrupt_it(client: Client) -> None:
    plan = Plan(run_id(), ["a", "b", "c", "d"], fail_at="d", hold=["undo b"])
    start(client, plan)
    wait_until("undo b to start", lambda: "undo b holding" in effects(plan.run))
    assert status(client, plan.run) is WorkflowStatus.COMPENSATING

    client.get_handle(plan.run).cancel("changed my mind", wait=WAIT_S)
    wait_until("the cancel request in history", lambda: any(
        isinstance(e, ev.WorkflowCancelRequested) for e in history(client, plan.run)
    ))
    release(plan.run)
    error = failed(client, plan.run)

    # the compensation finished, the run ends as its original error says (docs/sagas.md)
    assert error.status == "FAILED"
    assert error.cause is not None and "d refused" in str(error.cause)
    assert [e for e in effects(plan.run) if not e.endswith("started")] == [
        "do a", "do b", "do c", "d refused", "undo c", "undo b holding", "undo b", "undo a",
    ]
    assert status(client, plan.run) is WorkflowStatus.FAILED
    events = history(client, plan.run)
    assert kinds(events, ev.CompensationStarted, ev.WorkflowCancelRequested,
                 ev.CompensationCompleted, ev.WorkflowFailed) == [
        "CompensationStarted", "WorkflowCancelRequested", "CompensationCompleted",
        "WorkflowFailed",
    ]
    assert kinds(events, ev.ActivityCancelRequested) == []  # no undo was interrupted
    assert undone(events) == ["c", "b", "a"]


def test_a_cancel_compensates_and_a_second_cancel_does_not_stop_it(client: Client) -> None:
    plan = Plan(run_id(), ["a", "b", "c"], hold=["do c", "undo b"])
    start(client, plan)
    handle = client.get_handle(plan.run)
    wait_until("step c to start", lambda: "do c holding" in effects(plan.run))
    handle.cancel("first", wait=WAIT_S)
    wait_until("undo b to start", lambda: "undo b holding" in effects(plan.run))
    handle.cancel("second", wait=WAIT_S)
    # a read goes through the same command partition: the shard has seen the cancel
    assert status(client, plan.run) is WorkflowStatus.COMPENSATING
    release(plan.run)
    error = failed(client, plan.run)

    assert error.status == "CANCELLED"
    undos = [e for e in effects(plan.run) if e.startswith("undo") and "started" not in e]
    assert undos == ["undo b holding", "undo b", "undo a"]  # c never succeeded
    assert status(client, plan.run) is WorkflowStatus.CANCELLED
    events = history(client, plan.run)
    assert undone(events) == ["b", "a"]
    assert kinds(events, ev.WorkflowCancelRequested) == ["WorkflowCancelRequested"]
    assert kinds(events, ev.CompensationCompleted, ev.WorkflowCancelled) == [
        "CompensationCompleted", "WorkflowCancelled",
    ]


def test_a_compensation_that_exhausts_its_policy_stops_the_sequence(client: Client) -> None:
    plan = Plan(run_id(), ["a", "b", "c", "d"], fail_at="d", undo_fails=["b"])
    start(client, plan)
    error = failed(client, plan.run)

    assert error.cause is not None and "d refused" in str(error.cause)
    assert [e for e in effects(plan.run) if not e.endswith("started")] == [
        "do a", "do b", "do c", "d refused", "undo c",
        "undo b attempt 1 failed", "undo b attempt 2 failed",  # UNDO_RETRY: two attempts
    ]  # and undo a never ran: not over a later step that could not be undone
    assert status(client, plan.run) is WorkflowStatus.COMPENSATION_FAILED
    events = history(client, plan.run)
    assert undone(events) == ["c", "b"]
    comp_failed = next(e for e in events if isinstance(e, ev.CompensationFailed))
    assert comp_failed.activity_type == "sem.undo"
    end = events[-1]
    assert isinstance(end, ev.WorkflowCompensationFailed)
    assert "d refused" in end.failure.message or (
        end.failure.cause is not None and "d refused" in end.failure.cause.message
    )
    assert len(end.compensation_failures) == 1
    assert kinds(events, ev.CompensationCompleted) == []


def test_parallel_compensation_runs_every_undo_and_keeps_every_failure(
    client: Client,
) -> None:
    plan = Plan(run_id(), ["a", "b", "c", "d"], fail_at="d", undo_fails=["a", "c"],
                parallel=True)
    start(client, plan)
    failed(client, plan.run)

    done = effects(plan.run)
    assert "undo b" in done
    assert {e for e in done if "failed" in e} == {
        f"undo {t} attempt {n} failed" for t in "ac" for n in (1, 2)
    }
    events = history(client, plan.run)
    assert sorted(e.activity_type for e in events if isinstance(e, ev.CompensationFailed)) == [
        "sem.undo", "sem.undo",
    ]
    end = events[-1]
    assert isinstance(end, ev.WorkflowCompensationFailed)
    assert len(end.compensation_failures) == 2
    assert status(client, plan.run) is WorkflowStatus.COMPENSATION_FAILED


def test_the_result_of_a_compensation_failed_run_says_so(client: Client) -> None:
    plan = Plan(run_id(), ["a", "b"], fail_at="b", undo_fails=["a"])
    start(client, plan)
    error = failed(client, plan.run)
    assert status(client, plan.run) is WorkflowStatus.COMPENSATION_FAILED
    assert error.cause is not None and "b refused" in str(error.cause)
    assert error.status == "COMPENSATION_FAILED"
    assert isinstance(error.cause, CompensationError)
    [gave_up] = error.compensation_errors  # the undo's ActivityError, after its attempts
    assert "undo a failed" in str(gave_up.__cause__)
