"""retry_forward: a downstream down for 3 simulated days is waited out; 6 days fail cleanly.

The downstream is an in-process httpx transport answering 503 until the outage ends;
time is the WorkflowEnvironment's simulated clock, so five days take well under 1 s.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from orchestrator.connectors.http import IDEMPOTENCY_HEADER, HttpConnector
from orchestrator.exceptions import WorkflowFailedError
from orchestrator.testing import WorkflowEnvironment
from orchestrator.workflow import WorkflowStatus
from sagas.retry_forward import (
    FORWARD_RETRY,
    ForwardRequest,
    ForwardResult,
    forward,
    forward_activity,
)


class Downstream:
    """A flaky payments API: 503 during the outage, then 201 with what it received."""

    def __init__(self, outage: timedelta) -> None:
        self.outage = outage
        self.clock: WorkflowEnvironment | None = None
        self.until = datetime.max.replace(tzinfo=UTC)  # set when the clock is known
        self.keys: list[str | None] = []
        self.calls = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.keys.append(request.headers.get(IDEMPOTENCY_HEADER))
        assert self.clock is not None
        if self.clock.now() < self.until:
            return httpx.Response(503, text="bank holiday")
        return httpx.Response(201, json={"accepted": json.loads(request.content)})


async def run(
    outage: timedelta, req: ForwardRequest
) -> tuple[Downstream, object, timedelta]:
    """(downstream, result or error, simulated time the saga took; days of it pass in
    a moment of wall time, or the suite's timeout would stop the test)."""
    downstream = Downstream(outage)
    connector = HttpConnector(
        "https://payments.example", transport=httpx.MockTransport(downstream.handle)
    )
    env = WorkflowEnvironment(workflows=[forward], activities=[forward_activity(connector)])
    downstream.clock, downstream.until = env, env.now() + outage
    sim_began = env.now()
    async with env, connector:
        handle = await env.start_workflow(forward, req, id="pay-17")
        try:
            result: object = await handle.result(result_type=ForwardResult)
        except WorkflowFailedError as exc:
            result = exc
        assert handle.status in (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED)
    return downstream, result, env.now() - sim_began


async def test_three_day_outage_is_waited_out() -> None:
    req = ForwardRequest("POST", "/payments", {"amount": 250}, idempotency_key="legacy-msg-17")
    downstream, result, took = await run(timedelta(days=3), req)
    assert isinstance(result, ForwardResult), result
    assert result.status == 201 and result.body == {"accepted": {"amount": 250}}
    assert result.attempts == downstream.calls > 70  # 1 s doubling to 1 h, for 3 days
    assert set(downstream.keys) == {"legacy-msg-17"}  # the same key on every attempt
    assert timedelta(days=3) <= took <= timedelta(days=3, hours=1), took


async def test_six_day_outage_fails_the_saga_after_five_days() -> None:
    req = ForwardRequest("POST", "/payments", {"amount": 250})
    downstream, result, took = await run(timedelta(days=6), req)
    assert isinstance(result, WorkflowFailedError), result
    assert result.status == "FAILED"
    assert timedelta(days=4, hours=22) <= took <= timedelta(days=5), took  # gave up at expiry
    assert "HttpServiceUnavailable" in str(result) or "503" in str(result.__cause__), result
    assert downstream.calls > 100
    # without a legacy key, every attempt carries the activity's stable key
    keys = set(downstream.keys)
    assert len(keys) == 1 and next(iter(keys), "").startswith("pay-17/")


def test_policy_is_five_days() -> None:
    assert FORWARD_RETRY.expire_after == timedelta(days=5)
    assert FORWARD_RETRY.maximum == timedelta(hours=1)


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_terminal_answer_fails_at_once(status: int) -> None:
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, json={"error": "no"})

    connector = HttpConnector("https://payments.example", transport=httpx.MockTransport(handle))
    env = WorkflowEnvironment(workflows=[forward], activities=[forward_activity(connector)])
    async with env, connector:
        handle_ = await env.start_workflow(forward, ForwardRequest("POST", "/payments", {}))
        with pytest.raises(WorkflowFailedError):
            await handle_.result()
    assert len(calls) == 1
