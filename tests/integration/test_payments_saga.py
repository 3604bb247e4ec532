"""The payments saga against the demo bank, on real Kafka and PostgreSQL.

Outage shorter than the deadline: transfers wait and complete. Longer: they
compensate. A bank that applies a withdrawal but answers after our timeout: the
retry carries the same idempotency key and the money moves once. In every case
the sum of balances is unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from orchestrator.client import Client
from orchestrator.devstack.bank import BankServer
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from sagas import payments
from sagas.payments import TASK_QUEUE, TransferRequest

pytestmark = pytest.mark.integration
SHARDS = 2
ACTIVITIES = [payments.withdraw, payments.deposit, payments.reverse, payments.announce]


@pytest.fixture
def bank(database: str) -> Iterator[BankServer]:
    with BankServer(database, seed=3) as server:
        with httpx.Client(base_url=server.url) as http:
            for name in ("alice", "bob", "carol"):
                http.post(
                    "/accounts", json={"account_id": name, "initial_balance": 1000}
                ).raise_for_status()
        yield server


@pytest.fixture
def running(
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    bank: BankServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Client]:
    """Engine + activity worker for the payments saga, and a client."""
    monkeypatch.setenv("BANK_URL", bank.url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_config["bootstrap.servers"])
    monkeypatch.setenv("SAGA_TOPIC_PREFIX", topic_prefix)
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [TASK_QUEUE])
    events = f"{topic_prefix}.payments.events"
    admin.create_topics([NewTopic(events, 1, 1)])[events].result(30)
    options = ProcessorOptions(worker_id=f"{topic_prefix}-e", transaction_timeout_ms=5000)
    with (
        EngineWorker(kafka_config, layout, [payments.transfer], options=options),
        ActivityWorker(kafka_config, TASK_QUEUE, ACTIVITIES, layout=layout),
    ):
        client = Client(kafka_config, layout=layout)
        yield client
        client.close()


def balances(bank: BankServer) -> dict[str, int]:
    with httpx.Client(base_url=bank.url) as http:
        return {n: http.get(f"/accounts/{n}").json()["balance"] for n in ("alice", "bob", "carol")}


def total(bank: BankServer) -> int:
    with httpx.Client(base_url=bank.url) as http:
        return int(http.get("/total").json()["total"])


def run_transfers(client: Client, reqs: list[TransferRequest]) -> list[bool]:
    handles = [
        client.start(payments.transfer, r, id=r.transfer_id, task_queue=TASK_QUEUE) for r in reqs
    ]
    outcomes = []
    for handle in handles:
        try:
            handle.result(timeout=60)
            outcomes.append(True)
        except Exception:  # a failed (compensated) saga raises WorkflowFailedError
            outcomes.append(False)
    return outcomes


def test_outage_shorter_than_the_deadline_completes(running: Client, bank: BankServer) -> None:
    bank.faults.outage(3)
    began = time.monotonic()
    reqs = [TransferRequest(f"short-{i}", "alice", "bob", 10, settle_within_s=30) for i in range(5)]
    assert run_transfers(running, reqs) == [True] * 5
    assert time.monotonic() - began >= 2.5  # they really waited for the bank to reopen
    assert balances(bank) == {"alice": 950, "bob": 1050, "carol": 1000}
    assert total(bank) == 3000
    assert bank.faults.counters.outage_503 > 0


def test_outage_longer_than_the_deadline_compensates(running: Client, bank: BankServer) -> None:
    bank.faults.outage(6)
    reqs = [
        TransferRequest(f"long-{i}", "alice", "carol", 10, settle_within_s=1.5) for i in range(5)
    ]
    assert run_transfers(running, reqs) == [False] * 5
    # the reversals keep retrying (no expiry) and voided the withdrawals: nothing moved
    assert balances(bank) == {"alice": 1000, "bob": 1000, "carol": 1000}
    assert total(bank) == 3000


def test_answer_after_the_caller_gave_up_moves_money_once(
    running: Client, bank: BankServer
) -> None:
    # the next two operations are applied, then answered after the connector's 2 s timeout
    bank.faults.slow_after_apply(3.0, count=2)
    reqs = [TransferRequest("slow-1", "bob", "carol", 100, settle_within_s=60)]
    assert run_transfers(running, reqs) == [True]
    assert bank.faults.counters.slow_responses == 2
    assert balances(bank) == {"alice": 1000, "bob": 900, "carol": 1100}
    assert total(bank) == 3000
