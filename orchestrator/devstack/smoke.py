"""Smoke run: start the stack, push records through a compacted topic and a transaction."""

from __future__ import annotations

import time
import uuid

import psycopg
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from rich.console import Console
from rich.table import Table

from orchestrator.devstack import providers


def _read_all(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 20.0
) -> list[tuple[str, str]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"smoke-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            key, value = msg.key(), msg.value()
            records.append((key.decode() if key else "", value.decode() if value else ""))
    finally:
        consumer.close()
    return records


def run(console: Console | None = None) -> bool:
    """Start Kafka and PostgreSQL, exercise them, print a report; True when all checks pass."""
    console = console or Console()
    checks: list[tuple[str, bool, str]] = []
    began = time.monotonic()
    with (
        console.status("starting Kafka and PostgreSQL"),
        providers.kafka() as kafka,
        providers.postgres() as pg,
    ):
        stack_s = time.monotonic() - began
        console.print(
            f"Kafka ({kafka.source}) at {kafka.bootstrap_servers}; "
            f"PostgreSQL ({pg.source}); ready in {stack_s:.1f}s"
        )
        topic = f"smoke.{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
        admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})])[
            topic
        ].result(30)

        producer = Producer(
            {
                "bootstrap.servers": kafka.bootstrap_servers,
                "transactional.id": f"smoke-{uuid.uuid4().hex[:8]}",
            }
        )
        producer.init_transactions(30)
        t0 = time.monotonic()
        producer.begin_transaction()
        producer.produce(topic, key=b"order-1", value=b"committed")
        producer.commit_transaction(30)
        commit_ms = (time.monotonic() - t0) * 1000
        producer.begin_transaction()
        producer.produce(topic, key=b"order-2", value=b"aborted")
        producer.abort_transaction(30)
        producer.begin_transaction()
        producer.produce(topic, key=b"order-3", value=b"committed-later")
        producer.commit_transaction(30)

        seen = _read_all(kafka.bootstrap_servers, topic, expected=2)
        values = [v for _, v in seen]
        checks.append(
            (
                "transaction commit visible, abort invisible",
                values == ["committed", "committed-later"],
                f"read {values}",
            )
        )
        checks.append(("compacted topic created", True, topic))
        checks.append(("transaction commit latency", commit_ms < 5000, f"{commit_ms:.1f} ms"))

        with psycopg.connect(pg.dsn) as conn:
            row = conn.execute("SELECT %s::text, version()", ("round-trip",)).fetchone()
        checks.append(
            (
                "PostgreSQL round trip",
                row is not None and row[0] == "round-trip",
                str(row[1]).split(",")[0] if row else "no row",
            )
        )

    table = Table(title="smoke run")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail")
    for name, ok, detail in checks:
        table.add_row(name, "[green]ok[/]" if ok else "[red]FAILED[/]", detail)
    console.print(table)
    console.print(f"total {time.monotonic() - began:.1f}s; nothing left running")
    return all(ok for _, ok, _ in checks)
