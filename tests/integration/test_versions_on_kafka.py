"""Versions side by side on Kafka, with the engine as a separate ``saga worker`` process:

- a deploy that adds version 2 of ``ver.pay`` beside version 1 (two modules, one
  type): runs started before it finish on version 1, runs started after it run
  version 2, across a kill -9 of the worker that holds both: 100 + 100 runs, as the
  issue's acceptance asks (about 13 s here; ``SAGA_VERSIONS_RUNS`` changes the count).
- a run of a version no worker holds (a deploy of version 2 alone while a version 1
  run sleeps) is parked with the reason, visible in describe, and goes on when a worker
  holding version 1 takes the shard.
- a long-lived run of version 1 that reaches its declared upgrade point
  (``ctx.upgrade_point``) after version 2 is deployed continues as new on version 2;
  its recorded answers replay on code that holds version 1 alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.client import Client
from orchestrator.engine import events as ev
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.testing import Replayer
from orchestrator.visibility.projector import Projector
from orchestrator.visibility.store import VisibilityStore
from tests.integration import version_sagas_v1
from tests.integration.saga_process import saga_env, spawn_saga

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "versions"
V1 = "tests.integration.version_sagas_v1"
V2 = "tests.integration.version_sagas_v2"
RUNS = int(os.environ.get("SAGA_VERSIONS_RUNS", "100"))


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    return layout


@pytest.fixture
def client(kafka_config: dict[str, Any], layout: TopicLayout) -> Iterator[Client]:
    with Client(kafka_config, layout=layout) as c:
        yield c


class Workers:
    """The engine worker processes of one test; each gets the same worker id, so a
    successor fences the one before it, as a redeploy does."""

    def __init__(self, bootstrap: str, prefix: str, logs: Path) -> None:
        self.bootstrap, self.prefix, self.logs = bootstrap, prefix, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, *modules: str) -> subprocess.Popen[bytes]:
        args = ["worker", *(a for m in modules for a in ("--sagas", m))]
        args += ["--worker-id", f"{self.prefix}-engine"]
        log = self.logs / f"engine-{len(self.procs) + 1}.log"
        proc = spawn_saga(args, saga_env(self.bootstrap, self.prefix, SHARDS), log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL

    def tail(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(self.logs.glob("engine-*.log")))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)


@pytest.fixture
def workers(kafka_config: dict[str, Any], layout: TopicLayout, tmp_path: Path) -> Iterator[Workers]:
    found = Workers(kafka_config["bootstrap.servers"], layout.prefix, tmp_path)
    try:
        yield found
    finally:
        found.close()


def listed_versions(database: str) -> dict[str, tuple[str, int]]:
    """workflow id -> (status, version) of the ``ver.pay`` rows the store lists."""

    async def fetch() -> dict[str, tuple[str, int]]:
        async with VisibilityStore(database) as store:
            rows, _ = await store.list_runs(workflow_type="ver.pay", limit=1000)
            return {r.workflow_id: (r.status, r.workflow_version) for r in rows}

    return asyncio.run(fetch())


def test_runs_before_a_deploy_finish_on_v1_and_runs_after_it_on_v2_across_a_kill9(
    client: Client,
    workers: Workers,
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    database: str,
) -> None:
    old = [f"old-{i}" for i in range(RUNS)]
    new = [f"new-{i}" for i in range(RUNS)]
    first = workers.spawn(V1)
    for wf_id in old:
        client.start(version_sagas_v1.pay_v1, wf_id, id=wf_id, task_queue=QUEUE,
                     wait_started=60)
    workers.stop(first)
    both = workers.spawn(V1, V2)  # the deploy: version 2 beside version 1
    for wf_id in new:
        client.start("ver.pay", wf_id, id=wf_id, task_queue=QUEUE, wait_started=60)
    described = {w: client.get_handle(w).describe(timeout=30) for w in (old[0], new[0])}
    assert (described[old[0]].workflow_version, described[new[0]].workflow_version) == (1, 2)
    workers.kill(both)  # kill -9 with every run open
    workers.spawn(V1, V2)
    for wf_id in [*old, *new]:
        client.get_handle(wf_id).signal("go")
    try:
        results = {w: client.get_handle(w).result(timeout=60) for w in [*old, *new]}
    except Exception:
        print(workers.tail())
        raise
    assert results == {
        **{w: f"v1 {w}" for w in old},
        **{w: f"v2 {w}" for w in new},
    }
    versions = {w: client.get_handle(w).describe(timeout=30).workflow_version for w in old + new}
    assert versions == {**dict.fromkeys(old, 1), **dict.fromkeys(new, 2)}
    # and what `saga list` / GET /v1/workflows read: the projection of the same log
    expected = {**{w: ("COMPLETED", 1) for w in old}, **{w: ("COMPLETED", 2) for w in new}}
    with Projector(database, kafka_config, layout):
        deadline = time.monotonic() + 30
        while (found := listed_versions(database)) != expected:
            assert time.monotonic() < deadline, found
            time.sleep(0.3)


def test_a_run_of_a_version_no_worker_holds_is_parked_until_one_does(
    client: Client, workers: Workers
) -> None:
    first = workers.spawn(V1)
    client.start(version_sagas_v1.nap_v1, 3.0, id="nap-old", task_queue=QUEUE, wait_started=60)
    workers.stop(first)
    only_v2 = workers.spawn(V2)  # a deploy that dropped version 1 too early
    fresh = client.start("ver.nap", 0.0, id="nap-new", task_queue=QUEUE, wait_started=60)
    assert fresh.result(timeout=30) == "v2 woke at once"
    handle = client.get_handle("nap-old")
    deadline = time.monotonic() + 30
    while (parked := handle.describe(timeout=30).parked) is None:
        assert time.monotonic() < deadline, workers.tail()
        time.sleep(0.3)
    assert "waiting for version 1 of workflow type 'ver.nap'" in parked
    described = handle.describe(timeout=30)
    assert (described.status.name, described.workflow_version) == ("RUNNING", 1)
    workers.stop(only_v2)
    workers.spawn(V1, V2)  # version 1 is back: the run goes on where it was
    assert handle.result(timeout=60) == "v1 woke"
    assert handle.describe(timeout=30).parked is None



def test_a_long_lived_run_moves_to_version_2_at_its_upgrade_point(
    client: Client, workers: Workers
) -> None:
    first = workers.spawn(V1)
    handle = client.start(version_sagas_v1.TickV1, 0, id="tick", task_queue=QUEUE,
                          wait_started=60)
    handle.signal("tick")
    deadline = time.monotonic() + 30
    while handle.query("counted", timeout=30) != 1:  # one turn on version 1 alone
        assert time.monotonic() < deadline, workers.tail()
        time.sleep(0.2)
    first_run = handle.describe(timeout=30).run_id
    workers.stop(first)
    workers.spawn(V1, V2)  # the deploy of version 2
    handle.signal("tick")
    try:
        assert client.get_handle("tick").result(timeout=60) == "v2 took over at 2 on version 2"
    except Exception:
        print(workers.tail())
        raise
    assert client.get_handle("tick").describe(timeout=30).workflow_version == 2
    events = client.fetch_history("tick", first_run).events
    answers = [e.marker_id for e in events
               if isinstance(e, ev.MarkerRecorded) and e.marker_name == ev.MARKER_UPGRADE]
    assert answers == ["none", "v2"]
    assert isinstance(events[-1], ev.WorkflowContinuedAsNew)
    # the recorded answers replay on a worker without version 2 (a rollback)
    Replayer(workflows=[version_sagas_v1.TickV1]).replay(events)
