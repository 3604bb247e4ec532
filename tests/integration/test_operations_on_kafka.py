"""Operations across two deployments on one broker (issue 15): team A's saga calls
``billing/charge``, which team B implements with a saga that waits for a signal.

Each team has its own topic prefix, engine worker, activity worker and ``saga http``
(in this process, on loopback ports); they share nothing but the broker, B's bearer
token (A's endpoint configuration holds it) and the callback secret. A's saga blocks
until B's run ends, then goes on with B's result; B failing makes A compensate; A
cancelled cancels B's run.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import AsyncClient
from orchestrator.devstack import providers
from orchestrator.engine import events as ev
from orchestrator.exceptions import ApplicationError, WorkflowFailedError
from orchestrator.http import ApiOptions, build_app
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.operations import CallerEntry, Endpoint, OperationHandler, OperationsConfig
from orchestrator.operations.activities import operation_activities
from orchestrator.status import WorkflowStatus
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.fake_processor import DELAY_S, FakeProcessor
from tests.integration.http_helpers import ADMIN_TOKEN, TOKENS, wait_healthy

pytestmark = pytest.mark.integration
SHARDS = 2
SHOP, BILLING = "shop", "billing"
SECRET = "billing-callback-secret-0123456789"
PROCESSOR_TOKEN = "processor-token-0123456789"
PROCESSOR_SECRET = "processor-secret-0123456789"
_charging: queue.Queue[str] = queue.Queue()  # B's charge runs, as they start
_released: queue.Queue[str] = queue.Queue()  # A's orders whose reservation was compensated
_refunded: queue.Queue[str] = queue.Queue()  # B's refund runs, as they run


# --- team B: the operation's implementation -------------------------------------------


@activity.defn(name="billing.announce")
async def announce(workflow_id: str) -> None:
    _charging.put(workflow_id)


@workflow.defn(name="billing.charge")
async def charge(ctx: workflow.WorkflowContext, req: dict[str, Any]) -> dict[str, Any]:
    """Announce itself, then wait for an approver's signal."""
    await ctx.execute_activity(announce, ctx.info.workflow_id)
    got = await ctx.wait_signal("decide", arg_types=(str,))
    assert got is not None
    if got[0] == "decline":
        raise ApplicationError("card declined", type="Declined", non_retryable=True)
    return {"receipt": f"r-{req['order']}", "amount": req["amount"], "approver": got[0]}


@activity.defn(name="billing.record_refund")
async def record_refund(order: str) -> None:
    _refunded.put(order)


@workflow.defn(name="billing.refund")
async def refund(ctx: workflow.WorkflowContext, req: dict[str, Any]) -> dict[str, Any]:
    await ctx.execute_activity(record_refund, req["order"])
    return {"refunded": req["order"]}


# --- team A: the saga calling it ------------------------------------------------------


@activity.defn(name="shop.reserve")
async def reserve(order: str) -> str:
    return f"seat-{order}"


@activity.defn(name="shop.release")
async def release(order: str) -> None:
    _released.put(order)


@dataclass(frozen=True)
class Receipt:
    receipt: str
    amount: int
    approver: str


@workflow.defn(name="shop.order")
async def order(ctx: workflow.WorkflowContext, name: str) -> Receipt:
    saga = ctx.saga()
    await saga.step(reserve, name, compensate=release, compensate_args=(name,))
    paid: Receipt = await ctx.execute_operation(
        "payments", "charge", {"order": name, "amount": 42},
        schedule_to_close=timedelta(minutes=5), result_type=Receipt,
    )
    return paid


@activity.defn(name="shop.ship")
async def ship(order: str) -> None:
    raise ApplicationError(f"no truck for {order}", type="NoTruck", non_retryable=True)


@workflow.defn(name="shop.ship_order")
async def ship_order(ctx: workflow.WorkflowContext, name: str) -> None:
    """Charge through B as a saga step whose compensation is B's refund; shipping fails."""
    saga = ctx.saga()
    await saga.step(reserve, name, compensate=release, compensate_args=(name,))
    await saga.step_operation(
        "payments", "charge", {"order": name, "amount": 42}, compensate="refund",
        schedule_to_close=timedelta(minutes=5),
    )
    await saga.step(ship, name)


