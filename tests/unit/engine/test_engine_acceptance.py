"""The acceptance scenarios of the SDK and engine, run on the in-memory environment."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from orchestrator.engine import events as ev
from orchestrator.exceptions import ApplicationError, UpdateRejectedError, WorkflowFailedError
from orchestrator.testing import WorkflowEnvironment
from orchestrator.workflow import WorkflowStatus
from tests.replay import sample_sagas as s


@pytest.fixture(autouse=True)
def _clean_ledger() -> Iterator[None]:
    s.reset()
    yield
    s.reset()


def env() -> WorkflowEnvironment:
    return WorkflowEnvironment(
        workflows=[s.transfer, s.Subscription, s.payout, s.trip, s.Cart],
        activities=s.ALL_ACTIVITIES,
    )


def activity_types(history: list[ev.Event]) -> list[str]:
    return [e.activity_type for e in history if isinstance(e, ev.ActivityScheduled)]


async def test_transfer_step3_fails_compensates_2_then_1_and_fails_with_original_error() -> None:
    e = env()
    req = s.TransferRequest("alice", "bob", 100, fail_at="notify")
    handle = await e.start_workflow(s.transfer, req)

    with pytest.raises(WorkflowFailedError) as info:
        await handle.result()

    assert s.LEDGER == [
        "withdraw 100 from alice",
        "deposit 100 to bob",
        "reverse deposit 100 from bob",
        "refund 100 to alice",
    ]
    assert info.value.status == "FAILED"
    cause = info.value.__cause__
    assert isinstance(cause, ApplicationError) and cause.type == "ActivityError"
    assert isinstance(cause.__cause__, ApplicationError)
    assert cause.__cause__.type == "Declined"
    assert cause.__cause__.message == "notify declined"
    history = handle.history
    assert activity_types(history) == [
        "withdraw", "deposit", "notify", "reverse_deposit", "refund"
    ]
    started = next(x for x in history if isinstance(x, ev.CompensationStarted))
    assert started.compensations == ["reverse_deposit", "refund"]
    assert started.cause is not None and started.cause.cause is not None
    assert started.cause.cause.type == "Declined"
    assert any(isinstance(x, ev.CompensationCompleted) for x in history)
    last = history[-1]
    assert isinstance(last, ev.WorkflowFailed)
    assert last.failure.type == "ActivityError"
    assert last.failure.cause is not None and last.failure.cause.message == "notify declined"
    assert handle.status is WorkflowStatus.FAILED


async def test_transfer_happy_path_compensates_nothing() -> None:
    e = env()
    result = await e.execute_workflow(s.transfer, s.TransferRequest("alice", "bob", 5))
    assert result == "done"
    assert s.LEDGER == ["withdraw 5 from alice", "deposit 5 to bob", "notify bob"]


async def test_subscription_twelve_months_of_sleep_finish_fast() -> None:
    e = env()
    t0 = time.perf_counter()
    handle = await e.start_workflow(s.Subscription, "cust-1")
    charges = await handle.result()
    wall = time.perf_counter() - t0

    assert charges == 12
    assert wall < 1.0, f"12 x 30-day sleeps took {wall:.3f}s of wall time"
    assert [x for x in s.LEDGER if x.startswith("charge")] == [
        f"charge cust-1 month {m}" for m in range(1, 13)
    ]
    started_at = handle.history[0].time
    assert handle.history[-1].time - started_at == 360 * 24 * 3600 * 1000


async def test_subscription_cancel_signal_in_month_5_stops_after_exactly_5_charges() -> None:
    e = env()
    handle = await e.start_workflow(s.Subscription, "cust-2")
    await e.sleep(timedelta(days=4 * 30 + 15))  # the middle of month 5
    assert await handle.query("charge_count") == 4
    await handle.signal("cancel")

    assert await handle.result() == 5
    assert len([x for x in s.LEDGER if x.startswith("charge")]) == 5
    signal = next(x for x in handle.history if isinstance(x, ev.SignalReceived))
    assert signal.signal_name == "cancel"


async def test_call_failing_for_3_days_completes_under_5_day_expiration() -> None:
    e = env()
    result = await e.execute_workflow(s.payout, s.PayoutRequest("acc", 10, expire_days=5))

    assert result.startswith("paid on attempt ")
    assert "release 10" not in s.LEDGER
    assert s.LEDGER[-1].endswith("ok")
    failed = [x for x in s.LEDGER if x.endswith("failed")]
    assert len(failed) > 5


async def test_call_failing_for_3_days_compensates_under_1_day_expiration() -> None:
    e = env()
    handle = await e.start_workflow(s.payout, s.PayoutRequest("acc", 10, expire_days=1))

    with pytest.raises(WorkflowFailedError) as info:
        await handle.result()

    assert s.LEDGER[0] == "reserve 10"
    assert s.LEDGER[-1] == "release 10"
    assert not any(x.endswith("ok") for x in s.LEDGER)
    cause = info.value.__cause__
    assert cause is not None and cause.__cause__ is not None
    assert isinstance(cause.__cause__, ApplicationError)
    assert cause.__cause__.type == "Unavailable"
    failed = [x for x in handle.history if isinstance(x, ev.ActivityFailed)]
    assert len(failed) == 1
    assert failed[0].time - handle.history[0].time <= 24 * 3600 * 1000


async def test_gather_of_three_one_failing_compensates_the_two_that_succeeded() -> None:
    e = env()
    handle = await e.start_workflow(s.trip, s.TripRequest("zoe", fail_at="hotel"))

    with pytest.raises(WorkflowFailedError) as info:
        await handle.result()

    assert sorted(x for x in s.LEDGER if x.startswith("book")) == ["book car", "book flight"]
    assert sorted(x for x in s.LEDGER if x.startswith("cancel")) == [
        "cancel car", "cancel flight"
    ]
    assert "cancel hotel" not in s.LEDGER
    cause = info.value.__cause__
    assert cause is not None and "hotel declined" in str(cause)


async def test_update_returns_value_and_changes_state_validator_rejects_without_history() -> None:
    e = env()
    handle = await e.start_workflow(s.Cart)

    assert await handle.update("add_item", "apple") == 1
    assert await handle.update("add_item", "pear") == 2
    assert await handle.query("count") == 2
    before = len(handle.history)

    with pytest.raises(UpdateRejectedError, match="item must not be empty"):
        await handle.update("add_item", "  ")

    assert len(handle.history) == before
    assert await handle.query("count") == 2
    accepted = [x for x in handle.history if isinstance(x, ev.UpdateAccepted)]
    completed = [x for x in handle.history if isinstance(x, ev.UpdateCompleted)]
    assert len(accepted) == len(completed) == 2
    await handle.signal("checkout")
    assert await handle.result() == ["apple", "pear"]


async def test_unknown_update_is_rejected_naming_it() -> None:
    e = env()
    handle = await e.start_workflow(s.Cart)
    with pytest.raises(UpdateRejectedError, match="unknown update 'remove_item'"):
        await handle.update("remove_item", "apple")
