"""Which consumers are static group members, under which instance ids, and what a fenced
one does; the group behaviour itself is tested on Kafka (test_worker_restart.py)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.fencing import FenceLimit, fences_the_consumer
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


class _ErrorRecord:
    def __init__(self, error: KafkaError) -> None:
        self._error = error

    def error(self) -> KafkaError:
        return self._error


#: what librdkafka 2.16 serves a fenced static consumer (seen on Kafka 4.3)
FENCED = KafkaError(
    KafkaError._FATAL,
    "Fatal error: Broker: Static consumer fenced by other consumer with same group.instance.id",
)


def test_a_fencing_is_told_apart_from_other_fatal_errors() -> None:
    assert fences_the_consumer(FENCED)
    assert fences_the_consumer(KafkaError(KafkaError.FENCED_INSTANCE_ID))
    assert not fences_the_consumer(KafkaError(KafkaError._FATAL, "Fatal error: producer fenced"))
    assert not fences_the_consumer(KafkaError(KafkaError._TRANSPORT, "consumer disconnected"))


def test_a_fenced_activity_consumer_is_replaced_not_accepted() -> None:
    worker = ActivityWorker({"bootstrap.servers": "unused:9092"}, "q", {})
    assert worker._rejoin_if_fenced(_ErrorRecord(FENCED))  # type: ignore[arg-type]
    assert worker.stats.received == 0


def test_another_fatal_error_still_stops_the_activity_worker() -> None:
    worker = ActivityWorker({"bootstrap.servers": "unused:9092"}, "q", {})
    fatal = _ErrorRecord(KafkaError(KafkaError._FATAL, "Fatal error: broker said no"))
    assert not worker._rejoin_if_fenced(fatal)  # type: ignore[arg-type]
    with pytest.raises(KafkaException):
        worker._accept(fatal)  # type: ignore[arg-type]


def test_fenced_over_and_over_is_a_duplicate_worker_id() -> None:
    limit = FenceLimit("the engine's consumer", "w.engine", most=3, window_s=60.0)
    for _ in range(3):
        limit.fenced(FENCED)
    with pytest.raises(RuntimeError, match=r"'w\.engine' \(two workers with one --worker-id\)"):
        limit.fenced(FENCED)


def test_fencings_older_than_the_window_are_forgotten() -> None:
    limit = FenceLimit("the engine's consumer", "w.engine", most=1, window_s=0.05)
    limit.fenced(FENCED)
    time.sleep(0.1)
    limit.fenced(FENCED)  # the first one is out of the window
