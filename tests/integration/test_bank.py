"""The demo bank: a real HTTP server on loopback with its ledger in PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest

from orchestrator import activity, workflow
from orchestrator.connectors.http import HttpConnector
from orchestrator.devstack.bank import BankServer
from orchestrator.exceptions import ApplicationError
from orchestrator.testing import WorkflowEnvironment
from orchestrator.workflow import RetryPolicy, WorkflowContext, minutes, seconds

pytestmark = pytest.mark.integration


@pytest.fixture
def bank(database: str) -> Iterator[BankServer]:
    with BankServer(database, seed=7) as server:
        yield server


async def _open(http: httpx.AsyncClient, **balances: int) -> None:
    for account, amount in balances.items():
        r = await http.post("/accounts", json={"account_id": account, "initial_balance": amount})
        assert r.status_code == 201, r.text


async def _balance(http: httpx.AsyncClient, account: str) -> int:
    r = await http.get(f"/accounts/{account}")
    r.raise_for_status()
    return int(r.json()["balance"])


async def test_money_endpoints_honour_idempotency_keys(bank: BankServer) -> None:
    async with httpx.AsyncClient(base_url=bank.url) as http:
        await _open(http, alice=1_000, bob=0)
        key = {"Idempotency-Key": "w-1"}
        first = await http.post("/accounts/alice/withdraw", json={"amount": 300}, headers=key)
        again = await http.post("/accounts/alice/withdraw", json={"amount": 300}, headers=key)
        assert first.status_code == again.status_code == 200
        assert first.json() == again.json()
        assert first.json()["balances"] == {"alice": 700}
        assert again.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers
        assert await _balance(http, "alice") == 700

        r = await http.post("/accounts/alice/withdraw", json={"amount": 1})
        assert (r.status_code, r.json()["error"]) == (400, "bad_request")
        r = await http.post(
            "/accounts/alice/withdraw", json={"amount": 301}, headers=key
        )
        assert (r.status_code, r.json()["error"]) == (422, "IdempotencyKeyReused")

        broke = {"Idempotency-Key": "w-2"}
        for _ in range(2):
            r = await http.post("/accounts/bob/withdraw", json={"amount": 5}, headers=broke)
            assert (r.status_code, r.json()["error"]) == (422, "InsufficientFunds")

        r = await http.post(
            "/accounts/bob/deposit", json={"amount": 50}, headers={"Idempotency-Key": "d-1"}
        )
        assert r.json()["balances"] == {"bob": 50}
        r = await http.post(
            "/transfers", json={"source": "alice", "target": "bob", "amount": 100},
            headers={"Idempotency-Key": "t-1"},
        )
        assert r.json()["balances"] == {"alice": 600, "bob": 150}
        r = await http.get("/accounts/nobody")
        assert r.status_code == 404
        r = await http.get("/total")
        assert r.json() == {"total": 750, "accounts": 2}


async def test_twenty_concurrent_requests_with_one_key_are_applied_once(
    bank: BankServer,
) -> None:
    async with httpx.AsyncClient(base_url=bank.url) as http:
        await _open(http, alice=1_000)
        answers = await asyncio.gather(
            *(
                http.post(
                    "/accounts/alice/withdraw", json={"amount": 10},
                    headers={"Idempotency-Key": "same"},
                )
                for _ in range(20)
            )
        )
        assert {r.status_code for r in answers} == {200}
        assert len({r.text for r in answers}) == 1
        assert sum("Idempotent-Replayed" not in r.headers for r in answers) == 1
        assert await _balance(http, "alice") == 990


async def test_refunds_apply_once_and_void_a_withdrawal_that_never_arrived(
    bank: BankServer,
) -> None:
    async with httpx.AsyncClient(base_url=bank.url) as http:
        await _open(http, alice=1_000)
        await http.post(
            "/accounts/alice/withdraw", json={"amount": 400}, headers={"Idempotency-Key": "w-1"}
        )
        for _ in range(2):
            r = await http.post(
                "/reversals", json={"original_key": "w-1"}, headers={"Idempotency-Key": "r-1"}
            )
            assert r.status_code == 200
            assert r.json()["applied"] is True
        assert await _balance(http, "alice") == 1_000
        # A compensation registered before the call: refund first, the withdrawal late.
        r = await http.post(
            "/reversals", json={"original_key": "w-2"}, headers={"Idempotency-Key": "r-2"}
        )
        assert r.json()["applied"] is False
        r = await http.post(
            "/accounts/alice/withdraw", json={"amount": 400}, headers={"Idempotency-Key": "w-2"}
        )
        assert (r.status_code, r.json()["error"]) == (409, "OperationVoided")
        assert await _balance(http, "alice") == 1_000


async def test_bank_holiday_answers_503_with_retry_after_then_recovers(bank: BankServer) -> None:
    async with HttpConnector(bank.url, timeout=5.0) as http:
        await _open(http.client, alice=1_000)
        bank.faults.outage(1.0)
        with pytest.raises(ApplicationError) as info:
            await http.post("/accounts/alice/withdraw", json={"amount": 10}, idempotency_key="k")
        err = info.value
        assert (err.type, err.retryable) == ("HttpServiceUnavailable", True)
        assert err.next_retry_delay == timedelta(seconds=1)
        assert await _balance(http.client, "alice") == 1_000  # nothing applied

        bank.faults.outage(3600, retry_after=7200, http_date=True)
        with pytest.raises(ApplicationError) as info:
            await http.post("/accounts/alice/withdraw", json={"amount": 10}, idempotency_key="k")
        delay = info.value.next_retry_delay
        assert delay is not None
        assert timedelta(hours=1, minutes=59) < delay <= timedelta(hours=2)

        bank.faults.outage(0.5)  # a short window that ends on its own
        await asyncio.sleep(0.7)
        r = await http.post("/accounts/alice/withdraw", json={"amount": 10}, idempotency_key="k")
        assert r.json()["balances"] == {"alice": 990}
        assert bank.faults.snapshot()["injected"]["outage_503"] == 2


async def test_slow_answer_after_the_caller_gave_up_is_charged_once(bank: BankServer) -> None:
    async with HttpConnector(bank.url, timeout=0.5) as http:
        await _open(http.client, alice=1_000)
        bank.faults.slow_after_apply(3.0)
        started = time.monotonic()
        with pytest.raises(ApplicationError) as info:
            await http.post("/accounts/alice/withdraw", json={"amount": 250}, idempotency_key="w")
        assert (info.value.type, info.value.retryable) == ("HttpTimeout", True)
        assert time.monotonic() - started < 2
        # The bank did apply it; the retry with the same key gets the recorded answer.
        assert await _balance(http.client, "alice") == 750
        r = await http.post("/accounts/alice/withdraw", json={"amount": 250}, idempotency_key="w")
        assert r.headers["Idempotent-Replayed"] == "true"
        assert r.json()["balances"] == {"alice": 750}
        assert await _balance(http.client, "alice") == 750


@dataclass
class Withdrawal:
    bank_url: str
    account: str
    amount: int


@activity.defn(name="bank_withdraw")
async def bank_withdraw(req: Withdrawal) -> int:
    async with HttpConnector(req.bank_url, timeout=0.5) as http:
        r = await http.post(f"/accounts/{req.account}/withdraw", json={"amount": req.amount})
        return int(r.json()["balances"][req.account])


@workflow.defn(name="withdraw_once")
async def withdraw_once(ctx: WorkflowContext, req: Withdrawal) -> int:
    return await ctx.execute_activity(
        bank_withdraw, req, retry=RetryPolicy(initial=seconds(1), expire_after=minutes(5))
    )


async def test_activity_retry_under_a_policy_reuses_the_key(bank: BankServer) -> None:
    async with httpx.AsyncClient(base_url=bank.url) as http:
        await _open(http, alice=1_000)
    bank.faults.slow_after_apply(2.0)  # attempt 1 is applied, then times out
    async with WorkflowEnvironment(workflows=[withdraw_once], activities=[bank_withdraw]) as env:
        start = env.now()
        handle = await env.start_workflow(withdraw_once, Withdrawal(bank.url, "alice", 100))
        assert await handle.result() == 900
        assert env.now() - start >= timedelta(seconds=1)  # one backoff, simulated
    async with httpx.AsyncClient(base_url=bank.url) as http:
        assert await _balance(http, "alice") == 900
    assert bank.faults.snapshot()["injected"]["slow_responses"] == 1


async def test_admin_endpoint_controls_faults(bank: BankServer) -> None:
    async with httpx.AsyncClient(base_url=bank.url) as http:
        await _open(http, alice=10)
        r = await http.put("/admin/faults", json={"error_rate": 1.0, "latency": 0.2, "seed": 3})
        assert r.status_code == 200
        assert r.json()["error_rate"] == 1.0
        started = time.monotonic()
        r = await http.post(
            "/accounts/alice/deposit", json={"amount": 1}, headers={"Idempotency-Key": "d"}
        )
        assert r.status_code == 500
        assert time.monotonic() - started >= 0.2
        r = await http.put("/admin/faults", json={"outage_seconds": 60, "retry_after": 5})
        r = await http.post(
            "/accounts/alice/deposit", json={"amount": 1}, headers={"Idempotency-Key": "d"}
        )
        assert (r.status_code, r.headers["Retry-After"]) == (503, "5")
        r = await http.get("/admin/faults")
        assert r.json()["injected"] == {"outage_503": 1, "random_500": 1, "slow_responses": 0}
        assert (await http.put("/admin/faults", json={"bogus": 1})).status_code == 400
        assert (await http.delete("/admin/faults")).json()["error_rate"] == 0.0
        r = await http.post(
            "/accounts/alice/deposit", json={"amount": 1}, headers={"Idempotency-Key": "d"}
        )
        assert r.json()["balances"] == {"alice": 11}


async def _transfer_with_retries(
    http: HttpConnector, key: str, body: dict[str, Any], stats: dict[str, int]
) -> bool:
    """True if the transfer completed, False if the bank refused it for good."""
    for _ in range(50):
        try:
            await http.post("/transfers", json=body, idempotency_key=key)
        except ApplicationError as err:
            if not err.retryable:
                assert err.type == "HttpClientError"
                assert "InsufficientFunds" in err.message
                stats["rejected"] += 1
                return False
            stats["retries"] += 1
            await asyncio.sleep(0.01)
        else:
            stats["completed"] += 1
            return True
    raise AssertionError(f"{key} never finished")


async def test_conservation_across_200_random_transfers_with_faults(bank: BankServer) -> None:
    accounts = {f"acct-{i}": 1_000 for i in range(10)}
    rng = random.Random(2024)
    async with HttpConnector(bank.url, timeout=0.4) as http:
        await _open(http.client, **accounts)
        bank.faults.error_rate(0.2, seed=11)
        bank.faults.slow_after_apply(0.8, count=5)  # five callers give up after it applied
        stats = {"completed": 0, "rejected": 0, "retries": 0}
        expected = dict(accounts)
        gate = asyncio.Semaphore(6)

        async def one(i: int) -> None:
            source, target = rng.sample(sorted(accounts), 2)
            amount = rng.randint(1, 400)
            body = {"source": source, "target": target, "amount": amount}
            async with gate:
                if await _transfer_with_retries(http, f"transfer-{i}", body, stats):
                    expected[source] -= amount
                    expected[target] += amount

        await asyncio.gather(*(one(i) for i in range(200)))
        injected = bank.faults.snapshot()["injected"]
        bank.faults.reset()
        total = (await http.get("/total")).json()
        balances = {a: await _balance(http.client, a) for a in accounts}

    assert stats["completed"] + stats["rejected"] == 200
    assert stats["retries"] > 20  # the faults did bite
    assert injected["slow_responses"] == 5
    assert injected["random_500"] > 10
    assert total == {"total": 10_000, "accounts": 10}
    # Every completed transfer applied exactly once, no refused one applied at all.
    assert balances == expected
    async with await psycopg.AsyncConnection.connect(bank.dsn) as conn:
        cur = await conn.execute(
            "SELECT count(DISTINCT key), count(*) FROM ledger_entries WHERE key LIKE 'transfer-%'"
        )
        assert await cur.fetchone() == (stats["completed"], 2 * stats["completed"])


def test_bank_runs_as_a_process(database: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.devstack.bank", "--dsn", database],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("BANK_URL=http://127.0.0.1:"), line
        url = line.removeprefix("BANK_URL=")
        assert httpx.get(f"{url}/health", timeout=5).json() == {"ok": True}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
