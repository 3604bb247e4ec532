"""WorkflowEnvironment does what the Kafka runtime does with reused ids, children
whose id is running, queries on closed runs and failed updates."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator import workflow
from orchestrator.engine import events as ev
from orchestrator.exceptions import (
    ApplicationError,
    ChildWorkflowError,
    QueryError,
    UpdateRejectedError,
)
from orchestrator.testing import WorkflowEnvironment
from orchestrator.workflow import WorkflowContext, WorkflowStatus


@workflow.defn(name="parity.echo")
async def echo(ctx: WorkflowContext, word: str) -> str:
    """Returns ``word`` once signal ``go`` came."""
    await ctx.wait_signal("go")
    return word


@workflow.defn(name="parity.sleeper")
async def sleeper(ctx: WorkflowContext) -> str:
    await ctx.sleep(timedelta(days=1))
    return "woke"


@workflow.defn(name="parity.parent")
async def parent(ctx: WorkflowContext, kid: str) -> str:
    """Starts child ``kid`` with id ``kid``: its result, or why it failed."""
    try:
        return str(await ctx.execute_child_workflow(kid, id="kid", result_type=str))
    except ChildWorkflowError as exc:
        cause = exc.cause
        assert isinstance(cause, ApplicationError)
        return f"refused: {cause.type}"


@workflow.defn(name="parity.canceller")
async def canceller(ctx: WorkflowContext) -> str:
    """Starts a sleeping child with id ``kid`` and cancels it."""
    handle = await ctx.start_child_workflow(sleeper, id="kid", result_type=str)
    handle.cancel("not needed")
    try:
        return await handle
    except ChildWorkflowError as exc:
        return f"child ended: {type(exc.cause).__name__}"


@workflow.defn(name="parity.account")
class Account:
    def __init__(self) -> None:
        self.balance = 0

    @workflow.run
    async def run(self, ctx: WorkflowContext) -> int:
        await ctx.wait_signal("close")
        return self.balance

    @workflow.update
    def withdraw(self, amount: int) -> int:
        if amount > self.balance:
            raise ApplicationError(f"balance is {self.balance}", type="Overdrawn")
        self.balance -= amount
        return self.balance

    @workflow.update
    def deposit(self, amount: int) -> int:
        self.balance += amount
        return self.balance

    @workflow.update_validator("deposit")
    def check_deposit(self, amount: int) -> None:
        if amount <= 0:
            raise ValueError("a deposit is positive")

    @workflow.query
    def current(self) -> int:
        return self.balance


def env() -> WorkflowEnvironment:
    return WorkflowEnvironment(workflows=[echo, sleeper, parent, canceller, Account])


# --- reused ids ------------------------------------------------------------------------


async def test_starting_a_closed_id_again_gives_a_handle_to_the_new_run() -> None:
    e = env()
    first = await e.start_workflow(echo, "first", id="w")
    await first.signal("go")
    assert await first.result() == "first"

    second = await e.start_workflow(echo, "second", id="w")
    assert second.status is WorkflowStatus.RUNNING
    await second.signal("go")
    assert await second.result() == "second"
    started = second.history[0]
    assert isinstance(started, ev.WorkflowStarted)
    assert started.run_id == second.first_run_id != first.first_run_id


async def test_starting_an_open_id_again_returns_the_running_run() -> None:
    e = env()
    first = await e.start_workflow(echo, "first", id="w")
    again = await e.start_workflow(echo, "second", id="w")
    assert again.first_run_id == first.first_run_id
    await again.signal("go")
    assert await again.result() == "first"
    assert len(again.run_histories) == 1


async def test_a_parent_cancels_its_child_even_when_the_child_id_was_used_before() -> None:
    e = env()
    earlier = await e.start_workflow(echo, "earlier", id="kid")
    await earlier.signal("go")
    assert await earlier.result() == "earlier"
    assert await e.execute_workflow(canceller) == "child ended: CancelledError"


# --- children whose id is running -------------------------------------------------------


async def test_a_child_whose_id_is_running_is_refused_and_the_running_run_untouched() -> None:
    e = env()
    running = await e.start_workflow(echo, "mine", id="kid")
    assert await e.execute_workflow(parent, "parity.echo") == "refused: WorkflowAlreadyStarted"
    assert running.status is WorkflowStatus.RUNNING
    assert len(running.run_histories) == 1
    await running.signal("go")
    assert await running.result() == "mine"


async def test_a_child_whose_id_has_closed_starts_a_new_run() -> None:
    e = env()
    earlier = await e.start_workflow(echo, "earlier", id="kid")
    await earlier.signal("go")
    await earlier.result()
    assert await e.execute_workflow(parent, "parity.sleeper") == "woke"


# --- queries and updates ----------------------------------------------------------------


async def test_a_query_on_a_closed_run_raises_query_error_as_on_kafka() -> None:
    e = env()
    handle = await e.start_workflow(Account)
    assert await handle.update("deposit", 5) == 5
    assert await handle.query("current") == 5  # open: answered
    await handle.signal("close")
    assert await handle.result() == 5
    with pytest.raises(QueryError, match="is COMPLETED") as info:
        await handle.query("current")
    cause = info.value.__cause__
    assert isinstance(cause, ApplicationError) and cause.type == "WorkflowClosed"


async def test_a_failing_update_handler_raises_update_rejected_with_its_error() -> None:
    e = env()
    handle = await e.start_workflow(Account)
    await handle.update("deposit", 3)
    with pytest.raises(UpdateRejectedError, match="Overdrawn: balance is 3") as info:
        await handle.update("withdraw", 10)
    cause = info.value.__cause__
    assert isinstance(cause, ApplicationError) and cause.type == "Overdrawn"
    assert await handle.update("withdraw", 1) == 2  # the run goes on


async def test_a_refused_update_has_the_validator_error_as_its_cause() -> None:
    e = env()
    handle = await e.start_workflow(Account)
    with pytest.raises(UpdateRejectedError, match="a deposit is positive") as info:
        await handle.update("deposit", -1)
    cause = info.value.__cause__
    assert isinstance(cause, ApplicationError) and cause.type == "ValueError"
