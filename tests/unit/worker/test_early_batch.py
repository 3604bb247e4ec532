"""Which early tasks a transaction must carry itself (orchestrator/worker/shard/dispatch.py)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError

from orchestrator.worker.shard.dispatch import EarlyBatch
from orchestrator.worker.shard.records import OutRecord


def _task(n: int) -> OutRecord:
    return OutRecord("p.tasks.q", f"wf-{n}".encode(), b"v", None, [])


def test_a_batch_is_settled_once_every_task_has_its_report() -> None:
    batch = EarlyBatch()
    reports = [batch.add(_task(n)) for n in range(3)]
    assert len(batch) == 3 and not batch.reported()
    no_msg: Any = None
    reports[0](None, no_msg)
    reports[2](None, no_msg)
    assert not batch.reported()
    assert batch.unacknowledged() == [_task(1)]  # no report yet: the transaction carries it
    reports[1](None, no_msg)
    assert batch.reported() and batch.unacknowledged() == []


def test_a_failed_delivery_goes_into_the_transaction() -> None:
    batch = EarlyBatch()
    ok, failed = batch.add(_task(1)), batch.add(_task(2))
    no_msg: Any = None
    ok(None, no_msg)
    failed(KafkaError(KafkaError._MSG_TIMED_OUT), no_msg)
    assert batch.reported()
    assert batch.unacknowledged() == [_task(2)]


def test_an_empty_batch_is_settled() -> None:
    batch = EarlyBatch()
    assert len(batch) == 0 and batch.reported() and batch.unacknowledged() == []