@workflow.defn(name="shop.pay")
async def pay(
    ctx: workflow.WorkflowContext, operation: str, amount: int, within_s: float
) -> dict[str, Any]:
    """Call the plain aiohttp processor; compensate the reservation if it fails."""
    saga = ctx.saga()
    await saga.step(reserve, f"pay-{amount}", compensate=release,
                    compensate_args=(ctx.info.workflow_id,))
    result: dict[str, Any] = await ctx.execute_operation(
        "processor", operation, {"amount": amount},
        schedule_to_close=timedelta(seconds=within_s),
        retry=workflow.RetryPolicy(initial=timedelta(milliseconds=200), max_attempts=3),
    )
    return result


@workflow.defn(name="shop.poll")
async def poll(ctx: workflow.WorkflowContext, amount: int) -> dict[str, Any]:
    """Call an operation whose handler never calls back: polling finds its end."""
    result: dict[str, Any] = await ctx.execute_operation(
        "processor", "silent", {"amount": amount}, schedule_to_close=timedelta(minutes=1),
        poll_every=timedelta(seconds=1),
    )
    return result


# --- the two deployments --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Team:
    kafka_config: dict[str, Any]
    layout: TopicLayout
    port: int
    operations: OperationsConfig

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Teams:
    a: Team
    b: Team
    processor_port: int


@pytest.fixture(scope="module")
def teams(kafka: providers.KafkaHandle) -> Iterator[Teams]:
    config = {"bootstrap.servers": kafka.bootstrap_servers}
    port_a, port_b, port_p = _free_port(), _free_port(), _free_port()
    callback = f"http://127.0.0.1:{port_a}/v1/operation-callbacks"
    ops_a = OperationsConfig(
        endpoints={
            "payments": Endpoint(f"http://127.0.0.1:{port_b}", BILLING, ADMIN_TOKEN, SECRET),
            "processor": Endpoint(f"http://127.0.0.1:{port_p}", "pay", PROCESSOR_TOKEN,
                                  PROCESSOR_SECRET),
        },
        callback_url=callback,
    )
    ops_b = OperationsConfig(
        handlers={"billing/charge": OperationHandler("billing.charge", BILLING),
                  "billing/refund": OperationHandler("billing.refund", BILLING)},
        callers=(CallerEntry(callback, SECRET),),
    )
    run = uuid.uuid4().hex[:8]
    layout_a = TopicLayout(prefix=f"ta{run}", shards=SHARDS)
    layout_b = TopicLayout(prefix=f"tb{run}", shards=SHARDS)
    admin = AdminClient(config)
    ensure_topics(admin, layout_a, [SHOP])
    ensure_topics(admin, layout_b, [BILLING])

    def options(layout: TopicLayout) -> ProcessorOptions:
        return ProcessorOptions(worker_id=f"{layout.prefix}-engine", transaction_timeout_ms=5000)

    with (
        EngineWorker(config, layout_a, [order, ship_order, pay, poll],
                     options=options(layout_a)),
        ActivityWorker(config, SHOP, [reserve, release, ship, *operation_activities(ops_a)],
                       layout=layout_a),
        EngineWorker(config, layout_b, [charge, refund], options=options(layout_b)),
        ActivityWorker(config, BILLING, [announce, record_refund, *operation_activities(ops_b)],
                       layout=layout_b),
    ):
        yield Teams(
            Team(config, layout_a, port_a, ops_a), Team(config, layout_b, port_b, ops_b), port_p
        )


