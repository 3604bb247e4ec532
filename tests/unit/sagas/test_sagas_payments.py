"""The payments saga's logic under simulated time (stand-in activities, same names)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from orchestrator import activity
from orchestrator.engine import events as ev
from orchestrator.exceptions import ApplicationError, WorkflowFailedError
from orchestrator.testing import DEFAULT_START, WorkflowEnvironment
from sagas.payments import TransferEvent, TransferRequest, transfer

DAY = 24 * 3600.0


@dataclass
class FakeBank:
    """An in-memory bank with the real one's rules: idempotency keys, voiding reversals."""

    balances: dict[str, int] = field(default_factory=lambda: {"alice": 1000, "bob": 0})
    applied: dict[str, tuple[str, int]] = field(default_factory=dict)
    voided: set[str] = field(default_factory=set)
    down_until_ms: int = 0
    announced: list[str] = field(default_factory=list)

    def _move(self, key: str, account: str, delta: int) -> None:
        if key in self.voided:
            raise ApplicationError("operation voided", non_retryable=True)
        if key in self.applied:
            return
        if account not in self.balances:
            raise ApplicationError(f"no account {account}", non_retryable=True)
        if self.balances[account] + delta < 0:
            raise ApplicationError("insufficient funds", non_retryable=True)
        self.balances[account] += delta
        self.applied[key] = (account, delta)

    def activities(self, env_now: Callable[[], int]) -> list[Callable[..., Any]]:
        bank = self

        def check_open() -> None:
            if env_now() < bank.down_until_ms:
                raise ApplicationError("bank holiday", next_retry_delay=timedelta(hours=1))

        @activity.defn(name="payments.withdraw")
        def withdraw(req: TransferRequest) -> None:
            check_open()
            bank._move(f"{req.transfer_id}/withdraw", req.source, -req.amount)

        @activity.defn(name="payments.deposit")
        def deposit(req: TransferRequest) -> None:
            check_open()
            bank._move(f"{req.transfer_id}/deposit", req.target, req.amount)

        @activity.defn(name="payments.reverse")
        def reverse(req: TransferRequest, step: str) -> None:
            check_open()
            key = f"{req.transfer_id}/{step}"
            if key in bank.applied:
                account, delta = bank.applied.pop(key)
                bank.balances[account] -= delta
            bank.voided.add(key)

        @activity.defn(name="payments.announce")
        def announce(event: TransferEvent) -> None:
            bank.announced.append(f"{event.transfer_id}:{event.event}")

        return [withdraw, deposit, reverse, announce]


def scheduled(history: list[ev.Event]) -> list[str]:
    return [
        e.activity_type.removeprefix("payments.")
        for e in history
        if isinstance(e, ev.ActivityScheduled)
    ]


async def run(bank: FakeBank, req: TransferRequest) -> tuple[object, list[ev.Event]]:
    clock: list[WorkflowEnvironment] = []
    env = WorkflowEnvironment(
        workflows=[transfer],
        activities=bank.activities(lambda: int(clock[0].now().timestamp() * 1000)),
    )
    clock.append(env)
    async with env:
        handle = await env.start_workflow(transfer, req)
        try:
            result: object = await handle.result()
        except WorkflowFailedError as exc:
            result = exc
        return result, handle.history


async def test_transfer_moves_money_and_announces() -> None:
    bank = FakeBank()
    result, history = await run(bank, TransferRequest("t1", "alice", "bob", 300))
    assert getattr(result, "status", None) == "completed"
    assert bank.balances == {"alice": 700, "bob": 300}
    assert scheduled(history) == ["withdraw", "deposit", "announce"]
    assert bank.announced == ["t1:completed"]


async def test_missing_target_reverses_both_steps_and_fails() -> None:
    bank = FakeBank()
    result, history = await run(bank, TransferRequest("t2", "alice", "carol", 300))
    assert isinstance(result, WorkflowFailedError)
    assert bank.balances == {"alice": 1000, "bob": 0}  # the withdrawal was undone
    # compensations were registered before each call, so both run, newest first
    assert scheduled(history) == ["withdraw", "deposit", "reverse", "reverse"]
    assert {"t2/deposit", "t2/withdraw"} <= bank.voided
    assert bank.announced == []


async def test_insufficient_funds_voids_the_withdrawal_key() -> None:
    bank = FakeBank()
    result, history = await run(bank, TransferRequest("t3", "alice", "bob", 5000))
    assert isinstance(result, WorkflowFailedError)
    assert bank.balances == {"alice": 1000, "bob": 0}
    assert scheduled(history) == ["withdraw", "reverse"]
    assert "t3/withdraw" in bank.voided  # a late duplicate of the call would now be refused


@pytest.mark.parametrize(("settle_days", "completes"), [(5, True), (1, False)])
async def test_three_day_bank_holiday(settle_days: int, completes: bool) -> None:
    bank = FakeBank()
    bank.down_until_ms = int(DEFAULT_START.timestamp() * 1000 + 3 * DAY * 1000)
    req = TransferRequest("t4", "alice", "bob", 100, settle_within_s=settle_days * DAY)
    result, history = await run(bank, req)
    if completes:
        assert getattr(result, "status", None) == "completed"
        assert bank.balances == {"alice": 900, "bob": 100}
    else:
        assert isinstance(result, WorkflowFailedError)
        # the reversal retries (no expiry) until the bank reopens, then restores the balance
        assert bank.balances == {"alice": 1000, "bob": 0}
    retries = [e for e in history if isinstance(e, ev.ActivityAttemptFailed)]
    # the bank asks for an hour between attempts (Retry-After): about one a simulated hour
    assert len(retries) >= (70 if completes else 20)
