"""Workflows and activities of the acceptance scenarios.

Shared by the unit tests (which run them) and the replay tests (which replay the
histories they produced, saved under ``tests/replay/histories/``). Activities log
what they did in :data:`LEDGER`; call :func:`reset` before each test. Behaviour is
driven by the request, so a history replays against this module unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from orchestrator import activity, workflow
from orchestrator.exceptions import ApplicationError
from orchestrator.workflow import RetryPolicy, WorkflowContext, hours, minutes

LEDGER: list[str] = []


def reset() -> None:
    """Forget what earlier tests did."""
    LEDGER.clear()


def _declined_if(step: str, fail_at: str) -> None:
    if step == fail_at:
        raise ApplicationError(f"{step} declined", type="Declined", non_retryable=True)


# --- transfer: three steps, the third may fail terminally ---------------------------


@dataclass
class TransferRequest:
    source: str
    target: str
    amount: int
    fail_at: str = ""


@activity.defn
def withdraw(req: TransferRequest) -> str:
    _declined_if("withdraw", req.fail_at)
    LEDGER.append(f"withdraw {req.amount} from {req.source}")
    return f"w:{activity.info().idempotency_key}"


@activity.defn
async def deposit(req: TransferRequest) -> str:
    _declined_if("deposit", req.fail_at)
    LEDGER.append(f"deposit {req.amount} to {req.target}")
    return "d"


@activity.defn
def notify(req: TransferRequest) -> str:
    _declined_if("notify", req.fail_at)
    LEDGER.append(f"notify {req.target}")
    return "n"


@activity.defn
def refund(req: TransferRequest) -> None:
    LEDGER.append(f"refund {req.amount} to {req.source}")


@activity.defn
def reverse_deposit(req: TransferRequest) -> None:
    LEDGER.append(f"reverse deposit {req.amount} from {req.target}")


@workflow.defn(name="transfer")
async def transfer(ctx: WorkflowContext, req: TransferRequest) -> str:
    saga = ctx.saga()
    await saga.step(withdraw, req, compensate=refund)
    await saga.step(deposit, req, compensate=reverse_deposit)
    await saga.step(notify, req)
    return "done"


TRANSFER_ACTIVITIES = [withdraw, deposit, notify, refund, reverse_deposit]


# --- subscription: twelve monthly charges, cancellable by signal ---------------------


@activity.defn
def charge(customer: str, month: int) -> str:
    LEDGER.append(f"charge {customer} month {month}")
    return f"receipt-{month}"


@workflow.defn(name="subscription")
class Subscription:
    def __init__(self) -> None:
        self.cancelled = False
        self.charges = 0

    @workflow.run
    async def run(self, ctx: WorkflowContext, customer: str) -> int:
        for month in range(1, 13):
            await ctx.sleep(timedelta(days=30))
            await ctx.execute_activity(charge, customer, month)
            self.charges += 1
            if self.cancelled:
                break
        return self.charges

    @workflow.signal
    def cancel(self) -> None:
        self.cancelled = True

    @workflow.query
    def charge_count(self) -> int:
        return self.charges


# --- payout: a downstream that is down for three days --------------------------------


@dataclass
class PayoutRequest:
    account: str
    amount: int
    expire_days: int
    down_for_days: int = 3


@activity.defn
def reserve(req: PayoutRequest) -> str:
    LEDGER.append(f"reserve {req.amount}")
    return "r"


@activity.defn
def release(req: PayoutRequest) -> None:
    LEDGER.append(f"release {req.amount}")


@activity.defn
def flaky_payout(req: PayoutRequest) -> str:
    info = activity.info()
    if info.attempt_started_time - info.scheduled_time < timedelta(days=req.down_for_days):
        LEDGER.append(f"payout attempt {info.attempt} failed")
        raise ApplicationError("downstream unavailable", type="Unavailable")
    LEDGER.append(f"payout attempt {info.attempt} ok")
    return f"paid on attempt {info.attempt}"


@workflow.defn(name="payout")
async def payout(ctx: WorkflowContext, req: PayoutRequest) -> str:
    saga = ctx.saga()
    await saga.step(reserve, req, compensate=release)
    policy = RetryPolicy(
        initial=minutes(1), backoff=2.0, maximum=hours(6),
        expire_after=timedelta(days=req.expire_days),
    )
    result: str = await saga.step(flaky_payout, req, retry=policy)
    return result


# --- trip: three bookings in parallel ----------------------------------------------------


@dataclass
class TripRequest:
    traveller: str
    fail_at: str = ""
    booked: list[str] = field(default_factory=list)


@activity.defn
def book_flight(req: TripRequest) -> str:
    _declined_if("flight", req.fail_at)
    LEDGER.append("book flight")
    return "flight"


@activity.defn
async def book_hotel(req: TripRequest) -> str:
    _declined_if("hotel", req.fail_at)
    LEDGER.append("book hotel")
    return "hotel"


@activity.defn
def book_car(req: TripRequest) -> str:
    _declined_if("car", req.fail_at)
    LEDGER.append("book car")
    return "car"


@activity.defn
def cancel_flight(req: TripRequest) -> None:
    LEDGER.append("cancel flight")


@activity.defn
def cancel_hotel(req: TripRequest) -> None:
    LEDGER.append("cancel hotel")


@activity.defn
def cancel_car(req: TripRequest) -> None:
    LEDGER.append("cancel car")


@workflow.defn(name="trip")
async def trip(ctx: WorkflowContext, req: TripRequest) -> list[str]:
    saga = ctx.saga()
    results = await asyncio.gather(
        saga.step(book_flight, req, compensate=cancel_flight),
        saga.step(book_hotel, req, compensate=cancel_hotel),
        saga.step(book_car, req, compensate=cancel_car),
    )
    return list(results)


TRIP_ACTIVITIES = [book_flight, book_hotel, book_car, cancel_flight, cancel_hotel, cancel_car]


# --- cart: updates with a validator ---------------------------------------------------------


@workflow.defn(name="cart")
class Cart:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.checked_out = False

    @workflow.run
    async def run(self, ctx: WorkflowContext) -> list[str]:
        await ctx.wait_condition(lambda: self.checked_out)
        return self.items

    @workflow.update
    def add_item(self, item: str) -> int:
        self.items.append(item)
        return len(self.items)

    @workflow.update_validator("add_item")
    def validate_add_item(self, item: str) -> None:
        if not item.strip():
            raise ValueError("item must not be empty")

    @workflow.signal
    def checkout(self) -> None:
        self.checked_out = True

    @workflow.query
    def count(self) -> int:
        return len(self.items)


# --- versioning: three versions of one workflow --------------------------------------------


@activity.defn
def step_a() -> str:
    LEDGER.append("a")
    return "a"


@activity.defn
def step_b() -> str:
    LEDGER.append("b")
    return "b"


@activity.defn
def audit() -> str:
    LEDGER.append("audit")
    return "audit"


@workflow.defn(name="versioned")
async def versioned_v1(ctx: WorkflowContext) -> list[str]:
    a = await ctx.execute_activity(step_a)
    b = await ctx.execute_activity(step_b)
    return [a, b]


@workflow.defn(name="versioned")
async def versioned_v2_unguarded(ctx: WorkflowContext) -> list[str]:
    a = await ctx.execute_activity(step_a)
    x = await ctx.execute_activity(audit)
    b = await ctx.execute_activity(step_b)
    return [a, x, b]


@workflow.defn(name="versioned")
async def versioned_v2_patched(ctx: WorkflowContext) -> list[str]:
    out = [await ctx.execute_activity(step_a)]
    if ctx.patched("add-audit"):
        out.append(await ctx.execute_activity(audit))
    out.append(await ctx.execute_activity(step_b))
    return out


VERSIONED_ACTIVITIES = [step_a, step_b, audit]

ALL_ACTIVITIES: list[Callable[..., Any]] = [
    *TRANSFER_ACTIVITIES, charge, reserve, release, flaky_payout, *TRIP_ACTIVITIES,
    *VERSIONED_ACTIVITIES,
]