@asynccontextmanager
async def serving(team: Team) -> AsyncIterator[AsyncClient]:
    """The team's ``saga http`` on its port, and a client of its deployment."""
    options = ApiOptions(kafka_config=team.kafka_config, topic_prefix=team.layout.prefix,
                         tokens=TOKENS, operations=team.operations)
    runner = web.AppRunner(build_app(options), shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", team.port).start()
        await wait_healthy(team.url)
        async with await AsyncClient.connect(team.kafka_config, layout=team.layout) as client:
            yield client
    finally:
        await runner.cleanup()


@asynccontextmanager
async def both(teams: Teams) -> AsyncIterator[tuple[AsyncClient, AsyncClient]]:
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(serving(teams.a))
        b = await stack.enter_async_context(serving(teams.b))
        yield a, b


async def next_charge(timeout_s: float = 60.0) -> str:
    """The workflow id of the next charge run that B started."""
    return await asyncio.to_thread(_charging.get, timeout=timeout_s)


async def test_a_saga_waits_for_the_operation_and_goes_on_with_its_result(
    teams: Teams,
) -> None:
    async with both(teams) as (a, b):
        order_id = f"order-{uuid.uuid4().hex[:6]}"
        await a.start(order, order_id, id=order_id, task_queue=SHOP)
        charge_id = await next_charge()
        await asyncio.sleep(1.0)
        assert (await a.get_handle(order_id).describe()).status is WorkflowStatus.RUNNING, (
            "A's saga blocks while B's run waits"
        )
        path = f"/v1/operations/billing/charge/{charge_id.removesuffix('-run')}"
        async with _http(teams.b) as http:
            running = await http.get(path)
            assert running.json()["state"] == "running"
            assert (await http.get(path + "?wait=0.5")).json()["state"] == "running"
            polled = asyncio.create_task(http.get(path + "?wait=30"))
            await asyncio.sleep(0.5)
            assert not polled.done(), "a long poll waits for the end"
            await b.get_handle(charge_id).signal("decide", "alice")
            receipt = await a.get_handle(order_id, result_type=Receipt).result(timeout=60)
            assert receipt == Receipt(f"r-{order_id}", 42, "alice")
            got = await polled
        assert got.status_code == 200
        assert got.json()["state"] == "succeeded"
        assert got.json()["result"]["approver"] == "alice"
        assert _charging.empty(), "one run in B for one operation"


async def test_a_failed_operation_makes_the_saga_compensate(teams: Teams) -> None:
    async with both(teams) as (a, b):
        order_id = f"order-{uuid.uuid4().hex[:6]}"
        await a.start(order, order_id, id=order_id, task_queue=SHOP)
        charge_id = await next_charge()
        await b.get_handle(charge_id).signal("decide", "decline")
        with pytest.raises(WorkflowFailedError) as failed:
            await a.get_handle(order_id).result(timeout=60)
        chain = []
        err: BaseException | None = failed.value
        while err is not None:
            chain.append(f"{getattr(err, 'type', type(err).__name__)}: {err}")
            err = err.__cause__
        assert any("OperationError" in c and "failed" in c for c in chain), chain
        assert any("Declined: card declined" in c for c in chain), chain
        assert await asyncio.to_thread(_released.get, timeout=30) == order_id


async def test_a_later_failure_compensates_the_charge_with_bs_refund_operation(
    teams: Teams,
) -> None:
    async with both(teams) as (a, b):
        order_id = f"ship-{uuid.uuid4().hex[:6]}"
        await a.start(ship_order, order_id, id=order_id, task_queue=SHOP)
        charge_id = await next_charge()
        await b.get_handle(charge_id).signal("decide", "alice")
        with pytest.raises(WorkflowFailedError) as failed:
            await a.get_handle(order_id).result(timeout=60)
        assert f"no truck for {order_id}" in str(failed.value.__cause__ or failed.value)
        assert await asyncio.to_thread(_refunded.get, timeout=30) == order_id
        assert await asyncio.to_thread(_released.get, timeout=30) == order_id
        assert (await a.get_handle(order_id).describe()).status is WorkflowStatus.FAILED
        await asyncio.sleep(1.0)
        assert _refunded.empty(), "one refund run in B"
        events = (await a.fetch_history(order_id)).events
        [started] = [e for e in events if isinstance(e, ev.CompensationStarted)]
        assert started.compensations == ["payments/refund", "shop.release"]


async def _started(client: AsyncClient, workflow_id: str) -> None:
    """Until the run has recorded its operation start's answer (it waits for the outcome)."""
    for _ in range(300):
        events = (await client.fetch_history(workflow_id)).events
        done = {e.activity_seq for e in events if isinstance(e, ev.ActivityCompleted)}
        starts = {e.activity_seq for e in events if isinstance(e, ev.ActivityScheduled)
                  and e.activity_type == "saga.operation.start"}
        if starts & done:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{workflow_id} did not record its operation start")


@pytest.mark.parametrize("when", ["at once", "while waiting"])
async def test_cancelling_the_saga_cancels_the_operations_run(teams: Teams, when: str) -> None:
    """Cancelled at once, the run may not have the start's answer yet: it asks again
    with the same request id and cancels the operation named; cancelled while waiting
    for the outcome, it cancels the operation it knows."""
    async with both(teams) as (a, b):
        order_id = f"order-{uuid.uuid4().hex[:6]}"
        await a.start(order, order_id, id=order_id, task_queue=SHOP)
        charge_id = await next_charge()
        if when == "while waiting":
            await _started(a, order_id)
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
        async with _http(teams.b) as http:
            operation_id = charge_id.removesuffix("-run")
            got = await http.get(f"/v1/operations/billing/charge/{operation_id}?wait=30")
        assert got.json()["state"] == "cancelled"


@asynccontextmanager
async def _http(team: Team) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=team.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as http:
        yield http


@asynccontextmanager
async def processor(teams: Teams) -> AsyncIterator[FakeProcessor]:
    fake = FakeProcessor(PROCESSOR_TOKEN, PROCESSOR_SECRET)
    runner = web.AppRunner(fake.app(), shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", teams.processor_port).start()
        yield fake
    finally:
        await runner.cleanup()


async def test_a_plain_aiohttp_service_answers_by_callback(teams: Teams) -> None:
    async with serving(teams.a) as a, processor(teams) as fake:
        pay_id = f"pay-{uuid.uuid4().hex[:6]}"
        began = time.monotonic()
        await a.start(pay, args=["charge", 30, 60.0], id=pay_id, task_queue=SHOP)
        result = await a.get_handle(pay_id).result(timeout=60)
        assert result == {"paid": 30, "by": "fakepay"}
        assert time.monotonic() - began >= DELAY_S, "it waited for the callback"
        [(request_id, starts)] = fake.starts.items()
        assert request_id.startswith(f"{pay_id}/") and starts == 1


async def test_a_plain_service_answering_at_once_needs_no_callback(teams: Teams) -> None:
    async with serving(teams.a) as a, processor(teams) as fake:
        pay_id = f"pay-{uuid.uuid4().hex[:6]}"
        await a.start(pay, args=["quote", 50, 60.0], id=pay_id, task_queue=SHOP)
        assert await a.get_handle(pay_id).result(timeout=60) == {"fee": 5}
        assert not fake.operations, "no operation was left running"


async def test_a_plain_services_failure_reaches_the_saga_with_its_cause_chain(
    teams: Teams,
) -> None:
    async with serving(teams.a) as a, processor(teams):
        pay_id = f"pay-{uuid.uuid4().hex[:6]}"
        await a.start(pay, args=["charge", 5000, 60.0], id=pay_id, task_queue=SHOP)
        with pytest.raises(WorkflowFailedError) as failed:
            await a.get_handle(pay_id).result(timeout=60)
        chain = []
        err: BaseException | None = failed.value
        while err is not None:
            chain.append(f"{getattr(err, 'type', type(err).__name__)}: {err}")
            err = err.__cause__
        assert any(c.startswith("Limit: limit exceeded") for c in chain), chain
        assert any(c.startswith("Policy: daily limit 1000") for c in chain), chain
        assert await asyncio.to_thread(_released.get, timeout=30) == pay_id


async def test_a_start_retried_after_a_5xx_keeps_its_request_id(teams: Teams) -> None:
    async with serving(teams.a) as a, processor(teams) as fake:
        pay_id = f"pay-{uuid.uuid4().hex[:6]}"
        await a.start(pay, args=["flaky", 20, 60.0], id=pay_id, task_queue=SHOP)
        assert await a.get_handle(pay_id).result(timeout=60) == {"paid": 20, "by": "fakepay"}
        [(request_id, starts)] = fake.starts.items()
        assert request_id.startswith(f"{pay_id}/") and starts == 2, "one id, two attempts"
        assert len(fake.operations) == 1


async def test_an_operation_past_schedule_to_close_is_cancelled_and_fails_the_saga(
    teams: Teams,
) -> None:
    async with serving(teams.a) as a, processor(teams) as fake:
        pay_id = f"pay-{uuid.uuid4().hex[:6]}"
        await a.start(pay, args=["hang", 20, 3.0], id=pay_id, task_queue=SHOP)
        with pytest.raises(WorkflowFailedError) as failed:
            await a.get_handle(pay_id).result(timeout=60)
        err: BaseException | None = failed.value
        types = []
        while err is not None:
            types.append(getattr(err, "type", type(err).__name__))
            err = err.__cause__
        assert "OperationError" in types, types
        assert "did not end within" in str(failed.value.__cause__ or failed.value)
        assert fake.cancelled == list(fake.operations.values()), "the handler got a cancel"
        assert await asyncio.to_thread(_released.get, timeout=30) == pay_id


async def test_polling_finds_the_end_of_an_operation_that_never_calls_back(
    teams: Teams,
) -> None:
    async with serving(teams.a) as a, processor(teams) as fake:
        poll_id = f"poll-{uuid.uuid4().hex[:6]}"
        await a.start(poll, 70, id=poll_id, task_queue=SHOP)
        assert await a.get_handle(poll_id).result(timeout=60) == {"paid": 70, "by": "fakepay"}
        assert len(fake.operations) == 1 and not fake.cancelled
        events = (await a.fetch_history(poll_id)).events
        polls = [e for e in events if isinstance(e, ev.ActivityScheduled)
                 and e.activity_type == "saga.operation.status"]
        assert polls, "the run read the status"
