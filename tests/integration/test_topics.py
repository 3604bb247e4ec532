"""Topics are created on demand with the right configs; a broken layout is refused."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from orchestrator.log.topics import TopicLayout, TopicLayoutError, ensure_topics

pytestmark = pytest.mark.integration


def config_of(admin: AdminClient, topic: str) -> dict[str, str]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(30)
    return {k: v.value for k, v in entries.items()}


def test_creates_every_topic_with_its_policy_and_is_idempotent(
    admin: AdminClient, topic_prefix: str
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=4)
    ensure_topics(admin, layout, task_queues=["payments", "email"])
    ensure_topics(admin, layout, task_queues=["payments"])  # second run changes nothing

    topics = admin.list_topics(timeout=10).topics
    for name in (layout.commands, layout.history, layout.replies):
        assert len(topics[name].partitions) == 4
    assert len(topics[layout.task_queue("payments")].partitions) == 4
    assert len(topics[layout.dlq].partitions) == 1
    assert config_of(admin, layout.history)["cleanup.policy"] == "compact"
    assert config_of(admin, layout.commands)["cleanup.policy"] == "delete"


def test_refuses_history_that_is_not_compacted(admin: AdminClient, topic_prefix: str) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=2)
    admin.create_topics([NewTopic(layout.history, 2, 1, config={"cleanup.policy": "delete"})])[
        layout.history
    ].result(30)
    with pytest.raises(
        TopicLayoutError, match=r"history has cleanup.policy=delete, expected compact"
    ):
        ensure_topics(admin, layout)


def test_refuses_commands_and_history_with_different_shard_counts(
    admin: AdminClient, topic_prefix: str
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=4)
    admin.create_topics([NewTopic(layout.commands, 6, 1)])[layout.commands].result(30)
    with pytest.raises(TopicLayoutError, match="shards must line up"):
        ensure_topics(admin, layout)


def test_task_queue_names_are_validated() -> None:
    with pytest.raises(ValueError, match="invalid task queue"):
        TopicLayout().task_queue("a/b")
