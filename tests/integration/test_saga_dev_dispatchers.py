"""``saga dev`` runs a dispatcher for each flow-controlled task queue: one configured
before it starts (a saga on it completes, its task having gone through the backlog),
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
from tests.integration.kafka_reading import read_topic
from tests.unit.test_dev_interrupt import processes_naming

pytestmark = pytest.mark.integration

SHARDS = 2

MODULE = """
from orchestrator import activity, workflow

TASK_QUEUE = "{queue}"


@activity.defn(name="devflow.greet")
async def greet(name: str) -> str:
    return "hello, " + name


@workflow.defn(name="devflow.hello")
async def hello(ctx: workflow.WorkflowContext, name: str) -> str:
    return await ctx.execute_activity(greet, name, fairness_key=name)
"""


@pytest.mark.timeout(300)
def test_saga_dev_dispatches_queues_configured_before_and_while_it_runs(
    kafka_config: dict[str, Any], topic_prefix: str, database: str, unique: str, tmp_path: Path
) -> None:
    queue, later = f"devflow{unique}", f"devlater{unique}"
    code = tmp_path / "code"
    code.mkdir()
    (code / f"devflow_{unique}.py").write_text(MODULE.replace("{queue}", queue))
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(AdminClient(kafka_config), layout)
    fh.configure(kafka_config, layout, FlowConfig(queue=queue, rate=50.0, burst=5))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"],
        "DATABASE_URL": database,
        "SAGA_TOPIC_PREFIX": topic_prefix,
        "SAGA_SHARDS": str(SHARDS),
        "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]),
    }
    state = tmp_path / "state"
    args = ["--sagas", f"devflow_{unique}", "--state-dir", str(state), "--http-port", "0"]
    dev = start_dev([*args, "--no-reload"], env, tmp_path / "dev.out")
    try:
        assert f"dispatch: {queue} " in dev.text()
        with Client(kafka_config, layout=layout) as client:
            handle = client.start("devflow.hello", "ada", id=f"hi-{unique}", task_queue=queue)
            assert handle.result(timeout=90) == "hello, ada", dev.text()
            [task] = read_topic(kafka_config, layout.backlog(queue), 1)  # through the backlog
            assert fh.WIRE.decode_task(task.headers() or [], task.value()).record.fairness_key \
                == "ada"  # fmt: skip

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
        assert len(processes_naming(f"dispatcher\0{queue}")) == 1
    finally:
        assert dev.stop() == 0, dev.text()
    assert "saga dev: stopped" in dev.text()
    assert "exited" not in dev.text()  # neither dispatcher died on the way
    assert processes_naming(f"dispatcher\0{queue}") == []
    assert processes_naming(f"dispatcher\0{later}") == []
