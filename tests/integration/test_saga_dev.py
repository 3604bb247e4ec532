"""``saga dev`` as a new user runs it: its own Kafka and PostgreSQL (no address in the
environment), a run started over HTTP, new code picked up when the module's file
changes (new runs use it; a running run it cannot replay parks, and the list of parked
runs shows why), a clean stop on SIGTERM (nothing left listening), and every run still
there after a restart on the same state folder."""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.devstack.processes import wait_until
from tests.integration.dev_process import DevServer, start_dev
from tests.integration.http_helpers import bearer

pytestmark = pytest.mark.integration

MODULE = """
from orchestrator import activity, workflow

TASK_QUEUE = "devq"


@activity.defn(name="devmod.greet")
async def greet(name: str) -> str:
    return "{greeting}, " + name


@workflow.defn(name="devmod.hello")
async def hello(ctx: workflow.WorkflowContext, name: str) -> str:
    return await ctx.execute_activity(greet, name)


@workflow.defn(name="devmod.waiter")
class Waiter:
    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext, name: str) -> str:
        {waiter_first}
        await ctx.wait_condition(lambda: self.done)
        return "done"

    @workflow.signal(name="finish")
    def finish(self) -> None:
        self.done = True
"""

#: the waiter's first step in each version: v2 sleeps first, which a run started under
#: v1 cannot replay
FIRST = {
    "hello": "await ctx.execute_activity(greet, name)",
    "bonjour": "await ctx.sleep(0.01)",
}


def write_module(folder: Path, greeting: str) -> None:
    code = MODULE.replace("{greeting}", greeting).replace("{waiter_first}", FIRST[greeting])
    (folder / "devmod.py").write_text(code)


def run_hello(dev: DevServer, workflow_id: str) -> Any:
    body = {"workflow": "devmod.hello", "id": workflow_id, "task_queue": "devq", "input": "ada"}
    with httpx.Client(base_url=dev.api_url, headers=bearer(dev.token), timeout=70) as http:
        r = http.post("/v1/workflows", json=body)
        assert r.status_code == 201, r.text
        r = http.get(f"/v1/workflows/{workflow_id}/result", params={"wait": 60})
        assert r.json()["done"], r.text
        return r.json()


def listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """The state folder; as root, PostgreSQL's data lives outside it (see
    persistent.py), so that is removed here, whatever the test's outcome."""
    folder = tmp_path / "state"
    yield folder
    shutil.rmtree((folder / "postgres").resolve(), ignore_errors=True)


@pytest.mark.timeout(480)  # starts a whole stack, twice, on a shared 2-core machine
def test_saga_dev_keeps_runs_reloads_code_and_stops_cleanly(tmp_path: Path, state: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    write_module(code, "hello")
    env = {
        k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")])
    env["SAGA_SHARDS"] = "2"
    args = ["--sagas", "devmod", "--state-dir", str(state), "--http-port", "0"]

    dev = start_dev(args, env, tmp_path / "dev-1.out")
    try:
        assert set(dev.exports) == {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}
        assert run_hello(dev, "greet-1")["result"] == "hello, ada"
        with httpx.Client(base_url=dev.api_url, headers=bearer(dev.token), timeout=30) as http:
            body = {
                "workflow": "devmod.waiter",
                "id": "wait-1",
                "task_queue": "devq",
                "input": "ada",
            }
            assert http.post("/v1/workflows", json=body).status_code == 201
            wait_until(
                lambda: '"ActivityCompleted"' in http.get("/v1/workflows/wait-1/history").text,
                60,
                "the waiter's first step",
            )

        # new code: the worker restarts on it, and new runs use it
        write_module(code, "bonjour")
        wait_until(lambda: "restarting the worker" in dev.text(), 60, "the reload")
        assert run_hello(dev, "greet-2")["result"] == "bonjour, ada"

        # the running waiter cannot replay on the new code: it parks, visibly
        with httpx.Client(base_url=dev.api_url, headers=bearer(dev.token), timeout=30) as http:
            r = http.post("/v1/workflows/wait-1/signals/finish", json={"wait": 0})
            assert r.status_code == 202, r.text

            def parked() -> list[dict[str, Any]]:
                r = http.get("/v1/workflows", params={"parked": "true"})
                return list(r.json()["workflows"]) if r.is_success else []

            wait_until(lambda: [w["workflow_id"] for w in parked()] == ["wait-1"], 60, "parked")
            # the reason names the diverging command
            assert (
                "expected ActivityScheduled(devmod.greet), got TimerStarted"
                in (parked()[0]["parked"])
            )
    finally:
        assert dev.stop() == 0, dev.text()
    assert "saga dev: stopped" in dev.text()
    kafka = dev.exports["KAFKA_BOOTSTRAP_SERVERS"]
    postgres = re.sub(r"^postgresql://[^@]*@([^/]+)/.*$", r"\1", dev.exports["DATABASE_URL"])
    for address in (kafka, postgres, dev.api_url.removeprefix("http://")):
        assert not listening(address), f"{address} still listening after saga dev stopped"

    # the same folder again: same addresses, and both runs are still there
    again = start_dev(args, env, tmp_path / "dev-2.out")
    try:
        assert again.exports == dev.exports
        assert again.api_url == dev.api_url
        with httpx.Client(base_url=again.api_url, headers=bearer(again.token), timeout=30) as http:
            described = http.get("/v1/workflows/greet-1").json()
            assert described["workflow"]["status"] == "COMPLETED"

            def listed() -> set[str]:
                r = http.get("/v1/workflows")
                return {w["workflow_id"] for w in r.json()["workflows"]} if r.is_success else set()

            wait_until(lambda: listed() >= {"greet-1", "greet-2"}, 60, "the runs in the list")
            r = http.get("/v1/workflows/greet-2/result")
            assert r.json()["result"] == "bonjour, ada"
    finally:
        assert again.stop() == 0, again.text()
