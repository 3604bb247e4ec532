"""Signed task tokens on Kafka: engine workers with a task-token key sign every attempt
they dispatch. The activity worker's own outcomes (a plain step) carry the signature
back, a signed token completes its attempt, and a token edited to name another
attempt (here the running retry, which an unsigned token could reach) is refused with
``TaskTokenRejected`` and changes nothing. ``saga worker`` takes its key from
``SAGA_TASK_TOKEN_KEY``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.client import Client
from orchestrator.devstack import providers
from orchestrator.engine import events as ev
from orchestrator.exceptions import ApplicationError
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.task_token import TaskToken, signature_matches
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.saga_process import saga_env, spawn_saga
from tests.integration.test_async_completion_on_kafka import (
    QUEUE,
    Ask,
    ask_mainframe,
    booking,
    release,
    reserve,
    token_for,
)

pytestmark = pytest.mark.integration
KEY = b"test-key-0123456789-0123456789-0123456789"


@dataclass(frozen=True)
class Signed:
    client: Client


@pytest.fixture(scope="module")
def signed(kafka: providers.KafkaHandle) -> Iterator[Signed]:
    config: dict[str, Any] = {"bootstrap.servers": kafka.bootstrap_servers}
    prefix = f"t{uuid.uuid4().hex[:10]}"
    layout = TopicLayout(prefix=prefix, shards=2)
    ensure_topics(AdminClient(config), layout, [QUEUE])
    options = ProcessorOptions(worker_id=f"{prefix}-engine", transaction_timeout_ms=5000)
    with (
        EngineWorker(config, layout, [booking], options=options, task_token_key=KEY),
        ActivityWorker(config, QUEUE, [ask_mainframe, reserve, release], layout=layout),
        Client(config, layout=layout) as client,
    ):
        yield Signed(client)


def test_a_signed_token_completes_and_an_edited_one_is_refused(signed: Signed) -> None:
    client = signed.client
    workflow_id = f"order-signed-{uuid.uuid4().hex[:6]}"
    client.start(booking, Ask("s1", start_to_close_s=1.0), id=workflow_id, task_queue=QUEUE)
    first = TaskToken.decode(token_for(workflow_id, 1))
    assert first.signature and signature_matches(KEY, first)
    second = TaskToken.decode(token_for(workflow_id, 2))  # attempt 1 timed out after 1 s
    edited = TaskToken(first.workflow_id, first.run_id, first.activity_seq, 2, first.signature)
    with pytest.raises(ApplicationError, match="does not match its attempt") as refused:
        client.complete_activity(edited.encode(), "from an edited token")
    assert refused.value.type == "TaskTokenRejected"
    client.complete_activity(second.encode(), "signed answer")
    assert client.get_handle(workflow_id).result(timeout=30) == "signed answer"
    events = client.fetch_history(workflow_id, timeout=20).events
    completed = [e for e in events if isinstance(e, ev.ActivityCompleted)]
    assert [e.attempt for e in completed] == [1, 2], "the worker's reserve, then attempt 2"


def test_saga_worker_signs_with_the_key_from_its_environment(
    kafka_config: dict[str, Any], topic_prefix: str, tmp_path: Path
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=2)
    ensure_topics(AdminClient(kafka_config), layout, ["signed"])
    env = saga_env(
        kafka_config["bootstrap.servers"], topic_prefix, 2, SAGA_TASK_TOKEN_KEY=KEY.decode()
    )
    args = ["worker", "--sagas", "tests.integration.signed_sagas", "--task-queue", "signed"]
    log_path = tmp_path / "worker.log"
    proc = spawn_saga([*args, "--worker-id", f"{topic_prefix}-signed"], env, log_path)
    token_file = tmp_path / "token.txt"
    try:
        with Client(kafka_config, layout=layout) as client:
            client.start("signed.order", str(token_file), id="signed-1", task_queue="signed")
            deadline = time.monotonic() + 60
            while not token_file.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert token_file.exists(), log_path.read_text()[-2000:]
            token = TaskToken.decode(token_file.read_text(encoding="utf-8"))
            assert token.signature and signature_matches(KEY, token), "signed with the env key"
            unsigned = TaskToken(token.workflow_id, token.run_id, token.activity_seq, 1)
            with pytest.raises(ApplicationError, match="is not signed"):
                client.complete_activity(unsigned.encode(), "unsigned")
            client.complete_activity(token.encode(), "signed by the worker's key")
            result = client.get_handle("signed-1").result(timeout=30)
            assert result == "signed by the worker's key"
    finally:
        proc.terminate()
        proc.wait(30)
