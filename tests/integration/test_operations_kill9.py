"""kill -9 of either team's worker while an operation runs (issue 15): team A's saga
waits for ``billing/charge``, which team B's saga implements. A's worker, then B's,
is SIGKILLed and started again under its id; then B's run is signalled. There is one
handler run and one charge run in B, one callback delivered, and A completes once
with B's result. The workers are ``saga worker`` processes reading
``SAGA_OPERATIONS_CONFIG``; each team's ``saga http`` runs in the test."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from confluent_kafka.admin import AdminClient

from orchestrator.client import AsyncClient
from orchestrator.devstack import providers
from orchestrator.engine import events as ev
from orchestrator.http import ApiOptions, build_app
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.operations import load_config
from orchestrator.operations.records import operation_id_for
from orchestrator.status import WorkflowStatus
from tests.integration.http_helpers import ADMIN_TOKEN, TOKENS, wait_healthy
from tests.integration.saga_process import saga_env, spawn_saga

pytestmark = pytest.mark.integration
SHARDS = 2
SECRET = "billing-callback-secret-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Team:
    name: str
    queue: str
    layout: TopicLayout
    env: dict[str, str]
    port: int
    config_file: Path
    logs: Path
    starts: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.starts += 1
        args = ["worker", "--sagas", "tests.integration.operation_sagas",
                "--task-queue", self.queue, "--no-batch",
                "--worker-id", f"{self.layout.prefix}-{self.name}"]
        self.proc = spawn_saga(args, self.env, self.log())

    def log(self) -> Path:
        return self.logs / f"{self.name}-{self.starts}.log"

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while "ready" not in self.log().read_text().splitlines():
            assert time.monotonic() < deadline, f"{self.name} not ready: {self.log().read_text()}"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def teams(kafka: providers.KafkaHandle, tmp_path: Path) -> Iterator[tuple[Team, Team]]:
    config = {"bootstrap.servers": kafka.bootstrap_servers}
    port_a, port_b = _free_port(), _free_port()
    callback = f"http://127.0.0.1:{port_a}/v1/operation-callbacks"
    file_a, file_b = tmp_path / "a.json", tmp_path / "b.json"
    file_a.write_text(json.dumps({
        "callback_url": callback,
        "endpoints": {"payments": {"url": f"http://127.0.0.1:{port_b}", "service": "billing",
                                   "token": ADMIN_TOKEN, "secret": SECRET}},
    }))
    file_b.write_text(json.dumps({
        "handlers": {"billing/charge": {"workflow": "ops.charge", "task_queue": "billing"}},
        "callers": [{"url_prefix": callback, "secret": SECRET}],
    }))
    run = uuid.uuid4().hex[:8]
    made = []
    for name, queue, port, file in (("a", "shop", port_a, file_a), ("b", "billing", port_b,
                                                                     file_b)):
        layout = TopicLayout(prefix=f"k{name}{run}", shards=SHARDS)
        ensure_topics(AdminClient(config), layout, [queue])
        env = saga_env(kafka.bootstrap_servers, layout.prefix, SHARDS,
                       SAGA_OPERATIONS_CONFIG=str(file))
        made.append(Team(name, queue, layout, env, port, file, tmp_path))
    a, b = made
    try:
        for team in (a, b):
            team.start()
        for team in (a, b):
            team.wait_ready()
        yield a, b
    finally:
        for team in (a, b):
            team.stop()


@asynccontextmanager
async def serving(team: Team) -> AsyncIterator[AsyncClient]:
    config = {"bootstrap.servers": team.env["KAFKA_BOOTSTRAP_SERVERS"]}
    options = ApiOptions(kafka_config=config, topic_prefix=team.layout.prefix, tokens=TOKENS,
                         operations=load_config(team.config_file))
    runner = web.AppRunner(build_app(options), shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", team.port).start()
        await wait_healthy(f"http://127.0.0.1:{team.port}")
        async with await AsyncClient.connect(config, layout=team.layout) as client:
            yield client
    finally:
        await runner.cleanup()


async def _history(client: AsyncClient, workflow_id: str) -> list[Any]:
    return list((await client.fetch_history(workflow_id)).events)


async def _operation_started(a: AsyncClient, order_id: str) -> str:
    """The request id of the order's operation, once its start's answer is recorded."""
    for _ in range(600):
        events = await _history(a, order_id)
        starts = {e.activity_seq: e for e in events if isinstance(e, ev.ActivityScheduled)
                  and e.activity_type == "saga.operation.start"}
        done = {e.activity_seq for e in events if isinstance(e, ev.ActivityCompleted)}
        for seq, scheduled in starts.items():
            if seq in done:
                request: dict[str, Any] = json.loads(scheduled.input[0].data)
                return str(request["request_id"])
        await asyncio.sleep(0.1)
    raise TimeoutError("the operation did not start")


async def test_kill_9_of_either_worker_while_the_operation_runs(
    teams: tuple[Team, Team],
) -> None:
    team_a, team_b = teams
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(serving(team_a))
        b = await stack.enter_async_context(serving(team_b))
        order_id = f"order-{uuid.uuid4().hex[:6]}"
        await a.start("ops.order", order_id, id=order_id, task_queue="shop")
        request_id = await _operation_started(a, order_id)
        operation_id = operation_id_for("billing", "charge", request_id)
        handler_run = (await b.get_handle(operation_id).describe()).run_id

        for team in (team_a, team_b):
            team.kill()
            team.start()
            await asyncio.to_thread(team.wait_ready)

        charge_id = f"{operation_id}-run"
        for _ in range(300):  # the charge run sleeps 1 s, then waits for the signal
            try:
                await b.get_handle(charge_id).signal("decide", "alice", wait=10)
                break
            except Exception:  # not started yet, or its shard is moving
                await asyncio.sleep(0.2)
        result = await a.get_handle(order_id).result(timeout=120)
        assert result == {"receipt": f"r-{order_id}", "approver": "alice"}

        for _ in range(300):  # the handler run records the callback's answer after A saw it
            handler = await b.get_handle(operation_id).describe()
            if not handler.is_open:
                break
            await asyncio.sleep(0.1)
        assert (handler.run_id, handler.status) == (handler_run, WorkflowStatus.COMPLETED)
        handler_events = await _history(b, operation_id)
        assert sum(isinstance(e, ev.ChildWorkflowStarted) for e in handler_events) == 1
        callbacks = [e for e in handler_events if isinstance(e, ev.ActivityCompleted)]
        assert len(callbacks) == 1, "one callback delivered"
        order_events = await _history(a, order_id)
        assert sum(isinstance(e, ev.WorkflowCompleted) for e in order_events) == 1
        assert sum(isinstance(e, ev.SignalReceived) for e in order_events) == 1
