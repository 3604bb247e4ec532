"""Record the shipped sagas' histories on real Kafka.

``python -m tests.replay.record_kafka_histories [--overwrite]``

Run by hand, on purpose (the saved files stand for executions already in
production, which new code must keep replaying). It starts Kafka and PostgreSQL
(the project's providers: environment, Docker or local binaries), the demo bank, a
small HTTP downstream for retry_forward, an engine worker and one activity worker
per task queue, runs every scenario of :mod:`tests.replay.shipped_scenarios` with
the real activities, reads each run's history back with ``Client.fetch_history``
and writes it to ``tests/replay/histories/kafka_<stem>.json`` (a file already
saved is kept unless ``--overwrite`` is given).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
from confluent_kafka.admin import AdminClient, NewTopic

from orchestrator.client import Client
from orchestrator.devstack import providers
from orchestrator.devstack.bank import BankServer
from orchestrator.engine import events as ev
from orchestrator.exceptions import WorkflowFailedError
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from sagas import payments, retry_forward
from tests.replay import shipped_scenarios as sc
from tests.replay.record_histories import save

SHARDS = 2
RESULT_TIMEOUT_S = 120.0


@contextmanager
def downstream(rules: sc.DownstreamRules) -> Iterator[str]:
    """An HTTP server answering as ``rules`` say; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            status, body = rules.answer(self.path, self.rfile.read(length))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="downstream", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def bank_database(postgres: providers.PostgresHandle) -> Iterator[str]:
    """A fresh database for the bank's ledger; dropped afterwards."""
    name = f"record_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{postgres.dsn.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_scenario(
    client: Client, stem: str, workflow: Any, arg: Any, task_queue: str
) -> list[ev.Event]:
    """Start one run, wait for it to close, and read its history back from the engine."""
    handle = client.start(workflow, arg, id=f"kafka_{stem}", task_queue=task_queue)
    try:
        handle.result(timeout=RESULT_TIMEOUT_S)
        outcome = "completed"
    except WorkflowFailedError as exc:
        outcome = exc.status
    history = client.fetch_history(handle.workflow_id).events
    print(f"kafka_{stem}: {outcome}, {len(history)} events")
    return history


def record(
    kafka_config: dict[str, Any], bank: BankServer, downstream_url: str, overwrite: bool
) -> None:
    """Run every scenario on ``kafka_config`` and write the histories not saved yet
    (all of them with ``overwrite``)."""
    prefix = f"rec{uuid.uuid4().hex[:8]}"
    os.environ.update({
        "BANK_URL": bank.url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"],
        "SAGA_TOPIC_PREFIX": prefix,
        "RETRY_FORWARD_BASE_URL": downstream_url,
        "RETRY_FORWARD_TIMEOUT_S": "5",
    })
    admin = AdminClient(kafka_config)
    layout = TopicLayout(prefix=prefix, shards=SHARDS)
    ensure_topics(admin, layout, [payments.TASK_QUEUE, retry_forward.TASK_QUEUE])
    events = f"{prefix}.payments.events"
    admin.create_topics([NewTopic(events, 1, 1)])[events].result(30)
    with httpx.Client(base_url=bank.url) as http:
        for account in sc.ACCOUNTS:
            http.post(
                "/accounts", json={"account_id": account, "initial_balance": 1000}
            ).raise_for_status()
    options = ProcessorOptions(worker_id=f"{prefix}-engine", transaction_timeout_ms=5000)
    histories: dict[str, list[ev.Event]] = {}
    with (
        EngineWorker(kafka_config, layout, sc.WORKFLOWS, options=options),
        ActivityWorker(
            kafka_config,
            payments.TASK_QUEUE,
            [payments.withdraw, payments.deposit, payments.reverse, payments.announce],
            layout=layout,
        ),
        ActivityWorker(
            kafka_config, retry_forward.TASK_QUEUE, [retry_forward.call_downstream],
            layout=layout,
        ),
        Client(kafka_config, layout=layout) as client,
    ):
        for stem, (req, outage_s) in sc.PAYMENTS.items():
            if outage_s:
                bank.faults.outage(outage_s)
            histories[stem] = run_scenario(
                client, stem, payments.transfer, req, payments.TASK_QUEUE
            )
        for stem, fwd in sc.RETRY_FORWARD.items():
            histories[stem] = run_scenario(
                client, stem, retry_forward.forward, fwd, retry_forward.TASK_QUEUE
            )
    save({f"kafka_{stem}": h for stem, h in histories.items()}, overwrite=overwrite)

def main(argv: list[str] | None = None) -> None:
    overwrite = "--overwrite" in (sys.argv[1:] if argv is None else argv)
    with (
        providers.kafka() as kafka,
        providers.postgres() as postgres,
        bank_database(postgres) as dsn,
        BankServer(dsn) as bank,
        downstream(sc.DownstreamRules()) as url,
    ):
        record({"bootstrap.servers": kafka.bootstrap_servers}, bank, url, overwrite)


if __name__ == "__main__":
    main()
