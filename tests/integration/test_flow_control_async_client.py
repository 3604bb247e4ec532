"""The asyncio client's flow-control verbs on real Kafka: configure a queue, see a
dispatcher release its backlog through ``describe_task_queue``, change and remove
the config; the blocking client reads the same."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from orchestrator.client import AsyncClient, Client
from orchestrator.flow.scheduler import FlowConfig
from orchestrator.log.topics import TopicLayout, ensure_topics
from tests.integration import flow_helpers as fh
from tests.integration.saga_process import saga_env, spawn_saga

pytestmark = pytest.mark.integration

QUEUE = "flow-async"
SHARDS = 2


@pytest.mark.timeout(120)
async def test_the_asyncio_client_configures_describes_and_removes_flow_control(
    kafka_config: dict[str, Any], topic_prefix: str, tmp_path: Path
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(AdminClient(kafka_config), layout)
    log = tmp_path / "dispatcher.log"
    dispatcher: subprocess.Popen[bytes] | None = None
    async with await AsyncClient.connect(kafka_config, layout=layout) as client:
        # no queue configured yet, not even the config topic: no flow control
        assert await client.describe_task_queue(QUEUE) == (None, None)
        await client.configure_task_queue(
            FlowConfig(queue=QUEUE, rate=100.0, burst=5, key_rate=20.0, weights={"a": 2})
        )
        config, state = await client.describe_task_queue(QUEUE)
        assert config is not None and state is None  # nothing released yet
        assert (config.rate, config.burst, config.key_rate) == (100.0, 5, 20.0)
        assert dict(config.weights) == {"a": 2}
        try:
            producer = Producer(kafka_config)
            sent = fh.send_tasks(producer, layout, QUEUE, 12, key="a")
            env = saga_env(kafka_config["bootstrap.servers"], topic_prefix, SHARDS)
            dispatcher = spawn_saga(["dispatcher", QUEUE, "--cycle-ms", "10"], env, log)
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                config, state = await client.describe_task_queue(QUEUE)
                if state is not None and state.released == len(sent):
                    break
                await asyncio.sleep(0.5)
            assert state is not None, log.read_text()
            assert state.released == len(sent) and state.released_keys == {"a": len(sent)}
            released = fh.read_released(
                kafka_config, layout.task_queue(QUEUE), len(sent), 20
            )
            assert sorted(r.ce_id for r in released) == sorted(sent)
        finally:
            if dispatcher is not None:
                dispatcher.terminate()
                dispatcher.wait(30)
        await client.configure_task_queue(FlowConfig(queue=QUEUE, rate=7.0))
        config, _ = await client.describe_task_queue(QUEUE)
        assert config is not None and config.rate == 7.0 and config.key_rate is None
        with Client(kafka_config, layout=layout) as blocking:
            assert blocking.describe_task_queue(QUEUE)[0] == config
        await client.remove_task_queue_flow_control(QUEUE)
        assert await client.describe_task_queue(QUEUE) == (None, None)
        with Client(kafka_config, layout=layout) as blocking:
            assert blocking.describe_task_queue(QUEUE) == (None, None)
