"""Money transfer between two bank accounts, as a saga.

    withdraw(source)  ──►  deposit(target)  ──►  announce(completed)
       undo: reverse          undo: reverse        (after the pivot: retried
       the withdrawal         the deposit          until it succeeds)
                              PIVOT

Both money calls are one-shot HTTP calls whose outcome can be unknown (the bank
may apply a withdrawal and answer after our timeout). So their compensations are
registered *before* the call, and they are reversals keyed by the business
idempotency key of the call they undo: a reversal of a call that never took
effect voids that key at the bank, so a late-arriving original is refused instead
of applied. The deposit is the pivot: once it succeeded, the transfer is done and
only the announcement remains, retried until it is published.

Configuration (environment of the activity worker): ``BANK_URL``,
``KAFKA_BOOTSTRAP_SERVERS`` and ``SAGA_TOPIC_PREFIX`` (events go to
``<prefix>.payments.events``), plus ``SAGA_KAFKA_*`` security settings.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict, dataclass, field
from datetime import timedelta

import httpx

from orchestrator import activity, workflow
from orchestrator.config import Settings
from orchestrator.connectors.http import HttpConnector
from orchestrator.connectors.kafka import CONNECTOR_SCHEMAS, EventPublisher
from orchestrator.workflow import RetryPolicy

TASK_QUEUE = "payments"


@dataclass
class TransferRequest:
    """A transfer of ``amount`` minor units; ``transfer_id`` is the business key."""

    transfer_id: str
    source: str
    target: str
    amount: int
    #: how long the money calls may keep retrying (e.g. through a bank holiday)
    settle_within_s: float = 5 * 24 * 3600.0


@dataclass
class TransferEvent:
    """What other services learn of a transfer (schema: payments.transfer-event.v1)."""

    transfer_id: str
    event: str
    source_account: str
    target_account: str
    amount: int
    occurred_at_ms: int
    currency: str = "EUR"
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class TransferReceipt:
    transfer_id: str
    status: str


# --- activities ----------------------------------------------------------------------


class _Connections:
    """Per event loop clients: an httpx client belongs to the loop it was opened on."""

    def __init__(self) -> None:
        self._bank: dict[asyncio.AbstractEventLoop, HttpConnector] = {}
        self._events: dict[asyncio.AbstractEventLoop, EventPublisher] = {}

    def bank(self) -> HttpConnector:
        loop = asyncio.get_running_loop()
        if loop not in self._bank:
            # 2 s to connect, send and answer; waiting for a pooled connection is not a
            # failure (the activity's start-to-close bounds the whole attempt). Counting
            # it would turn a slow bank into a storm of attempts that never left.
            timeout = httpx.Timeout(2.0, pool=None)
            self._bank[loop] = HttpConnector(os.environ["BANK_URL"], timeout=timeout)
        return self._bank[loop]

    async def events(self) -> EventPublisher:
        loop = asyncio.get_running_loop()
        if loop not in self._events:
            publisher = EventPublisher(
                Settings.from_env().kafka_config(),
                CONNECTOR_SCHEMAS / "payments.transfer-event.v1.avsc",
                source="/sagas/payments",
            )
            await publisher.start()
            self._events[loop] = publisher
        return self._events[loop]


_connections = _Connections()


def _key(req: TransferRequest, step: str) -> str:
    return f"transfer/{req.transfer_id}/{step}"


@activity.defn(name="payments.withdraw")
async def withdraw(req: TransferRequest) -> None:
    """Take the money from the source account (the bank answers 422 if it is short)."""
    await _connections.bank().post(
        f"/accounts/{req.source}/withdraw",
        json={"amount": req.amount},
        idempotency_key=_key(req, "withdraw"),
    )


@activity.defn(name="payments.deposit")
async def deposit(req: TransferRequest) -> None:
    """Put the money into the target account (404 if the account does not exist)."""
    await _connections.bank().post(
        f"/accounts/{req.target}/deposit",
        json={"amount": req.amount},
        idempotency_key=_key(req, "deposit"),
    )


@activity.defn(name="payments.reverse")
async def reverse(req: TransferRequest, step: str) -> None:
    """Undo ``step`` of this transfer, or void it at the bank if it never took effect."""
    await _connections.bank().post(
        "/reversals",
        json={"original_key": _key(req, step)},
        idempotency_key=_key(req, f"reverse-{step}"),
    )


@activity.defn(name="payments.announce")
async def announce(event: TransferEvent) -> None:
    """Publish a transfer event for other services (deduplicated by its ce_id)."""
    prefix = os.environ.get("SAGA_TOPIC_PREFIX", "saga")
    await (await _connections.events()).publish(
        f"{prefix}.payments.events", key=event.transfer_id, event=asdict(event)
    )


# --- the saga -------------------------------------------------------------------------


def _money_policy(req: TransferRequest) -> RetryPolicy:
    return RetryPolicy(
        initial=timedelta(milliseconds=250),
        maximum=timedelta(seconds=5),
        expire_after=timedelta(seconds=req.settle_within_s),
    )


@workflow.defn(name="payments.transfer")
async def transfer(ctx: workflow.WorkflowContext, req: TransferRequest) -> TransferReceipt:
    """Move money; on a terminal failure before the pivot, undo what may have happened."""
    saga = ctx.saga()
    policy, limit = _money_policy(req), timedelta(seconds=30)
    await saga.step(
        withdraw,
        req,
        compensate=reverse,
        compensate_args=(req, "withdraw"),
        register_before=True,
        task_queue=TASK_QUEUE,
        retry=policy,
        start_to_close=limit,
    )
    await saga.step(
        deposit,
        req,
        compensate=reverse,
        compensate_args=(req, "deposit"),
        register_before=True,
        pivot=True,
        task_queue=TASK_QUEUE,
        retry=policy,
        start_to_close=limit,
    )
    now = int(ctx.now().timestamp() * 1000)
    await ctx.execute_activity(
        announce,
        TransferEvent(req.transfer_id, "completed", req.source, req.target, req.amount, now),
        task_queue=TASK_QUEUE,
        start_to_close=timedelta(seconds=30),
    )
    return TransferReceipt(req.transfer_id, "completed")
