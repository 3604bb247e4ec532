"""Security on real brokers: SASL_SSL + SCRAM-SHA-512, and payload encryption at rest.

The SCRAM tests run against their own one-node broker (``SecureKafkaCluster``:
a throwaway CA, a PEM keystore, credentials written at format time, no plaintext
client port), started once for this module and stopped at its end. Every
orchestrator component is configured only through ``Settings.from_env``.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from orchestrator import activity, workflow
from orchestrator.client import Client
from orchestrator.config import Settings
from orchestrator.converter import DataConverter
from orchestrator.devstack.kafka_secure import SecureKafkaCluster
from orchestrator.engine import events as ev
from orchestrator.exceptions import PayloadConversionError, WorkflowFailedError
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde.encryption import AesGcmCodec
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from orchestrator.worker.shard.records import headers_of
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration

USER = "alice"
PASSWORD = "Pw" + secrets.token_hex(12)  # letters and digits: the format tool has no quoting


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[SecureKafkaCluster]:
    cluster = SecureKafkaCluster({USER: PASSWORD})
    with cluster:
        yield cluster


def _env(cluster: SecureKafkaCluster, prefix: str, password: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap_servers,
        "SAGA_TOPIC_PREFIX": prefix,
        "SAGA_SHARDS": "2",
        "SAGA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SAGA_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "SAGA_KAFKA_SASL_USERNAME": USER,
        "SAGA_KAFKA_SASL_PASSWORD": password,
        "SAGA_KAFKA_SSL_CA_LOCATION": cluster.ca_location,
    }


@activity.defn(name="sec.stamp")
async def stamp(text: str) -> str:
    return f"stamped:{text}"


@workflow.defn(name="sec.flow")
async def secure_flow(ctx: workflow.WorkflowContext, text: str) -> str:
    await ctx.sleep(timedelta(milliseconds=100))
    stamped: str = await ctx.execute_activity(stamp, text, start_to_close=timedelta(seconds=20))
    return stamped


def test_a_saga_runs_over_sasl_ssl_with_scram(
    secure_kafka: SecureKafkaCluster,
    topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    for name, value in _env(secure_kafka, topic_prefix, PASSWORD).items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    settings = Settings.from_env()
    logging.getLogger(__name__).info("settings: %r", settings)  # what an operator would log
    layout = TopicLayout(prefix=settings.topic_prefix, shards=settings.shards)
    ensure_topics(AdminClient(settings.kafka_config()), layout, ["q"])
    options = ProcessorOptions(worker_id=f"{topic_prefix}-w", transaction_timeout_ms=5000)
    with (
        EngineWorker(settings.kafka_config(), layout, [secure_flow], options=options) as engine,
        ActivityWorker(settings, "q", [stamp]),
        Client(settings) as client,
    ):
        handle = client.start(secure_flow, "hello", id="sec-1", task_queue="q")
        assert handle.result(timeout=60, result_type=str) == "stamped:hello"
        assert engine.error is None
    out, err = capfd.readouterr()
    assert "***" in caplog.text, "the settings line was logged, masked"
    for text in (caplog.text, out, err):
        assert PASSWORD not in text
    broker_log = secure_kafka.nodes[0].log_path.read_text(errors="replace")
    assert "Kafka Server started" in broker_log
    assert PASSWORD not in broker_log


def test_a_wrong_password_is_refused(
    secure_kafka: SecureKafkaCluster,
    topic_prefix: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    wrong = "Wrong" + secrets.token_hex(8)
    settings = Settings.from_env(_env(secure_kafka, topic_prefix, wrong))
    caplog.set_level(logging.DEBUG)
    errors: list[KafkaError] = []
    probe = Producer(settings.kafka_config(error_cb=errors.append))
    deadline = time.monotonic() + 30
    while not any(e.code() == KafkaError._AUTHENTICATION for e in errors):
        assert time.monotonic() < deadline, f"no authentication error, only {errors}"
        probe.poll(0.2)
    auth = next(e for e in errors if e.code() == KafkaError._AUTHENTICATION)
    assert "SCRAM-SHA-512" in auth.str() or "uthentication" in auth.str()
    began = time.monotonic()
    with pytest.raises((KafkaException, OSError)):
        Client(settings)  # refused before it can send anything
    assert time.monotonic() - began < 60
    out, err = capfd.readouterr()
    for text in (caplog.text, out, err, *(e.str() for e in errors)):
        assert wrong not in text and PASSWORD not in text


# --- payload encryption (on the session's ordinary broker) ------------------------


@workflow.defn(name="sec.echo")
async def echo(ctx: workflow.WorkflowContext, text: str) -> str:
    return text


def test_encrypted_payloads_are_opaque_on_the_topics(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str
) -> None:
    """Encrypted at the client, the input is unreadable on every topic and readable with
    the key. An engine worker without the key routes and records it, but a workflow
    that reads it fails with a clear conversion error; given the key
    (``EngineWorker(converter=...)``) it runs the workflow, and what it writes back
    (the result) is encrypted too."""
    layout = TopicLayout(prefix=topic_prefix, shards=2)
    ensure_topics(admin, layout, ["q"])
    secret = "IBAN-DE89-3704-0044-0532-0130-00-" + secrets.token_hex(6)
    codec = AesGcmCodec({"2026-01": os.urandom(32)}, "2026-01")
    with_key = DataConverter(codec=codec)
    options = ProcessorOptions(worker_id=f"{topic_prefix}-w", transaction_timeout_ms=5000)
    with (
        EngineWorker(kafka_config, layout, [echo], options=options) as engine,
        Client(kafka_config, layout=layout, converter=with_key) as client,
    ):
        handle = client.start(echo, secret, id="vault-1", task_queue="q")
        with pytest.raises(WorkflowFailedError) as failed:
            handle.result(timeout=60)
        assert engine.error is None
    assert "binary/encrypted" in str(failed.value.__cause__)
    second = "IBAN-FR76-3000-6000-0112-3456-7890-" + secrets.token_hex(6)
    with (
        EngineWorker(kafka_config, layout, [echo], options=options, converter=with_key) as keyed,
        Client(kafka_config, layout=layout, converter=with_key) as client,
    ):
        assert client.start(echo, second, id="vault-2", task_queue="q").result(timeout=60) == second
        assert keyed.error is None
    plain = secret.encode()
    topics = {
        "commands": (layout.commands, 2),
        "history": (layout.history, 2),
        "replies": (layout.replies, 2),
        "tasks": (layout.task_queue("q"), 2),
    }
    raw: dict[str, list[bytes]] = {}
    for name, (topic, partitions) in topics.items():
        raw[name] = [m.value() or b"" for m in read_topic(kafka_config, topic, partitions)]
        assert not any(plain in value for value in raw[name]), f"plaintext on {name}"
        assert not any(second.encode() in value for value in raw[name]), f"plaintext on {name}"
    assert raw["commands"] and raw["history"], "the start was routed and recorded"
    wire = WireFormat()
    started: list[ev.WorkflowStarted] = []
    for m in read_topic(kafka_config, layout.history, 2):
        key, value = m.key() or b"", m.value()
        if value is None or key.endswith(b"/snapshot"):
            continue
        event = wire.decode_event(headers_of(m), value).record.event
        if isinstance(event, ev.WorkflowStarted):
            started.append(event)
    assert len(started) == 2
    stored = started[0].input[0]
    assert stored.metadata["encryption-key-id"] == b"2026-01"
    assert with_key.from_payload(stored, str) == secret  # readable with the key
    with pytest.raises(PayloadConversionError):
        DataConverter().from_payload(stored, str)  # and not without it
