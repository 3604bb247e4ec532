"""Workflow features through the public API: cancellation, sagas, children, timers..."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest

from orchestrator import activity, workflow
from orchestrator.engine import events as ev
from orchestrator.exceptions import (
    ApplicationError,
    ChildWorkflowError,
    WorkflowFailedError,
)
from orchestrator.testing import WorkflowEnvironment
from orchestrator.workflow import RetryPolicy, Saga, WorkflowContext, WorkflowStatus, seconds

LOG: list[str] = []


@pytest.fixture(autouse=True)
def _clean_log() -> Iterator[None]:
    LOG.clear()
    yield
    LOG.clear()


@activity.defn
def act(name: str) -> str:
    LOG.append(name)
    return name


@activity.defn
def undo(name: str) -> str:
    LOG.append(f"undo {name}")
    return name


@activity.defn
def undo_broken(name: str) -> None:
    LOG.append(f"undo_broken {name} attempt {activity.info().attempt}")
    raise ApplicationError("ledger locked", type="Locked")


@activity.defn
def flaky_undo(name: str) -> None:
    info = activity.info()
    if info.attempt < 4:
        LOG.append(f"flaky_undo {name} attempt {info.attempt} failed")
        raise ApplicationError("try later")
    LOG.append(f"undo {name}")


@activity.defn
def fail(name: str) -> None:
    raise ApplicationError(f"{name} failed", type="Boom", non_retryable=True)


ACTS = [act, undo, undo_broken, flaky_undo, fail]


def types_of(history: list[ev.Event]) -> list[str]:
    return [type(e).__name__ for e in history]


# --- cancellation ---------------------------------------------------------------------


@workflow.defn(name="cancellable")
async def cancellable(ctx: WorkflowContext) -> str:
    saga = ctx.saga()
    await saga.step(act, "reserve", compensate=undo)
    try:
        await ctx.sleep(timedelta(days=10))
    except asyncio.CancelledError:
        if not ctx.is_replaying:  # the environment replays each closed run
            LOG.append(f"cancelled at {ctx.now().date().isoformat()}")
        raise
    return "not reached"


async def test_cancel_delivers_cancelled_error_at_the_await_and_compensates() -> None:
    env = WorkflowEnvironment(workflows=[cancellable], activities=ACTS)
    handle = await env.start_workflow(cancellable)
    await env.sleep(timedelta(days=2))
    await handle.cancel("customer asked")

    with pytest.raises(WorkflowFailedError) as info:
        await handle.result()

    assert info.value.status == "CANCELLED"
    assert LOG == ["reserve", "cancelled at 2025-01-03", "undo reserve"]
    kinds = types_of(handle.history)
    assert kinds.index("WorkflowCancelRequested") < kinds.index("TimerCancelled")
    assert kinds[-1] == "WorkflowCancelled"
    assert handle.status is WorkflowStatus.CANCELLED


@workflow.defn(name="slow_compensation")
async def slow_compensation(ctx: WorkflowContext) -> None:
    saga = ctx.saga()
    await saga.step(act, "a", compensate=flaky_undo)
    await ctx.execute_activity(fail, "b")


async def test_compensation_is_shielded_from_cancellation() -> None:
    env = WorkflowEnvironment(workflows=[slow_compensation], activities=ACTS)
    handle = await env.start_workflow(slow_compensation)
    await env.sleep(timedelta(milliseconds=1500))  # compensating, between retries
    assert handle.status is WorkflowStatus.COMPENSATING
    await handle.cancel()

    with pytest.raises(WorkflowFailedError) as info:
        await handle.result()

    assert LOG[-1] == "undo a"
    assert info.value.status == "FAILED"
    assert "b failed" in str(info.value)


@workflow.defn(name="compensation_fails")
async def compensation_fails(ctx: WorkflowContext) -> None:
    saga = ctx.saga()
    await saga.step(act, "first", compensate=undo)
    await saga.step(act, "second", compensate=undo_broken,
                    compensation_retry=RetryPolicy(max_attempts=3))
    await ctx.execute_activity(fail, "third")


async def test_compensation_exhausting_policy_ends_compensation_failed_with_both_errors() -> None:
    env = WorkflowEnvironment(workflows=[compensation_fails], activities=ACTS)
    handle = await env.start_workflow(compensation_fails)

    with pytest.raises(WorkflowFailedError) as info:
        await handle.result()

    assert info.value.status == "COMPENSATION_FAILED"
    assert handle.status is WorkflowStatus.COMPENSATION_FAILED
    assert "third failed" in str(info.value)
    [comp_error] = info.value.compensation_errors
    assert isinstance(comp_error, ApplicationError)
    assert comp_error.__cause__ is not None and "ledger locked" in str(comp_error.__cause__)
    # the earlier step is not compensated over a failed later compensation
    assert "undo first" not in LOG
    assert [x for x in LOG if x.startswith("undo_broken")] == [
        f"undo_broken second attempt {n}" for n in (1, 2, 3)
    ]
    last = handle.history[-1]
    assert isinstance(last, ev.WorkflowCompensationFailed)
    assert last.failure.cause is not None and last.failure.cause.message == "third failed"
    assert last.compensation_failures[0].cause is not None
    assert last.compensation_failures[0].cause.type == "Locked"
    assert any(isinstance(e, ev.CompensationFailed) and e.activity_type == "undo_broken"
               for e in handle.history)


@workflow.defn(name="parallel_undo")
async def parallel_undo(ctx: WorkflowContext) -> None:
    saga = ctx.saga(parallel_compensation=True)
    for name in ("x", "y", "z"):
        await saga.step(act, name, compensate=undo)
    await ctx.execute_activity(fail, "w")


async def test_parallel_compensation_schedules_all_compensations_at_once() -> None:
    env = WorkflowEnvironment(workflows=[parallel_undo], activities=ACTS)
    handle = await env.start_workflow(parallel_undo)
    with pytest.raises(WorkflowFailedError):
        await handle.result()
    history = handle.history
    comp_start = next(i for i, e in enumerate(history) if isinstance(e, ev.CompensationStarted))
    nxt = history[comp_start + 1: comp_start + 4]
    assert [e.activity_type for e in nxt if isinstance(e, ev.ActivityScheduled)] == [
        "undo", "undo", "undo"
    ]
    assert sorted(LOG[-3:]) == ["undo x", "undo y", "undo z"]


@workflow.defn(name="pivoting")
async def pivoting(ctx: WorkflowContext) -> None:
    saga = ctx.saga()
    await saga.step(act, "hold", compensate=undo)
    await saga.step(act, "capture", compensate=undo, pivot=True)
    await ctx.execute_activity(fail, "email")


async def test_after_the_pivot_nothing_is_compensated() -> None:
    env = WorkflowEnvironment(workflows=[pivoting], activities=ACTS)
    with pytest.raises(WorkflowFailedError):
        await env.execute_workflow(pivoting)
    assert LOG == ["hold", "capture"]


async def test_declarative_saga_compiles_to_the_same_workflow() -> None:
    decl = Saga("declarative_transfer", input_type=str).step(act, compensate=undo).step(fail)
    env = WorkflowEnvironment(workflows=[decl], activities=ACTS)
    handle = await env.start_workflow(decl, "acme")
    with pytest.raises(WorkflowFailedError, match="acme failed"):
        await handle.result()
    assert LOG == ["acme", "undo acme"]
    assert any(isinstance(e, ev.CompensationCompleted) for e in handle.history)


@workflow.defn(name="local_then_remote")
async def local_then_remote(ctx: WorkflowContext, name: str) -> str:
    first = await ctx.execute_local_activity(act, f"{name}-local")
    return await ctx.execute_activity(act, f"{first}-remote")


async def test_local_activity_is_recorded_and_replays_like_any_activity() -> None:
    env = WorkflowEnvironment(workflows=[local_then_remote], activities=ACTS)
    handle = await env.start_workflow(local_then_remote, "a")
    assert await handle.result() == "a-local-remote"
    assert LOG == ["a-local", "a-local-remote"]
    scheduled = [e for e in handle.history if isinstance(e, ev.ActivityScheduled)]
    assert [e.activity_seq for e in scheduled] == [1, 2]
    env.replay(handle.history)  # the local flag is not in history: replay needs nothing more


# --- timers and asyncio -------------------------------------------------------------------


@workflow.defn(name="racer")
async def racer(ctx: WorkflowContext) -> str:
    try:
        await asyncio.wait_for(ctx.wait_signal("go"), timeout=60)
    except TimeoutError:
        if not ctx.is_replaying:
            waited = ctx.now() - ctx.info.start_time
            LOG.append(f"timed out at +{waited.total_seconds():.0f}s")
    sleeper = asyncio.ensure_future(ctx.sleep(timedelta(hours=1)))
    waiter = asyncio.ensure_future(ctx.wait_signal("go", arg_types=(str,)))
    done, pending = await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
    for p in pending:
        p.cancel()
    if waiter in done:
        (word,) = waiter.result() or ("?",)
        return f"signal {word}"
    return "slept"


async def test_wait_for_and_wait_use_durable_timers() -> None:
    env = WorkflowEnvironment(workflows=[racer])
    handle = await env.start_workflow(racer)
    await env.sleep(timedelta(minutes=5))
    await handle.signal("go", "now")
    assert await handle.result() == "signal now"
    assert LOG == ["timed out at +60s"]
    kinds = types_of(handle.history)
    assert kinds.count("TimerStarted") == 2
    assert "TimerFired" in kinds and "TimerCancelled" in kinds


async def test_asyncio_sleep_is_durable_and_skipped() -> None:
    @workflow.defn(name="plain_sleep")
    async def plain_sleep(ctx: WorkflowContext) -> str:
        await asyncio.sleep(timedelta(days=90).total_seconds())
        return ctx.now().date().isoformat()

    env = WorkflowEnvironment(workflows=[plain_sleep])
    assert await env.execute_workflow(plain_sleep) == "2025-04-01"


async def test_wait_condition_timeout_returns_false() -> None:
    @workflow.defn(name="waits")
    async def waits(ctx: WorkflowContext) -> bool:
        return await ctx.wait_condition(lambda: False, timeout=seconds(30))

    env = WorkflowEnvironment(workflows=[waits])
    assert await env.execute_workflow(waits) is False


# --- children, continue-as-new, metadata ---------------------------------------------------


@workflow.defn(name="child")
async def child(ctx: WorkflowContext, n: int) -> int:
    if n < 0:
        raise ApplicationError("negative", non_retryable=True)
    return await ctx.execute_activity(act, str(n)) and n * 2


@workflow.defn(name="parent")
async def parent(ctx: WorkflowContext, n: int) -> int:
    try:
        return await ctx.execute_child_workflow(child, n)  # type: ignore[no-any-return]
    except ChildWorkflowError as exc:
        if not ctx.is_replaying:
            LOG.append(f"child failed: {exc.cause}")
        return -1


async def test_child_workflow_result_and_failure() -> None:
    env = WorkflowEnvironment(workflows=[parent, child], activities=ACTS)
    assert await env.execute_workflow(parent, 21) == 42
    handle = await env.start_workflow(parent, -1)
    assert await handle.result() == -1
    assert LOG[-1] == "child failed: negative"
    assert "ChildWorkflowFailed" in types_of(handle.history)


@workflow.defn(name="counter")
async def counter(ctx: WorkflowContext, n: int, total: int) -> int:
    if n == 0:
        return total
    await ctx.sleep(timedelta(days=1))
    ctx.continue_as_new(n - 1, total + n)


async def test_continue_as_new_starts_fresh_runs_with_new_arguments() -> None:
    env = WorkflowEnvironment(workflows=[counter])
    handle = await env.start_workflow(counter, 3, 0)
    assert await handle.result() == 6
    runs = handle.run_histories
    assert len(runs) == 4
    assert all(isinstance(r[-1], ev.WorkflowContinuedAsNew) for r in runs[:-1])
    first = runs[1][0]
    assert isinstance(first, ev.WorkflowStarted)
    assert first.continued_from_run_id == handle.first_run_id


async def test_search_attributes_memo_side_effects_and_determinism_helpers() -> None:
    @workflow.defn(name="meta")
    async def meta(ctx: WorkflowContext) -> str:
        ctx.upsert_search_attributes({"customer": "c-9", "tier": 2})
        ctx.upsert_memo({"note": "vip"})
        token = ctx.side_effect(lambda: "tok-123", str)
        return f"{token}:{ctx.uuid4()}:{ctx.random():.6f}"

    env = WorkflowEnvironment(workflows=[meta])
    handle = await env.start_workflow(meta, id="meta-1")
    first = await handle.result()
    upserted = next(e for e in handle.history if isinstance(e, ev.SearchAttributesUpserted))
    assert sorted(upserted.attributes) == ["customer", "tier"]
    marker = next(e for e in handle.history if isinstance(e, ev.MarkerRecorded))
    assert marker.marker_name == "side_effect"
    # same run id → same seed → same "random" values
    env2 = WorkflowEnvironment(workflows=[meta])
    handle2 = await env2.start_workflow(meta, id="meta-1")
    assert await handle2.result() == first


async def test_terminate_stops_without_compensation() -> None:
    env = WorkflowEnvironment(workflows=[cancellable], activities=ACTS)
    handle = await env.start_workflow(cancellable)
    await env.sleep(timedelta(days=1))
    await handle.terminate("operator")
    with pytest.raises(WorkflowFailedError) as info:
        await handle.result()
    assert info.value.status == "TERMINATED"
    assert LOG == ["reserve"]


async def test_signal_sent_before_wait_is_buffered_and_activity_info_is_stable() -> None:
    keys: list[str] = []

    @activity.defn(name="keyed")
    def keyed() -> int:
        info = activity.info()
        keys.append(info.idempotency_key)
        if info.attempt < 3:
            raise ApplicationError("again")
        return info.attempt

    @workflow.defn(name="buffered")
    async def buffered(ctx: WorkflowContext) -> int:
        args = await ctx.wait_signal("data", arg_types=(int,))
        assert args is not None
        attempts: int = await ctx.execute_activity(keyed)
        return args[0] + attempts

    env = WorkflowEnvironment(workflows=[buffered], activities=[keyed])
    handle = await env.start_workflow(buffered, id="buf")
    await handle.signal("data", 39)
    assert await handle.result() == 42
    assert len(keys) == 3 and len(set(keys)) == 1
    assert keys[0] == f"buf/{handle.first_run_id}/1"


async def test_asyncio_timeout_context_manager_is_a_durable_timer() -> None:
    @workflow.defn(name="with_timeout")
    async def with_timeout(ctx: WorkflowContext) -> str:
        try:
            async with asyncio.timeout(30):
                await ctx.wait_signal("never")
        except TimeoutError:
            return f"gave up at +{(ctx.now() - ctx.info.start_time).total_seconds():.0f}s"
        return "signalled"

    env = WorkflowEnvironment(workflows=[with_timeout])
    handle = await env.start_workflow(with_timeout)
    assert await handle.result() == "gave up at +30s"
    assert "TimerFired" in types_of(handle.history)


async def test_failing_signal_handler_fails_the_run_and_compensates() -> None:
    @workflow.defn(name="picky")
    class Picky:
        @workflow.run
        async def run(self, ctx: WorkflowContext) -> None:
            saga = ctx.saga()
            await saga.step(act, "hold", compensate=undo)
            await ctx.sleep(timedelta(days=1))

        @workflow.signal
        def poke(self, n: int) -> None:
            if n < 0:
                raise ValueError("negative poke")

    env = WorkflowEnvironment(workflows=[Picky], activities=ACTS)
    handle = await env.start_workflow(Picky)
    await env.sleep(timedelta(hours=1))  # "hold" has run; the run sleeps
    await handle.signal("poke", 1)
    await handle.signal("poke", -1)
    with pytest.raises(WorkflowFailedError, match="negative poke") as info:
        await handle.result()
    assert info.value.status == "FAILED"
    assert LOG == ["hold", "undo hold"]


async def test_async_update_handler_can_run_activities() -> None:
    @workflow.defn(name="async_update")
    class AsyncUpdate:
        def __init__(self) -> None:
            self.done = False

        @workflow.run
        async def run(self, ctx: WorkflowContext) -> str:
            self.ctx = ctx
            await ctx.wait_condition(lambda: self.done)
            return "finished"

        @workflow.update
        async def work(self, name: str) -> str:
            result: str = await self.ctx.execute_activity(act, name)
            self.done = True
            return f"did {result}"

    env = WorkflowEnvironment(workflows=[AsyncUpdate], activities=ACTS)
    handle = await env.start_workflow(AsyncUpdate)
    assert await handle.update("work", "job-1") == "did job-1"
    assert await handle.result() == "finished"


async def test_register_before_compensates_a_call_whose_outcome_is_unknown() -> None:
    @workflow.defn(name="one_shot")
    async def one_shot(ctx: WorkflowContext) -> None:
        saga = ctx.saga()
        await saga.step(act, "a", compensate=undo)
        await saga.step(fail, "send", compensate=undo, register_before=True)

    env = WorkflowEnvironment(workflows=[one_shot], activities=ACTS)
    with pytest.raises(WorkflowFailedError):
        await env.execute_workflow(one_shot)
    assert LOG == ["a", "undo send", "undo a"]
