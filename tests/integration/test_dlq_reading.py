"""Reading and redriving ``<prefix>.dlq`` once its retention has deleted the oldest
dead letters (orchestrator/log/dlq_tools.py): the readers start at the oldest letter
the topic still keeps, instead of jumping to its end and finding nothing."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from orchestrator.cli import main
from orchestrator.log.dlq_tools import REASON_HEADER, SOURCE_HEADER, read_dead_letters, redrive
from orchestrator.log.topics import TopicLayout, ensure_topics
from tests.integration.kafka_reading import read_topic

pytestmark = pytest.mark.integration


def _letters(kafka_config: dict[str, Any], layout: TopicLayout, count: int) -> None:
    producer = Producer(kafka_config)
    for i in range(count):
        source = f"{layout.prefix}.elsewhere/0/{i}".encode()
        producer.produce(
            layout.dlq,
            key=f"k{i}".encode(),
            value=f"v{i}".encode(),
            headers=[(REASON_HEADER, f"reason {i}".encode()), (SOURCE_HEADER, source)],
        )
    assert producer.flush(10) == 0


def test_dead_letters_past_the_retention_are_skipped_not_everything(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=1)
    ensure_topics(admin, layout)
    source = f"{topic_prefix}.elsewhere"  # where the letters came from
    for future in admin.create_topics([NewTopic(source, 1, 1)]).values():
        future.result(10)
    _letters(kafka_config, layout, 5)
    deleted = admin.delete_records([TopicPartition(layout.dlq, 0, 3)])  # as retention does
    for future in deleted.values():
        future.result(10)

    letters = list(read_dead_letters(kafka_config, layout.dlq))
    assert [(d.offset, d.reason) for d in letters] == [(3, "reason 3"), (4, "reason 4")]

    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"],
        "SAGA_TOPIC_PREFIX": topic_prefix,
        "SAGA_SHARDS": "1",
    }
    shown = CliRunner().invoke(main, ["dlq", "show"], env=env)
    assert shown.exit_code == 0, shown.output
    assert [line.split("\t")[0] for line in shown.output.splitlines()] == ["3", "4"]

    assert redrive(kafka_config, layout.dlq, reason_pattern="reason") == 2
    sent_back = read_topic(kafka_config, source, 1, timeout_s=10)
    assert sorted(m.value() for m in sent_back) == [b"v3", b"v4"]
