"""Scenarios of the shipped sagas (``sagas/payments.py``, ``sagas/retry_forward.py``).

The same scenarios run twice: here in the in-memory :class:`WorkflowEnvironment`
(histories ``<stem>.json``), and on real Kafka with the demo bank and a real HTTP
downstream by ``python -m tests.replay.record_kafka_histories`` (histories
``kafka_<stem>.json``). Both sets are replayed against the current sagas in CI
(``test_replay_shipped_sagas.py``).

In memory the payments activities are stand-ins with the real names and the real
connector's error types (the real ones need ``BANK_URL``); retry_forward runs its
real activity body (:func:`sagas.retry_forward.forward_activity`) over an httpx
mock transport that answers as :class:`DownstreamRules` says, as the Kafka
recording's HTTP server does.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx

from orchestrator import activity
from orchestrator.connectors.http import HttpConnector
from orchestrator.engine import events as ev
from orchestrator.exceptions import ApplicationError, WorkflowFailedError
from orchestrator.testing import WorkflowEnvironment
from sagas import payments, retry_forward
from sagas.payments import TransferEvent, TransferRequest
from sagas.retry_forward import ForwardRequest

#: the workflows a replayer needs for every history of this module
WORKFLOWS: list[Any] = [payments.transfer, retry_forward.forward]

#: accounts the bank opens before the scenarios run (balance 1000 each)
ACCOUNTS = ("alice", "bob")

#: payments scenarios: stem -> (request, seconds of bank outage before it starts)
PAYMENTS: dict[str, tuple[TransferRequest, float]] = {
    # withdraw, deposit (the pivot), announce
    "payments_transfer_ok": (TransferRequest("t-ok", "alice", "bob", 100, 60.0), 0.0),
    # withdraw succeeds, the deposit to an unknown account fails terminally (404):
    # both reversals run, newest first, and the saga fails
    "payments_compensated": (TransferRequest("t-comp", "alice", "nobody", 100, 60.0), 0.0),
    # the withdrawal is refused (422, insufficient funds): its reversal voids the key
    "payments_declined": (TransferRequest("t-declined", "alice", "bob", 5000, 60.0), 0.0),
    # the bank is closed for 2 s: the withdrawal is retried until it reopens
    "payments_bank_outage": (TransferRequest("t-outage", "bob", "alice", 50, 60.0), 2.0),
}

#: retry_forward scenarios: stem -> request (the path decides the downstream's answers)
RETRY_FORWARD: dict[str, ForwardRequest] = {
    "retry_forward_ok": ForwardRequest("POST", "/ok", {"amount": 250}, "legacy-17"),
    # 503 twice, then 201: retried forward (1 s, 2 s) until it succeeds
    "retry_forward_flaky": ForwardRequest("POST", "/flaky", {"amount": 250}),
    # 400: terminal at once, the saga fails with nothing to undo
    "retry_forward_rejected": ForwardRequest("POST", "/reject", {"amount": -1}),
}

#: in memory only: 503 for six simulated days, the saga gives up after its five
RETRY_FORWARD_EXPIRED = "retry_forward_expired"
EXPIRED_REQUEST = ForwardRequest("POST", "/down", {"amount": 250})

FLAKY_FAILURES = 2


class DownstreamRules:
    """The downstream's answers, by path: ``/ok`` 201; ``/flaky`` 503 for the first
    :data:`FLAKY_FAILURES` calls, then 201; ``/reject`` 400; anything else 503."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}

    def answer(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.calls[path] = n = self.calls.get(path, 0) + 1
        if path == "/ok" or (path == "/flaky" and n > FLAKY_FAILURES):
            return 201, {"accepted": json.loads(body or b"null"), "call": n}
        if path == "/reject":
            return 400, {"error": "amount must be positive"}
        return 503, {"error": "down"}


class _StandInBank:
    """The demo bank's rules, with the real connector's error types."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.balances = dict.fromkeys(ACCOUNTS, 1000)
        self.applied: dict[str, tuple[str, int]] = {}
        self.down_until = 0.0
        self._clock = clock

    def _check_open(self) -> None:
        if self._clock() < self.down_until:
            raise ApplicationError(
                "POST /accounts -> 503 Service Unavailable: bank holiday",
                type="HttpServiceUnavailable",
                next_retry_delay=timedelta(seconds=1),
            )

    def move(self, key: str, account: str, delta: int) -> None:
        self._check_open()
        if key in self.applied:
            return
        if account not in self.balances:
            raise ApplicationError(
                f"-> 404 Not Found: no account {account}", type="HttpClientError",
                non_retryable=True,
            )
        if self.balances[account] + delta < 0:
            raise ApplicationError(
                "-> 422 Unprocessable Entity: insufficient funds", type="HttpClientError",
                non_retryable=True,
            )
        self.balances[account] += delta
        self.applied[key] = (account, delta)

    def reverse(self, key: str) -> None:
        self._check_open()
        if key in self.applied:
            account, delta = self.applied.pop(key)
            self.balances[account] -= delta

    def activities(self) -> list[Callable[..., Any]]:
        bank = self

        @activity.defn(name="payments.withdraw")
        def withdraw(req: TransferRequest) -> None:
            bank.move(f"transfer/{req.transfer_id}/withdraw", req.source, -req.amount)

        @activity.defn(name="payments.deposit")
        def deposit(req: TransferRequest) -> None:
            bank.move(f"transfer/{req.transfer_id}/deposit", req.target, req.amount)

        @activity.defn(name="payments.reverse")
        def reverse(req: TransferRequest, step: str) -> None:
            bank.reverse(f"transfer/{req.transfer_id}/{step}")

        @activity.defn(name="payments.announce")
        def announce(event: TransferEvent) -> None:
            return None

        return [withdraw, deposit, reverse, announce]


async def in_memory_scenarios() -> dict[str, list[ev.Event]]:
    """Run every scenario in the in-memory environment; each history, by file stem."""
    out: dict[str, list[ev.Event]] = {}
    clock: list[WorkflowEnvironment] = []
    bank = _StandInBank(lambda: clock[0].now().timestamp())
    rules = DownstreamRules()

    def handle(request: httpx.Request) -> httpx.Response:
        status, body = rules.answer(request.url.path, request.content)
        return httpx.Response(status, json=body)

    connector = HttpConnector("https://downstream.example",
                              transport=httpx.MockTransport(handle))
    env = WorkflowEnvironment(
        workflows=WORKFLOWS,
        activities=[*bank.activities(), retry_forward.forward_activity(connector)],
    )
    clock.append(env)

    async def run(stem: str, workflow: Any, arg: Any) -> None:
        handle_ = await env.start_workflow(workflow, arg, id=stem,
                                           task_queue=_queue(workflow))
        with contextlib.suppress(WorkflowFailedError):
            await handle_.result()
        out[stem] = handle_.history

    async with env, connector:
        for stem, (req, outage_s) in PAYMENTS.items():
            bank.down_until = env.now().timestamp() + outage_s
            await run(stem, payments.transfer, req)
        for stem, fwd in RETRY_FORWARD.items():
            await run(stem, retry_forward.forward, fwd)
        await run(RETRY_FORWARD_EXPIRED, retry_forward.forward, EXPIRED_REQUEST)
    return out


def _queue(workflow: Any) -> str:
    return payments.TASK_QUEUE if workflow is payments.transfer else retry_forward.TASK_QUEUE

