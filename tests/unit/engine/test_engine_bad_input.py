"""Bad input gets a clear error naming what is wrong."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from orchestrator import activity, workflow
from orchestrator.exceptions import (
    ActivityError,
    ApplicationError,
    DefinitionError,
    NotFoundError,
    PayloadConversionError,
    WorkflowFailedError,
)
from orchestrator.testing import WorkflowEnvironment
from orchestrator.workflow import RetryPolicy, WorkflowContext


@dataclass
class Order:
    sku: str
    quantity: int


@activity.defn
def ship(order: Order) -> str:
    return f"shipped {order.quantity} x {order.sku}"


@workflow.defn(name="by_name")
async def by_name(ctx: WorkflowContext, activity_name: str) -> str:
    result: str = await ctx.execute_activity(activity_name, {"sku": "x", "quantity": "many"})
    return result


@workflow.defn(name="shipper")
async def shipper(ctx: WorkflowContext, order: Order) -> str:
    return await ctx.execute_activity(ship, order, retry=RetryPolicy(max_attempts=3))


@workflow.defn(name="too_many_args")
async def too_many_args(ctx: WorkflowContext, order: Order) -> str:
    return await ctx.execute_activity(ship, order, order)


def _cause_chain(exc: BaseException) -> list[BaseException]:
    out = []
    cur: BaseException | None = exc
    while cur is not None:
        out.append(cur)
        cur = cur.__cause__
    return out


async def test_unknown_activity_name_fails_the_call_naming_it() -> None:
    env = WorkflowEnvironment(workflows=[by_name], activities=[ship])
    with pytest.raises(WorkflowFailedError) as info:
        await env.execute_workflow(by_name, "shipp")
    messages = " | ".join(str(e) for e in _cause_chain(info.value))
    assert "unknown activity 'shipp'" in messages
    assert "registered: ['ship']" in messages
    chain = _cause_chain(info.value)
    assert any(isinstance(e, ApplicationError) and e.type == "NotFoundError" for e in chain)


async def test_undecodable_activity_argument_fails_at_once_naming_the_field() -> None:
    env = WorkflowEnvironment(workflows=[by_name], activities=[ship])
    handle = await env.start_workflow(by_name, "ship")
    with pytest.raises(WorkflowFailedError) as info:
        await handle.result()
    messages = " | ".join(str(e) for e in _cause_chain(info.value))
    assert "value.quantity: expected int, got str 'many'" in messages
    # non-retryable: one attempt only
    assert sum(1 for e in handle.history if type(e).__name__ == "ActivityFailed") == 1
    assert not any(type(e).__name__ == "ActivityAttemptFailed" for e in handle.history)


async def test_wrong_workflow_input_type_names_the_field() -> None:
    env = WorkflowEnvironment(workflows=[shipper], activities=[ship])
    with pytest.raises(WorkflowFailedError, match=r"workflow 'shipper' input: .*value\.quantity"):
        await env.execute_workflow(shipper, {"sku": "x", "quantity": "two"})


async def test_unknown_field_in_input_is_named() -> None:
    env = WorkflowEnvironment(workflows=[shipper], activities=[ship])
    with pytest.raises(WorkflowFailedError, match=r"unknown field\(s\) \['colour'\]"):
        await env.execute_workflow(shipper, {"sku": "x", "quantity": 1, "colour": "red"})


async def test_wrong_number_of_activity_arguments_is_named() -> None:
    env = WorkflowEnvironment(workflows=[too_many_args], activities=[ship])
    with pytest.raises(WorkflowFailedError, match=r"activity 'ship' takes 1 argument\(s\), got 2"):
        await env.execute_workflow(too_many_args, Order("x", 1))


async def test_valid_call_works_and_decodes_dataclasses() -> None:
    env = WorkflowEnvironment(workflows=[shipper], activities=[ship])
    assert await env.execute_workflow(shipper, Order("widget", 3)) == "shipped 3 x widget"


async def test_unknown_child_workflow_type_is_named() -> None:
    @workflow.defn(name="parent_of_ghost")
    async def parent(ctx: WorkflowContext) -> None:
        await ctx.execute_child_workflow("ghost")

    env = WorkflowEnvironment(workflows=[parent])
    expected = r"unknown workflow 'ghost'; registered: \['parent_of_ghost'\]"
    with pytest.raises(NotFoundError, match=expected):
        await env.execute_workflow(parent)


def test_invalid_workflow_class_lists_every_problem() -> None:
    with pytest.raises(DefinitionError) as info:

        @workflow.defn(name="broken")
        class Broken:
            def __init__(self, needed: int) -> None:
                self.needed = needed

            @workflow.run
            def run(self, ctx: WorkflowContext, x) -> None:  # type: ignore[no-untyped-def]
                return None

            @workflow.query
            async def q(self) -> int:
                return 1

            @workflow.update_validator("missing")
            def v(self) -> None:
                return None

    problems = info.value.problems
    assert any("constructible without arguments" in p for p in problems)
    assert any("must be 'async def'" in p for p in problems)
    assert any("parameter 'x' has no type annotation" in p for p in problems)
    assert any("query handlers must be plain" in p for p in problems)
    assert any("validator for unknown update 'missing'" in p for p in problems)
    assert len(problems) == 5


def test_invalid_workflow_function_and_activity_are_rejected_at_decoration() -> None:
    with pytest.raises(DefinitionError, match="must be 'async def'"):

        @workflow.defn
        def not_async(ctx: WorkflowContext) -> None:
            return None

    with pytest.raises(DefinitionError, match=r"\*args/\*\*kwargs are not supported"):

        @activity.defn
        def variadic(*items: int) -> int:
            return len(items)


async def test_activity_error_is_what_the_workflow_sees() -> None:
    seen: list[BaseException] = []

    @activity.defn(name="always_fails")
    def always_fails() -> None:
        raise ApplicationError("bad card", type="CardDeclined", non_retryable=True)

    @workflow.defn(name="catcher")
    async def catcher(ctx: WorkflowContext) -> str:
        try:
            await ctx.execute_activity(always_fails)
        except ActivityError as exc:
            seen.append(exc)
            return f"caught {exc.activity_type} attempt {exc.attempt}"
        return "not reached"

    env = WorkflowEnvironment(workflows=[catcher], activities=[always_fails])
    assert await env.execute_workflow(catcher) == "caught always_fails attempt 1"
    cause = seen[0].__cause__
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.message, cause.non_retryable) == ("CardDeclined", "bad card", True)


async def test_undecodable_signal_is_refused_naming_the_problem() -> None:
    @workflow.defn(name="listener")
    class Listener:
        def __init__(self) -> None:
            self.total = 0

        @workflow.run
        async def run(self, ctx: WorkflowContext) -> int:
            await ctx.wait_condition(lambda: self.total >= 3)
            return self.total

        @workflow.signal
        def add(self, n: int) -> None:
            self.total += n

    env = WorkflowEnvironment(workflows=[Listener])
    handle = await env.start_workflow(Listener)
    bad = r"signal 'add': bad arguments: .*expected int"
    with pytest.raises(PayloadConversionError, match=bad):
        await handle.signal("add", "three")
    assert not any(type(e).__name__ == "SignalReceived" for e in handle.history)
    await handle.signal("add", 3)
    assert await handle.result() == 3
