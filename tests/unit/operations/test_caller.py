"""``ctx.execute_operation`` in the in-process test environment, with fakes of the
start, cancel and status activities: the result decoded into its type, the outcome
signal, the wait bounded by schedule_to_close (time skips), a cancel passed on, and
polling."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from orchestrator import activity, workflow
from orchestrator.exceptions import WorkflowFailedError
from orchestrator.operations.records import CancelRequest, StartRequest, outcome_signal
from orchestrator.status import WorkflowStatus
from orchestrator.testing import WorkflowEnvironment


@dataclass(frozen=True)
class Receipt:
    receipt: str
    amount: int


class Fakes:
    """The built-in activities, faked; ``answer`` is what the start returns."""

    def __init__(self, answer: list[Any], status: list[Any] | None = None) -> None:
        self.answer = answer
        self.status = status or ["running", None, None]
        self.starts: list[StartRequest] = []
        self.cancels: list[CancelRequest] = []
        self.polls = 0

    def activities(self) -> list[Any]:
        @activity.defn(name="saga.operation.start")
        async def start(req: StartRequest) -> list[Any]:
            self.starts.append(req)
            return self.answer

        @activity.defn(name="saga.operation.cancel")
        async def cancel(req: CancelRequest) -> None:
            self.cancels.append(req)

        @activity.defn(name="saga.operation.status")
        async def status(req: CancelRequest) -> list[Any]:
            self.polls += 1
            return self.status if self.polls >= 3 else ["running", None, None]

        return [start, cancel, status]


@workflow.defn(name="t.charge")
async def charge(ctx: workflow.WorkflowContext, poll_s: float) -> Receipt:
    paid: Receipt = await ctx.execute_operation(
        "payments", "charge", {"amount": 5}, schedule_to_close=timedelta(days=3),
        result_type=Receipt, poll_every=timedelta(seconds=poll_s) if poll_s else None,
    )
    return paid


async def test_an_answer_at_once_is_the_result() -> None:
    fakes = Fakes(["succeeded", "", {"receipt": "r-1", "amount": 5}])
    async with WorkflowEnvironment(workflows=[charge], activities=fakes.activities()) as env:
        handle = await env.start_workflow(charge, 0.0, id="c-1")
        assert await handle.result() == Receipt("r-1", 5)
    [start] = fakes.starts
    assert start.request_id == f"c-1/{start.run_id}/{start.operation_key}"
    assert (start.endpoint, start.operation, start.input) == ("payments", "charge",
                                                              {"amount": 5})


async def test_the_outcome_signal_ends_the_wait() -> None:
    fakes = Fakes(["running", "op-1", None])
    async with WorkflowEnvironment(workflows=[charge], activities=fakes.activities()) as env:
        handle = await env.start_workflow(charge, 0.0, id="c-2")
        await env.sleep(timedelta(hours=5))
        assert handle.status is WorkflowStatus.RUNNING
        key = fakes.starts[0].operation_key
        await handle.signal(outcome_signal(key), "succeeded", {"receipt": "r-2", "amount": 5},
                            None)
        assert await handle.result() == Receipt("r-2", 5)
    assert not fakes.cancels


async def test_a_failed_outcome_raises_operation_error_with_the_cause_chain() -> None:
    fakes = Fakes(["running", "op-3", None])
    async with WorkflowEnvironment(workflows=[charge], activities=fakes.activities()) as env:
        handle = await env.start_workflow(charge, 0.0, id="c-3")
        await env.sleep(timedelta(seconds=1))
        failure = {"message": "declined", "type": "Declined",
                   "cause": {"message": "no funds", "type": "Funds"}}
        await handle.signal(outcome_signal(fakes.starts[0].operation_key), "failed", None,
                            failure)
        with pytest.raises(WorkflowFailedError) as failed:
            await handle.result()
    chain = []
    err: BaseException | None = failed.value.__cause__
    while err is not None:
        chain.append((getattr(err, "type", ""), str(err)))
        err = err.__cause__
    assert [t for t, _ in chain] == ["OperationError", "Declined", "Funds"]


async def test_no_outcome_within_schedule_to_close_cancels_the_operation() -> None:
    fakes = Fakes(["running", "op-4", None])
    async with WorkflowEnvironment(workflows=[charge], activities=fakes.activities()) as env:
        handle = await env.start_workflow(charge, 0.0, id="c-4")
        with pytest.raises(WorkflowFailedError, match="did not end within 3 days"):
            await handle.result()
    assert [c.operation_id for c in fakes.cancels] == ["op-4"]


async def test_cancelling_the_run_cancels_the_operation() -> None:
    fakes = Fakes(["running", "op-5", None])
    async with WorkflowEnvironment(workflows=[charge], activities=fakes.activities()) as env:
        handle = await env.start_workflow(charge, 0.0, id="c-5")
        await env.sleep(timedelta(minutes=1))
        await handle.cancel("customer left")
        with pytest.raises(WorkflowFailedError):
            await handle.result()
        assert handle.status is WorkflowStatus.CANCELLED
    assert [c.operation_id for c in fakes.cancels] == ["op-5"]


async def test_polling_finds_the_outcome_without_a_callback() -> None:
    fakes = Fakes(["running", "op-6", None], status=["succeeded", {"receipt": "r-6",
                                                                   "amount": 5}, None])
    async with WorkflowEnvironment(workflows=[charge], activities=fakes.activities()) as env:
        handle = await env.start_workflow(charge, 60.0, id="c-6")
        assert await handle.result() == Receipt("r-6", 5)
    assert fakes.polls == 3
