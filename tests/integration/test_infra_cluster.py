"""Three brokers on loopback: acks=all writes survive a killed broker, which rejoins."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from orchestrator.devstack.providers import KafkaHandle

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def isr(admin: AdminClient, topic: str) -> list[int]:
    """In-sync replicas of partition 0; [] while metadata does not list it yet."""
    found = admin.list_topics(topic, timeout=10).topics.get(topic)
    partition = found.partitions.get(0) if found is not None else None
    return sorted(partition.isrs) if partition is not None else []


def leader(admin: AdminClient, topic: str) -> int:
    return int(admin.list_topics(topic, timeout=10).topics[topic].partitions[0].leader)


def test_acks_all_survives_a_killed_broker_which_rejoins(
    kafka_cluster: KafkaHandle, topic_prefix: str
) -> None:
    cluster = kafka_cluster.cluster
    assert cluster is not None and len(cluster.nodes) == 3
    admin = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap_servers})
    topic = f"{topic_prefix}.replicated"
    admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})])[topic].result(
        30
    )
    deadline = time.monotonic() + 30
    while isr(admin, topic) != [1, 2, 3] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert isr(admin, topic) == [1, 2, 3]

    errors: list[KafkaError] = []
    acked: list[int] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            acked.append(int(msg.value() or b"-1"))

    producer = Producer(
        {
            "bootstrap.servers": kafka_cluster.bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": 30000,
        }
    )

    def write(start: int, count: int) -> None:
        for i in range(start, start + count):
            producer.produce(topic, value=str(i).encode(), on_delivery=on_delivery)
            producer.poll(0)
        assert producer.flush(40) == 0

    write(0, 100)
    victim = cluster.node(leader(admin, topic))
    victim.kill()  # SIGKILL the partition leader: a crash, not a controlled shutdown
    write(100, 200)  # keeps going on the two survivors (min ISR 2 is still met)
    survivors = [n for n in (1, 2, 3) if n != victim.node_id]
    assert set(isr(admin, topic)) <= set(survivors)

    victim.restart()
    deadline = time.monotonic() + 60
    while isr(admin, topic) != [1, 2, 3] and time.monotonic() < deadline:
        time.sleep(0.3)
    write(300, 50)

    assert errors == []
    assert sorted(acked) == list(range(350))  # every write acknowledged, none twice
    assert isr(admin, topic) == [1, 2, 3], "the restarted broker rejoined the ISR"
