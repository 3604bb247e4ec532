"""The Kafka binding of operations (issue 15): two deployments on one broker with their
own topic prefixes and workers, and no ``saga http`` on either side.

Team A's endpoint names B's topic prefix and task queue; its saga's start becomes a
start command on B's commands topic, B's callback a signal command on A's. A's saga
blocks until B's run ends and goes on with its result; A cancelled cancels B's run;
an operation B does not handle fails A's saga with B's refusal; a callback token that
does not verify under B's secret is not delivered, and polling finds the result.
"""

from __future__ import annotations

import asyncio
import queue
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import AsyncClient
from orchestrator.devstack import providers
from orchestrator.engine import events as ev
from orchestrator.exceptions import WorkflowFailedError
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.operations import CallerEntry, Endpoint, OperationHandler, OperationsConfig
from orchestrator.operations.activities import operation_activities
from orchestrator.operations.records import HANDLER_WORKFLOW
from orchestrator.status import WorkflowStatus
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions

pytestmark = pytest.mark.integration
SHARDS = 2
SHOP, BILLING = "kshop", "kbilling"
SECRET = "kafka-binding-secret-0123456789"
OTHER_SECRET = "not-the-shared-secret-0123456789"
_charging: queue.Queue[str] = queue.Queue()  # B's charge runs, as they start
_released: queue.Queue[str] = queue.Queue()  # A's orders whose reservation was compensated


@activity.defn(name="kb.billing.announce")
async def announce(workflow_id: str) -> None:
    _charging.put(workflow_id)


@workflow.defn(name="kb.billing.charge")
async def charge(ctx: workflow.WorkflowContext, req: dict[str, Any]) -> dict[str, Any]:
    """Announce itself, then wait for an approver's signal."""
    await ctx.execute_activity(announce, ctx.info.workflow_id)
    got = await ctx.wait_signal("decide", arg_types=(str,))
    assert got is not None
    return {"receipt": f"r-{req['order']}", "approver": got[0]}


@activity.defn(name="kb.shop.reserve")
async def reserve(order: str) -> str:
    return f"seat-{order}"


@activity.defn(name="kb.shop.release")
async def release(order: str) -> None:
    _released.put(order)


@workflow.defn(name="kb.shop.order")
async def order(ctx: workflow.WorkflowContext, name: str, operation: str) -> dict[str, Any]:
    saga = ctx.saga()
    await saga.step(reserve, name, compensate=release, compensate_args=(name,))
    paid: dict[str, Any] = await ctx.execute_operation(
        "payments", operation, {"order": name}, schedule_to_close=timedelta(minutes=5),
    )
    return paid


@workflow.defn(name="kb.shop.poll")
async def poll(ctx: workflow.WorkflowContext, name: str) -> dict[str, Any]:
    """Call through an endpoint whose secret B does not share: B's callback is refused,
    polling B's status over Kafka finds the end."""
    paid: dict[str, Any] = await ctx.execute_operation(
        "unsigned", "charge", {"order": name}, schedule_to_close=timedelta(minutes=5),
        poll_every=timedelta(seconds=1),
    )
    return paid


@dataclass(frozen=True)
class Teams:
    config: dict[str, Any]
    a: TopicLayout
    b: TopicLayout


@pytest.fixture(scope="module")
def teams(kafka: providers.KafkaHandle) -> Iterator[Teams]:
    config = {"bootstrap.servers": kafka.bootstrap_servers}
    run = uuid.uuid4().hex[:8]
    layout_a = TopicLayout(prefix=f"ka{run}", shards=SHARDS)
    layout_b = TopicLayout(prefix=f"kb{run}", shards=SHARDS)
    ops_a = OperationsConfig(
        endpoints={
            "payments": Endpoint("", "billing", "", SECRET, kafka=config,
                                 topic_prefix=layout_b.prefix, task_queue=BILLING),
            "unsigned": Endpoint("", "billing", "", OTHER_SECRET, kafka=config,
                                 topic_prefix=layout_b.prefix, task_queue=BILLING),
        },
        callback_topic_prefix=layout_a.prefix,
    )
    ops_b = OperationsConfig(
        handlers={"billing/charge": OperationHandler("kb.billing.charge", BILLING)},
        callers=(CallerEntry("", SECRET, kafka=config, topic_prefix=layout_a.prefix),),
    )
    admin = AdminClient(config)
    ensure_topics(admin, layout_a, [SHOP])
    ensure_topics(admin, layout_b, [BILLING])

    def options(layout: TopicLayout) -> ProcessorOptions:
        return ProcessorOptions(worker_id=f"{layout.prefix}-engine", transaction_timeout_ms=5000)

    with (
        EngineWorker(config, layout_a, [order, poll], options=options(layout_a)),
        ActivityWorker(config, SHOP, [reserve, release, *operation_activities(ops_a)],
                       layout=layout_a),
        EngineWorker(config, layout_b, [charge], options=options(layout_b)),
        ActivityWorker(config, BILLING, [announce, *operation_activities(ops_b)],
                       layout=layout_b),
    ):
        yield Teams(config, layout_a, layout_b)


