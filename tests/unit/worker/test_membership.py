"""Which consumers are static group members, under which instance ids, and what a fenced
one does; the group behaviour itself is tested on Kafka (test_worker_restart.py)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.membership import generated_worker_id, instance_id, member_config
from orchestrator.worker.shard.processor import ProcessorOptions, default_worker_id


def test_a_stable_worker_id_gives_each_consumer_its_own_instance_id() -> None:
    assert instance_id("pay-1", "engine") == "pay-1.engine"
    assert instance_id("pay-1", "tasks.payments") == "pay-1.tasks.payments"


def test_no_worker_id_or_a_generated_one_stays_dynamic() -> None:
    # hostname-pid is new on every restart: as a static member, each dead incarnation
    # would hold its partitions until the session timeout
    assert instance_id(None, "engine") is None
    assert instance_id("", "engine") is None
    assert instance_id(generated_worker_id(), "engine") is None
    assert default_worker_id() == generated_worker_id()
    assert instance_id(ProcessorOptions().worker_id, "engine") is None


def test_characters_the_broker_refuses_are_replaced() -> None:
    assert instance_id("pod/a:1 b", "tasks.q") == "pod_a_1_b.tasks.q"


def test_member_config() -> None:
    assert member_config(None) == {}
    assert member_config("w.engine") == {"group.instance.id": "w.engine"}


class _FatalRecord:
    def error(self) -> KafkaError:
        return KafkaError(KafkaError._FATAL, "fenced by another consumer with the same id")


def test_a_fenced_activity_consumer_stops_the_worker_instead_of_idling() -> None:
    worker = ActivityWorker({"bootstrap.servers": "unused:9092"}, "q", {})
    with pytest.raises(KafkaException):
        worker._accept(_FatalRecord())  # type: ignore[arg-type]
