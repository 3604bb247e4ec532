"""Retry-forward: the first step off a queue. One flaky downstream HTTP call, as a saga.

A queue consumer that calls a downstream API and re-queues on failure is replaced by
a saga with a single activity retried for up to five days::

    forward(request) ──► call_downstream: 1 s, 2 s, 4 s ... capped at 1 h, for 5 days
                            └─ success: the saga completes with the response
                            └─ 4xx or 5 days of failures: the saga fails (visible,
                               with the last error), nothing left in any queue

Every attempt sends the same ``Idempotency-Key`` header: the request's own key when
the legacy message carried one (so calls made before and after the migration
deduplicate at the downstream), else the activity's key
``<workflow_id>/<run_id>/<activity_seq>``. There is nothing to compensate: a single
call either happened (once) or the saga failed.

Worker configuration: ``RETRY_FORWARD_BASE_URL`` (the downstream), optionally
``RETRY_FORWARD_TIMEOUT_S`` (per attempt, default 10). Tests and embedders bind
their own connector with :func:`forward_activity`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator import activity, workflow
from orchestrator.connectors.http import HttpConnector
from orchestrator.workflow import RetryPolicy, days, hours, seconds

__all__ = [
    "CALL_ACTIVITY",
    "FORWARD_RETRY",
    "TASK_QUEUE",
    "ForwardRequest",
    "ForwardResult",
    "call_downstream",
    "forward",
    "forward_activity",
]

TASK_QUEUE = "retry-forward"
CALL_ACTIVITY = "retry_forward.call"

FORWARD_RETRY = RetryPolicy(initial=seconds(1), backoff=2.0, maximum=hours(1), expire_after=days(5))
"""Retry transient failures (5xx, 408, 429, timeouts, network) for five days."""


@dataclass
class ForwardRequest:
    """The call a legacy message stood for: ``path`` is relative to the downstream URL."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    idempotency_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ForwardResult:
    """The downstream's answer to the attempt that succeeded."""

    status: int
    body: Any = None
    attempts: int = 1


async def _forward(connector: HttpConnector, req: ForwardRequest) -> ForwardResult:
    response = await connector.request(
        req.method,
        req.path,
        json=req.body,
        headers=req.headers,
        idempotency_key=req.idempotency_key,  # None: the activity's own key
    )
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return ForwardResult(response.status_code, body, activity.info().attempt)


def forward_activity(
    connector: HttpConnector,
) -> Callable[[ForwardRequest], Awaitable[ForwardResult]]:
    """The ``retry_forward.call`` activity bound to ``connector`` (register it on a worker)."""

    @activity.defn(name=CALL_ACTIVITY)
    async def call(req: ForwardRequest) -> ForwardResult:
        """One attempt of the downstream call."""
        return await _forward(connector, req)

    return call


_connectors: dict[asyncio.AbstractEventLoop, HttpConnector] = {}


@activity.defn(name=CALL_ACTIVITY)
async def call_downstream(req: ForwardRequest) -> ForwardResult:
    """One attempt of the downstream call, to ``RETRY_FORWARD_BASE_URL``."""
    loop = asyncio.get_running_loop()  # an httpx client belongs to the loop that opened it
    if loop not in _connectors:
        timeout = float(os.environ.get("RETRY_FORWARD_TIMEOUT_S", "10"))
        _connectors[loop] = HttpConnector(os.environ["RETRY_FORWARD_BASE_URL"], timeout=timeout)
    return await _forward(_connectors[loop], req)


@workflow.defn(name="retry_forward.v1")
async def forward(ctx: workflow.WorkflowContext, req: ForwardRequest) -> ForwardResult:
    """Make the call, retrying transient failures for five days; fail on a terminal one."""
    result: ForwardResult = await ctx.execute_activity(
        CALL_ACTIVITY,
        req,
        retry=FORWARD_RETRY,
        start_to_close=seconds(60),
        result_type=ForwardResult,
    )
    return result
