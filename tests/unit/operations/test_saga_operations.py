"""Operations as saga steps and compensations (``saga.step_operation``,
``saga.add_compensation_operation``) in the in-process test environment, with fakes
of the built-in start activity: the compensation runs once, in reverse order, its
start retried; its failure ends the run COMPENSATION_FAILED; the history replays."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from orchestrator import activity, workflow
from orchestrator.engine import events as ev
from orchestrator.exceptions import ApplicationError, WorkflowFailedError
from orchestrator.operations.records import StartRequest, outcome_signal
from orchestrator.status import WorkflowStatus
from orchestrator.testing import WorkflowEnvironment

FAST = workflow.RetryPolicy(initial=timedelta(seconds=1), max_attempts=5)


class Billing:
    """A fake of ``saga.operation.start``: ``answers`` per operation name (each answer
    ``[state, operation_id, result]``); ``down`` starts fail before one succeeds."""

    def __init__(self, answers: dict[str, list[Any]], down: int = 0) -> None:
        self.answers = answers
        self.down = down
        self.starts: list[StartRequest] = []
        self.log: list[str] = []

    def activities(self) -> list[Any]:
        @activity.defn(name="saga.operation.start")
        async def start(req: StartRequest) -> list[Any]:
            if req.operation == "refund" and self.down > 0:
                self.down -= 1
                raise ApplicationError("billing unreachable", type="Unreachable")
            self.starts.append(req)
            self.log.append(f"{req.operation}:{req.input['order']}")
            return self.answers[req.operation]

        @activity.defn(name="t.ship")
        async def ship(order: str) -> None:
            raise ApplicationError("no truck", type="NoTruck", non_retryable=True)

        @activity.defn(name="t.unreserve")
        async def unreserve(order: str) -> None:
            self.log.append(f"unreserve:{order}")

        @activity.defn(name="t.reserve")
        async def reserve(order: str) -> None:
            self.log.append(f"reserve:{order}")

        return [start, ship, unreserve, reserve]


@workflow.defn(name="t.order")
async def order(ctx: workflow.WorkflowContext, name: str) -> str:
    saga = ctx.saga()
    await saga.step("t.reserve", name, compensate="t.unreserve")
    paid: dict[str, Any] = await saga.step_operation(
        "payments", "charge", {"order": name, "amount": 5}, compensate="refund",
        compensate_input={"order": name, "reason": "not shipped"},
        schedule_to_close=timedelta(days=1),
    )
    await saga.step("t.ship", name)
    return str(paid["receipt"])


@workflow.defn(name="t.by_hand")
async def by_hand(ctx: workflow.WorkflowContext, name: str) -> None:
    saga = ctx.saga()
    await ctx.execute_operation("payments", "charge", {"order": name})
    saga.add_compensation_operation("payments", "refund", {"order": name}, retry=FAST)
    await saga.step("t.ship", name)


def _env(billing: Billing) -> WorkflowEnvironment:
    return WorkflowEnvironment(workflows=[order, by_hand], activities=billing.activities())


async def test_a_later_failure_runs_the_refund_operation_once_in_reverse_order() -> None:
    billing = Billing({"charge": ["succeeded", "", {"receipt": "r-1"}],
                       "refund": ["succeeded", "", None]})
    async with _env(billing) as env:
        handle = await env.start_workflow(order, "o-1", id="o-1")
        with pytest.raises(WorkflowFailedError, match="no truck"):
            await handle.result()
        assert handle.status is WorkflowStatus.FAILED
        started = [e for e in handle.history if isinstance(e, ev.CompensationStarted)]
        env.replay(handle.history)
    assert billing.log == ["reserve:o-1", "charge:o-1", "refund:o-1", "unreserve:o-1"]
    refund = billing.starts[1]
    assert refund.input == {"order": "o-1", "reason": "not shipped"}
    assert refund.request_id != billing.starts[0].request_id
    assert [e.compensations for e in started] == [["payments/refund", "t.unreserve"]]


async def test_the_compensation_waits_for_the_refunds_callback() -> None:
    billing = Billing({"charge": ["succeeded", "", {"receipt": "r-2"}],
                       "refund": ["running", "op-r", None]})
    async with _env(billing) as env:
        handle = await env.start_workflow(order, "o-2", id="o-2")
        await env.sleep(timedelta(hours=2))
        assert handle.status is WorkflowStatus.COMPENSATING
        assert billing.log[-1] == "refund:o-2", "unreserve waits for the refund's end"
        await handle.signal(outcome_signal(billing.starts[1].operation_key), "succeeded",
                            None, None)
        with pytest.raises(WorkflowFailedError, match="no truck"):
            await handle.result()
        env.replay(handle.history)
    assert billing.log[-1] == "unreserve:o-2"


async def test_a_refund_whose_start_fails_is_retried_until_it_starts() -> None:
    billing = Billing({"charge": ["succeeded", "", {"receipt": "r-3"}],
                       "refund": ["succeeded", "", None]}, down=3)
    async with _env(billing) as env:
        handle = await env.start_workflow(by_hand, "o-3", id="o-3")
        with pytest.raises(WorkflowFailedError, match="no truck"):
            await handle.result()
        assert handle.status is WorkflowStatus.FAILED
    assert billing.log == ["charge:o-3", "refund:o-3"]
    assert billing.down == 0


async def test_a_failed_refund_ends_the_run_compensation_failed() -> None:
    billing = Billing({"charge": ["succeeded", "", {"receipt": "r-4"}],
                       "refund": ["running", "op-r", None]})
    async with _env(billing) as env:
        handle = await env.start_workflow(by_hand, "o-4", id="o-4")
        await env.sleep(timedelta(minutes=1))
        await handle.signal(outcome_signal(billing.starts[1].operation_key), "failed", None,
                            {"message": "refund window closed", "type": "Closed"})
        with pytest.raises(WorkflowFailedError) as failed:
            await handle.result()
        assert handle.status is WorkflowStatus.COMPENSATION_FAILED
        [comp_failed] = [e for e in handle.history if isinstance(e, ev.CompensationFailed)]
    assert comp_failed.activity_type == "payments/refund"
    assert "refund" in str(failed.value.compensation_errors[0])


async def test_no_refund_when_the_charge_itself_failed() -> None:
    billing = Billing({"charge": ["running", "op-c", None], "refund": ["succeeded", "", None]})
    async with _env(billing) as env:
        handle = await env.start_workflow(order, "o-5", id="o-5")
        await env.sleep(timedelta(minutes=1))
        await handle.signal(outcome_signal(billing.starts[0].operation_key), "failed", None,
                            {"message": "declined", "type": "Declined"})
        with pytest.raises(WorkflowFailedError, match="failed"):
            await handle.result()
    assert billing.log == ["reserve:o-5", "charge:o-5", "unreserve:o-5"]
