"""The CLI's parity with the HTTP API and the clients, on Kafka and PostgreSQL:
``saga start`` with a reuse policy, search attributes, memo, an execution timeout and
the run's priority and fairness key; ``saga signal --request-id`` run twice;
``saga query``, ``update``, ``result`` and ``count``; expected failures as one line
and a hint, never a traceback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result
from confluent_kafka.admin import AdminClient

from orchestrator.cli import main
from orchestrator.client import Client
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.visibility.projector import Projector
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.e2e_sagas import charge_card, doomed, nap
from tests.integration.http_sagas import Account

pytestmark = pytest.mark.integration
SHARDS = 2


@pytest.fixture
def client(
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Client]:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_config["bootstrap.servers"])
    monkeypatch.setenv("SAGA_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("SAGA_SHARDS", str(SHARDS))
    monkeypatch.setenv("DATABASE_URL", database)
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout)
    options = ProcessorOptions(worker_id=f"{topic_prefix}-parity")
    with (
        EngineWorker(kafka_config, layout, [Account, nap, doomed], activities=[charge_card],
                     options=options),
        Projector(database, kafka_config, layout),
        Client(kafka_config, layout=layout) as c,
    ):
        yield c


def ok(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return str(result.output)


def failed(*args: str) -> Result:
    """A command that fails as expected: exit 1, one line of what, one line of hint."""
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("Error: ") and "\nhint: " in result.stderr, result.stderr
    return result


def test_start_options_query_update_result_and_count(client: Client) -> None:
    started = ok("start", "http.account", "--id", "acct-1", "--task-queue", "q", "--input", "10",
                 "--search-attr", "customer=acme", "--search-attr", "tier=3",
                 "--memo", "note=opened by cli", "--execution-timeout", "600",
                 "--priority", "5", "--fairness-key", "acme")
    assert started.strip() == "started acct-1"
    described = json.loads(ok("describe", "acct-1"))
    assert described["search_attributes"] == {"customer": "acme", "tier": 3}
    assert described["memo"] == {"note": "opened by cli"}
    assert (described["priority"], described["fairness_key"]) == (5, "acme")
    assert json.loads(ok("query", "acct-1", "balance")) == 10
    for _ in range(2):  # run twice with one request id: deposited once
        ok("signal", "acct-1", "deposit", "--args", "[2]", "--request-id", "dep-1")
    assert json.loads(ok("query", "acct-1", "balance")) == 12
    assert json.loads(ok("update", "acct-1", "withdraw", "--args", "[4]")) == 8
    refused = failed("update", "acct-1", "withdraw", "--args", "[100]")
    assert "update on 'acct-1'" in refused.stderr
    ok("signal", "acct-1", "close")
    assert json.loads(ok("result", "acct-1", "--timeout", "60")) == 8

    again = failed("start", "http.account", "--id", "acct-1", "--task-queue", "q", "--input",
                   "1", "--id-reuse-policy", "reject_duplicate", "--wait")
    assert "WorkflowAlreadyStarted" in again.stderr or "already" in again.stderr.lower()

    deadline = time.monotonic() + 60
    while ok("count", "--type", "http.account", "--search", "customer=acme").strip() != "1":
        assert time.monotonic() < deadline, "the projector did not count the run"
        time.sleep(0.2)
    assert ok("count", "--status", "completed", "--type", "http.account").strip() == "1"
    assert ok("count", "--search", "customer=nobody").strip() == "0"


def test_expected_failures_are_one_line_and_a_hint(client: Client) -> None:
    unknown = failed("describe", "no-such-id")
    assert "no-such-id" in unknown.stderr and "saga list" in unknown.stderr
    failed("query", "no-such-id", "balance")
    failed("signal", "no-such-id", "close", "--args", "[]")
    ended = CliRunner().invoke(main, ["start", "e2e.doomed", "--id", "cli-d", "--task-queue",
                                      "q", "--input", '"4242"', "--wait"])
    assert ended.exit_code == 1 and "Traceback" not in ended.output  # its wording: test_cli
    assert ended.stderr.startswith("Error: workflow 'cli-d' ended FAILED.")
    result = failed("result", "cli-d", "--timeout", "30")
    assert "workflow 'cli-d' ended FAILED" in result.stderr
    assert "hint: `saga history cli-d`" in result.stderr
    closed = failed("query", "cli-d", "balance")
    assert "is FAILED" in closed.stderr and "`saga describe cli-d`" in closed.stderr
    quick = ok("start", "e2e.nap", "--id", "cli-t", "--task-queue", "q", "--args", '["x", 60000]',
               "--execution-timeout", "0.5")
    assert quick.strip() == "started cli-t"
    timed_out = failed("result", "cli-t", "--timeout", "60")
    assert "ended TIMED_OUT" in timed_out.stderr
