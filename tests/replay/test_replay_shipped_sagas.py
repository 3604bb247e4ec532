"""The shipped sagas (sagas/payments.py, sagas/retry_forward.py) against saved histories.

Histories ``kafka_*.json`` were recorded on real Kafka with the real activities (the
demo bank, a real HTTP downstream) by ``python -m tests.replay.record_kafka_histories``;
the others of the same stems in the in-memory environment
(``python -m tests.replay.record_histories``). Every one must replay against the
current code; a change that alters the recorded commands must be caught.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator import workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.engine.replayer import Replayer, history_from_json
from orchestrator.exceptions import NonDeterminismError
from orchestrator.status import WorkflowStatus
from sagas import payments, retry_forward
from sagas.payments import TransferEvent, TransferReceipt, TransferRequest
from sagas.retry_forward import ForwardRequest, ForwardResult
from tests.replay import shipped_scenarios as sc
from tests.replay.record_histories import assert_replays_to_the_same_commands

HISTORIES = Path(__file__).parent / "histories"
BOTH_RUNTIMES = [*sc.PAYMENTS, *sc.RETRY_FORWARD]
SHIPPED = [
    *BOTH_RUNTIMES,
    *(f"kafka_{stem}" for stem in BOTH_RUNTIMES),
    sc.RETRY_FORWARD_EXPIRED,
]
COMPLETED = {"payments_transfer_ok", "payments_bank_outage", "retry_forward_ok",
             "retry_forward_flaky"}
RETRY_NOISE = (ev.ActivityAttemptFailed, ev.TimerFired)
CONVERTER = DataConverter()


def load(stem: str) -> list[ev.Event]:
    return history_from_json((HISTORIES / f"{stem}.json").read_text())


def steps(history: list[ev.Event]) -> list[str]:
    """The run's shape: events, activity types, without the retries (their number
    depends on timing)."""
    return [
        f"{type(e).__name__}:{e.activity_type}" if isinstance(e, ev.ActivityScheduled)
        else type(e).__name__
        for e in history
        if not isinstance(e, RETRY_NOISE)
    ]


def scheduled(history: list[ev.Event], activity_type: str) -> list[ev.ActivityScheduled]:
    return [
        e for e in history
        if isinstance(e, ev.ActivityScheduled) and e.activity_type == activity_type
    ]


def test_every_scenario_is_saved_from_both_runtimes() -> None:
    missing = [stem for stem in SHIPPED if not (HISTORIES / f"{stem}.json").exists()]
    assert missing == []


@pytest.mark.parametrize("stem", SHIPPED)
def test_shipped_history_replays_to_its_recorded_end(stem: str) -> None:
    history = load(stem)
    result = Replayer(workflows=sc.WORKFLOWS).replay(history)
    assert result.events == len(history)
    expected = WorkflowStatus.COMPLETED if stem.removeprefix("kafka_") in COMPLETED else (
        WorkflowStatus.FAILED
    )
    assert result.status is expected


@pytest.mark.parametrize("stem", BOTH_RUNTIMES)
def test_kafka_history_was_written_by_the_kafka_runtime(stem: str) -> None:
    started = load(f"kafka_{stem}")[0]
    assert isinstance(started, ev.WorkflowStarted)
    assert started.workflow_id == f"kafka_{stem}"
    assert "-run-" not in started.run_id  # the in-memory environment's run ids
    assert started.time > 1735689600000  # after the in-memory environment's clock start


@pytest.mark.parametrize("stem", BOTH_RUNTIMES)
def test_kafka_and_in_memory_runs_take_the_same_steps(stem: str) -> None:
    assert steps(load(f"kafka_{stem}")) == steps(load(stem))


def test_kafka_compensated_transfer_reverses_the_deposit_then_the_withdrawal() -> None:
    history = load("kafka_payments_compensated")
    failed = next(e for e in history if isinstance(e, ev.ActivityFailed))
    assert failed.failure.type == "HttpClientError" and "404" in failed.failure.message
    started = next(e for e in history if isinstance(e, ev.CompensationStarted))
    assert started.compensations == ["payments.reverse", "payments.reverse"]
    reversed_steps = [
        CONVERTER.from_payloads(e.input, [TransferRequest, str])[1]
        for e in scheduled(history, "payments.reverse")
    ]
    assert reversed_steps == ["deposit", "withdraw"]
    assert isinstance(history[-2], ev.CompensationCompleted)
    end = history[-1]
    assert isinstance(end, ev.WorkflowFailed) and end.failure.type == "ActivityError"
    assert end.failure.cause is not None and end.failure.cause.type == "HttpClientError"


def test_kafka_bank_outage_was_retried_forward_until_the_bank_reopened() -> None:
    history = load("kafka_payments_bank_outage")
    retries = [e for e in history if isinstance(e, ev.ActivityAttemptFailed)]
    assert retries and {r.failure.type for r in retries} == {"HttpServiceUnavailable"}
    assert not any(isinstance(e, ev.CompensationStarted) for e in history)
    end = history[-1]
    assert isinstance(end, ev.WorkflowCompleted)
    receipt = CONVERTER.from_payload(end.result, TransferReceipt)
    assert receipt == TransferReceipt("t-outage", "completed")


def test_kafka_flaky_downstream_succeeds_on_the_third_attempt() -> None:
    history = load("kafka_retry_forward_flaky")
    retries = [e for e in history if isinstance(e, ev.ActivityAttemptFailed)]
    assert [r.attempt for r in retries] == list(range(1, sc.FLAKY_FAILURES + 1))
    end = history[-1]
    assert isinstance(end, ev.WorkflowCompleted)
    result = CONVERTER.from_payload(end.result, ForwardResult)
    assert (result.status, result.attempts) == (201, sc.FLAKY_FAILURES + 1)


def test_kafka_rejected_call_fails_at_once_without_compensation() -> None:
    history = load("kafka_retry_forward_rejected")
    assert steps(history) == [
        "WorkflowStarted", "ActivityScheduled:retry_forward.call", "ActivityFailed",
        "WorkflowFailed",
    ]
    end = history[-1]
    assert isinstance(end, ev.WorkflowFailed) and "400" in end.failure.message


async def test_in_memory_scenarios_replay_to_the_same_commands() -> None:
    produced = await sc.in_memory_scenarios()
    assert sorted(produced) == sorted([*BOTH_RUNTIMES, sc.RETRY_FORWARD_EXPIRED])
    assert_replays_to_the_same_commands(sc.WORKFLOWS, produced)
    for stem, history in produced.items():
        assert steps(history) == steps(load(stem)), stem


# --- changed copies of the sagas: replaying the saved histories must catch them ---------


@workflow.defn(name="payments.transfer")
async def transfer_deposit_undo_after_the_call(
    ctx: workflow.WorkflowContext, req: TransferRequest
) -> TransferReceipt:
    """payments.transfer with one "harmless" edit: the deposit's reversal is registered
    after the call succeeds, not before. A failed deposit is then no longer reversed."""
    saga = ctx.saga()
    policy, limit = payments._money_policy(req), timedelta(seconds=30)
    await saga.step(payments.withdraw, req, compensate=payments.reverse,
                    compensate_args=(req, "withdraw"), register_before=True,
                    task_queue=payments.TASK_QUEUE, retry=policy, start_to_close=limit)
    await saga.step(payments.deposit, req, compensate=payments.reverse,
                    compensate_args=(req, "deposit"), pivot=True,
                    task_queue=payments.TASK_QUEUE, retry=policy, start_to_close=limit)
    now = int(ctx.now().timestamp() * 1000)
    await ctx.execute_activity(
        payments.announce,
        TransferEvent(req.transfer_id, "completed", req.source, req.target, req.amount, now),
        task_queue=payments.TASK_QUEUE, start_to_close=timedelta(seconds=30),
    )
    return TransferReceipt(req.transfer_id, "completed")


@workflow.defn(name="retry_forward.v1")
async def forward_with_a_preflight(
    ctx: workflow.WorkflowContext, req: ForwardRequest
) -> ForwardResult:
    """retry_forward.v1 with a new first activity."""
    await ctx.execute_activity("retry_forward.preflight", req, start_to_close=timedelta(seconds=10))
    result: ForwardResult = await ctx.execute_activity(
        retry_forward.CALL_ACTIVITY, req, retry=retry_forward.FORWARD_RETRY,
        start_to_close=timedelta(seconds=60), result_type=ForwardResult,
    )
    return result


def test_moving_the_deposit_undo_after_the_call_breaks_the_compensated_history() -> None:
    # the edit changes nothing when no compensation runs ...
    Replayer(workflows=[transfer_deposit_undo_after_the_call]).replay(
        load("kafka_payments_transfer_ok")
    )
    # ... but a run that compensated reversed the deposit too: replay refuses the code
    history = load("kafka_payments_compensated")
    second_reverse = scheduled(history, "payments.reverse")[1]
    with pytest.raises(NonDeterminismError) as info:
        Replayer(workflows=[transfer_deposit_undo_after_the_call]).replay(history)
    assert info.value.seq == second_reverse.seq
    assert info.value.expected is not None and "payments.reverse" in info.value.expected
    assert info.value.actual is not None and "CompensationCompleted" in info.value.actual


def test_a_new_first_activity_breaks_every_retry_forward_history() -> None:
    for stem in ("kafka_retry_forward_ok", "kafka_retry_forward_flaky", "retry_forward_ok"):
        with pytest.raises(NonDeterminismError) as info:
            Replayer(workflows=[forward_with_a_preflight]).replay(load(stem))
        assert info.value.actual is not None and "preflight" in info.value.actual, stem