async def _clients(stack: AsyncExitStack, teams: Teams) -> tuple[AsyncClient, AsyncClient]:
    a = await stack.enter_async_context(await AsyncClient.connect(teams.config, layout=teams.a))
    b = await stack.enter_async_context(await AsyncClient.connect(teams.config, layout=teams.b))
    return a, b


async def next_charge(timeout_s: float = 60.0) -> str:
    """The workflow id of the next charge run that B started."""
    return await asyncio.to_thread(_charging.get, timeout=timeout_s)


async def test_a_saga_calls_an_operation_over_kafka_and_goes_on_with_its_result(
    teams: Teams,
) -> None:
    async with AsyncExitStack() as stack:
        a, b = await _clients(stack, teams)
        order_id = f"order-{uuid.uuid4().hex[:6]}"
        await a.start(order, args=[order_id, "charge"], id=order_id, task_queue=SHOP)
        charge_id = await next_charge()
        await asyncio.sleep(1.0)
        assert (await a.get_handle(order_id).describe()).status is WorkflowStatus.RUNNING
        handler = await b.get_handle(charge_id.removesuffix("-run")).describe()
        assert handler.workflow_type == HANDLER_WORKFLOW and handler.is_open
        await b.get_handle(charge_id).signal("decide", "alice")
        got = await a.get_handle(order_id).result(timeout=60)
        assert got == {"receipt": f"r-{order_id}", "approver": "alice"}
        assert _charging.empty(), "one run in B for one operation"
        events = (await a.fetch_history(order_id)).events
        signals = [e for e in events if isinstance(e, ev.SignalReceived)]
        assert [s.signal_name.split("/")[0] for s in signals] == ["saga.operation.outcome"]


async def test_cancelling_the_saga_cancels_bs_run_over_kafka(teams: Teams) -> None:
    async with AsyncExitStack() as stack:
        a, b = await _clients(stack, teams)
        order_id = f"order-{uuid.uuid4().hex[:6]}"
        await a.start(order, args=[order_id, "charge"], id=order_id, task_queue=SHOP)
        charge_id = await next_charge()
        await a.get_handle(order_id).cancel("customer left")
        for _ in range(300):
            described = await b.get_handle(charge_id).describe()
            if not described.is_open:
                break
            await asyncio.sleep(0.2)
        assert described.status is WorkflowStatus.CANCELLED
        assert await asyncio.to_thread(_released.get, timeout=30) == order_id
        with pytest.raises(WorkflowFailedError):
            await a.get_handle(order_id).result(timeout=60)
        assert (await a.get_handle(order_id).describe()).status is WorkflowStatus.CANCELLED
        handler = b.get_handle(charge_id.removesuffix("-run"))
        outcome = await handler.result(timeout=60)
        assert outcome["state"] == "cancelled"


async def test_an_operation_b_does_not_handle_fails_the_saga(teams: Teams) -> None:
    async with AsyncExitStack() as stack:
        a, _ = await _clients(stack, teams)
        order_id = f"order-{uuid.uuid4().hex[:6]}"
        await a.start(order, args=[order_id, "refund"], id=order_id, task_queue=SHOP)
        with pytest.raises(WorkflowFailedError) as failed:
            await a.get_handle(order_id).result(timeout=60)
        chain = []
        err: BaseException | None = failed.value
        while err is not None:
            chain.append(f"{getattr(err, 'type', type(err).__name__)}: {err}")
            err = err.__cause__
        assert any(c.startswith("OperationNotFound: no operation billing/refund") for c in chain), (
            chain
        )
        assert await asyncio.to_thread(_released.get, timeout=30) == order_id


async def test_a_callback_token_b_cannot_verify_is_not_delivered_and_polling_ends_the_wait(
    teams: Teams,
) -> None:
    async with AsyncExitStack() as stack:
        a, b = await _clients(stack, teams)
        poll_id = f"poll-{uuid.uuid4().hex[:6]}"
        await a.start(poll, poll_id, id=poll_id, task_queue=SHOP)
        charge_id = await next_charge()
        await b.get_handle(charge_id).signal("decide", "bob")
        got = await a.get_handle(poll_id).result(timeout=60)
        assert got == {"receipt": f"r-{poll_id}", "approver": "bob"}
        events = (await a.fetch_history(poll_id)).events
        assert not [e for e in events if isinstance(e, ev.SignalReceived)], (
            "B refused to call back with a token it cannot verify"
        )
        assert [e for e in events if isinstance(e, ev.ActivityScheduled)
                and e.activity_type == "saga.operation.status"], "A read B's status"
        handler = (await b.fetch_history(charge_id.removesuffix("-run"))).events
        failed = [e.failure for e in handler if isinstance(e, ev.ActivityFailed)]
        assert [(f.type, f.message) for f in failed] == [
            ("OperationCallbackRefused", "callback refused: the callback token does not verify")
        ]
