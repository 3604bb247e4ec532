"""Checked by mypy --strict (pyproject.toml ``[tool.mypy] files``), never run.

Each assignment to an annotated variable fails type checking if the public edges
lose their generic result types: a ``WorkflowHandle[R]`` from ``start`` with a typed
workflow, ``execute_child_workflow``, ``start_child_workflow`` (its handle, awaited
or through ``result()``) and ``saga.step`` with typed functions, and the
test environment's handles. ``tests/unit/sdk/test_typed_edges.py`` proves that a wrong
annotation here is an error, so this module cannot pass by accident.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator import activity, workflow
from orchestrator.client import AsyncClient, AsyncWorkflowHandle, Client, WorkflowHandle
from orchestrator.testing import WorkflowEnvironment
from orchestrator.testing import WorkflowHandle as TestHandle


@dataclass(frozen=True)
class Order:
    order_id: str
    amount: int


@dataclass(frozen=True)
class Receipt:
    order_id: str
    charged: int


@activity.defn(name="typed.charge")
async def charge(order: Order) -> int:
    return order.amount


@activity.defn(name="typed.label")
def label(order: Order) -> str:
    return order.order_id


@activity.defn(name="typed.refund")
async def refund(order: Order) -> None:
    return None


@workflow.defn(name="typed.child")
async def child(ctx: workflow.WorkflowContext, order: Order) -> Receipt:
    return Receipt(order.order_id, order.amount)


@workflow.defn(name="typed.parent")
async def parent(ctx: workflow.WorkflowContext, order: Order) -> list[Receipt]:
    saga = ctx.saga()
    charged: int = await saga.step(charge, order, compensate=refund)
    name: str = await saga.step(label, order)
    receipt: Receipt = await ctx.execute_child_workflow(child, order)
    by_name: Receipt = await ctx.execute_child_workflow("typed.child", order,
                                                        result_type=Receipt)
    direct: int = await ctx.execute_activity(charge, order)
    assert (charged, name, direct) == (order.amount, order.order_id, order.amount)
    handle: workflow.ChildWorkflowHandle[Receipt] = await ctx.start_child_workflow(
        child, order, parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL
    )
    awaited: Receipt = await handle
    result: Receipt = await handle.result()
    assert awaited == result
    return [receipt, by_name]


def sync_client(client: Client, order: Order) -> list[Receipt]:
    handle: WorkflowHandle[list[Receipt]] = client.start(
        parent, order, id=order.order_id, task_queue="typed"
    )
    receipts: list[Receipt] = handle.result(timeout=10)
    named: WorkflowHandle[Receipt] = client.get_handle("o-1", result_type=Receipt)
    one: Receipt = named.result()
    override: Order = handle.result(result_type=Order)
    assert override.order_id == one.order_id
    return receipts


async def async_client(client: AsyncClient, order: Order) -> list[Receipt]:
    handle: AsyncWorkflowHandle[list[Receipt]] = await client.start(
        parent, order, id=order.order_id, task_queue="typed"
    )
    receipts: list[Receipt] = await handle.result(timeout=10)
    named: AsyncWorkflowHandle[Receipt] = client.get_handle("o-1", result_type=Receipt)
    one: Receipt = await named.result()
    receipts.append(one)
    return receipts


async def environment(order: Order) -> Receipt:
    async with WorkflowEnvironment(workflows=[parent, child], activities=[charge, label]) as env:
        handle: TestHandle[list[Receipt]] = await env.start_workflow(parent, order)
        receipts: list[Receipt] = await handle.result()
        direct: Receipt = await env.execute_workflow(child, order)
        return receipts[0] if receipts else direct
