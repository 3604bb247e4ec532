"""``saga dev`` runs a dispatcher for each flow-controlled task queue: one configured
before it starts (a saga on it completes, its tasks having gone through the backlog),
one configured while it runs (its backlog is released), and stops them with it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from orchestrator.client import Client
from orchestrator.devstack.processes import wait_until
from orchestrator.flow.scheduler import FlowConfig
from orchestrator.log.topics import TopicLayout, ensure_topics
from tests.integration import flow_helpers as fh
from tests.integration.dev_process import start_dev
from tests.integration.flow_sagas import QUEUE as FLOWQ
from tests.integration.flow_sagas import tenant_step
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration

SHARDS = 2


def dispatcher_children(parent: int) -> dict[int, str]:
    """The ``saga dispatcher`` processes ``parent`` started: pid -> queue."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_text().split("\0")
        except OSError:
            continue  # exited meanwhile
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and "dispatcher" in args:
            found[int(entry.name)] = args[args.index("dispatcher") + 1]
    return found


@pytest.mark.timeout(300)
def test_saga_dev_dispatches_queues_configured_before_and_while_it_runs(
    kafka_config: dict[str, Any], topic_prefix: str, database: str, unique: str, tmp_path: Path
) -> None:
    later = f"later{unique}"
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(AdminClient(kafka_config), layout)
    fh.configure(kafka_config, layout, FlowConfig(queue=FLOWQ, rate=50.0, burst=5))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"],
        "DATABASE_URL": database,
        "SAGA_TOPIC_PREFIX": topic_prefix,
        "SAGA_SHARDS": str(SHARDS),
    }
    state = tmp_path / "state"
    args = ["--sagas", "tests.integration.flow_sagas", "--task-queue", FLOWQ]
    args += ["--state-dir", str(state), "--http-port", "0", "--no-reload"]
    dev = start_dev(args, env, tmp_path / "dev.out")
    children: dict[int, str] = {}
    try:
        assert f"dispatch: {FLOWQ} " in dev.text()
        with Client(kafka_config, layout=layout) as client:
            handle = client.start(tenant_step, "t1", id=f"dev-{unique}", task_queue=FLOWQ)
            assert handle.result(timeout=90) == ["t1@1", "again@1"], dev.text()
            backlog = [  # the tasks went through the backlog, so through the dispatcher
                fh.WIRE.decode_task(m.headers() or [], m.value()).record
                for m in read_topic(kafka_config, layout.backlog(FLOWQ), 1)
            ]
            assert [(t.priority, t.fairness_key) for t in backlog] == [(7, "t1"), (0, "t1")]

            # a queue put under flow control while saga dev runs gets a dispatcher too
            client.configure_task_queue(FlowConfig(queue=later, window=0))
        wait_until(
            lambda: f"{later} is under flow control; started its dispatcher" in dev.text(),
            30,
            "the second dispatcher",
        )
        sent = fh.send_tasks(Producer(kafka_config), layout, later, 5)
        released = fh.read_released(kafka_config, layout.task_queue(later), len(sent), 60)
        assert sorted(r.ce_id for r in released) == sorted(sent), (
            (state / "logs" / f"dispatcher-{later}.log").read_text()
        )
        children = dispatcher_children(dev.proc.pid)
        assert sorted(children.values()) == sorted([FLOWQ, later])
    finally:
        assert dev.stop() == 0, dev.text()
    assert "saga dev: stopped" in dev.text()
    assert "exited" not in dev.text()  # neither dispatcher died on the way
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
