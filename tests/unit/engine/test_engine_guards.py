"""Non-deterministic calls inside workflow code are caught, loudly."""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from orchestrator import workflow
from orchestrator.engine.guards import NondeterminismWarning
from orchestrator.exceptions import NonDeterminismError, NondeterministicCallError
from orchestrator.testing import WorkflowEnvironment
from orchestrator.workflow import WorkflowContext


def make(body: Callable[[WorkflowContext], Awaitable[Any]]) -> Any:
    @workflow.defn(name="guarded")
    async def wf(ctx: WorkflowContext) -> Any:
        return await body(ctx)

    return wf


async def _time(ctx: WorkflowContext) -> float:
    return time.time()


async def _random(ctx: WorkflowContext) -> float:
    return random.random()


async def _uuid(ctx: WorkflowContext) -> str:
    return str(uuid.uuid4())


async def _open(ctx: WorkflowContext) -> str:
    with open("/etc/hostname") as f:  # noqa: ASYNC230
        return f.read()


async def _socket(ctx: WorkflowContext) -> None:
    socket.create_connection(("127.0.0.1", 9))


async def _blocking_sleep(ctx: WorkflowContext) -> None:
    time.sleep(0.01)  # noqa: ASYNC251


@pytest.mark.parametrize(
    ("body", "name"),
    [
        (_time, "time.time"),
        (_random, "random.random"),
        (_uuid, "uuid.uuid4"),
        (_open, "open"),
        (_socket, "socket.create_connection"),
        (_blocking_sleep, "time.sleep"),
    ],
)
async def test_non_deterministic_call_in_workflow_raises(
    body: Callable[[WorkflowContext], Awaitable[Any]], name: str
) -> None:
    wf = make(body)
    env = WorkflowEnvironment(workflows=[wf])
    with pytest.raises(NondeterministicCallError, match=rf"{name}\(\) called inside workflow"):
        await env.execute_workflow(wf)


async def test_swallowed_violation_still_fails_the_activation() -> None:
    async def sneaky(ctx: WorkflowContext) -> str:
        with contextlib.suppress(BaseException):
            time.time()
        return "ok"

    wf = make(sneaky)
    env = WorkflowEnvironment(workflows=[wf])
    with pytest.raises(NonDeterminismError, match=r"time\.time"):
        await env.execute_workflow(wf)


async def test_warn_mode_emits_a_warning() -> None:
    wf = make(_random)
    env = WorkflowEnvironment(workflows=[wf], guard="warn")
    with (
        pytest.warns(NondeterminismWarning, match="random.random"),
        pytest.raises(NondeterministicCallError),
    ):
        await env.execute_workflow(wf)


async def test_ctx_time_random_uuid_and_logging_are_allowed_and_deterministic() -> None:
    seen: list[Any] = []

    async def fine(ctx: WorkflowContext) -> list[str]:
        logging.getLogger("wf").info("logging is fine: it timestamps outside the code")
        values = [ctx.now().isoformat(), str(ctx.random()), str(ctx.uuid4())]
        seen.append(values)
        return values

    wf = make(fine)
    env = WorkflowEnvironment(workflows=[wf])
    handle = await env.start_workflow(wf, id="same")
    result = await handle.result()
    assert result[0] == "2025-01-01T00:00:00+00:00"
    # check_replay re-ran the code: the same values came out the second time
    assert len(seen) == 2 and seen[0] == seen[1]


def test_guards_are_removed_outside_workflow_code() -> None:
    before = time.time
    assert time.time() > 0 and random.random() < 1.0
    assert time.time is before
