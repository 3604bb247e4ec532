"""``saga reset --bad-build`` on Kafka and PostgreSQL: runs decided by a broken build
are found through the visibility store and reset by a batch job; after the fixed
build is deployed they complete; runs of the good build are not touched, and a second
pass resets nothing. (The kill -9 case is in test_batch_on_kafka.py.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient

from orchestrator.batch.spec import BATCH_TASK_QUEUE
from orchestrator.cli import main
from orchestrator.client import Client
from orchestrator.engine import events as ev
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.visibility.projector import Projector
from orchestrator.visibility.store import VisibilityStore
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.batch_worker import BatchWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration import build_sagas_bad, build_sagas_good

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = build_sagas_good.QUEUE


def listed(database: str, build_id: str) -> dict[str, str]:
    """workflow id -> status of the rows the store lists for ``build_id``."""

    async def fetch() -> dict[str, str]:
        async with VisibilityStore(database) as store:
            rows, _ = await store.list_runs(build_id=build_id, limit=1000)
            return {r.workflow_id: r.status for r in rows}

    return asyncio.run(fetch())


def wait_for(what: str, check: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def engine(kafka_config: dict[str, Any], layout: TopicLayout, build: str, code: Any) -> Any:
    options = ProcessorOptions(worker_id=f"{layout.prefix}-{build}")
    return EngineWorker(kafka_config, layout, [code.ship], build_id=build, options=options)


def test_reset_bad_build_resets_exactly_its_runs(
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_config["bootstrap.servers"])
    monkeypatch.setenv("SAGA_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("SAGA_SHARDS", str(SHARDS))
    monkeypatch.setenv("DATABASE_URL", database)
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE, BATCH_TASK_QUEUE])
    good_ids = [f"g-{i}" for i in range(3)]
    bad_ids = [f"b-{i}" for i in range(5)]
    with (
        Projector(database, kafka_config, layout),
        ActivityWorker(kafka_config, QUEUE, [build_sagas_good.pack], layout=layout),
        BatchWorker(kafka_config, layout, database),
        Client(kafka_config, layout=layout) as client,
    ):
        with engine(kafka_config, layout, "good-1", build_sagas_good):
            for wf_id in good_ids:
                client.start(build_sagas_good.ship, wf_id, id=wf_id, task_queue=QUEUE)
            for wf_id in good_ids:
                assert client.get_handle(wf_id).result(timeout=60) == f"packed {wf_id}"
        with engine(kafka_config, layout, "bad-2", build_sagas_bad):
            for wf_id in bad_ids:
                client.start(build_sagas_bad.ship, wf_id, id=wf_id, task_queue=QUEUE)
            wait_for(
                "the bad build's runs FAILED in the visibility store",
                lambda: listed(database, "bad-2") == dict.fromkeys(bad_ids, "FAILED"),
            )
        with engine(kafka_config, layout, "good-3", build_sagas_good):
            first_runs = {w: client.get_handle(w).describe(timeout=60).run_id for w in good_ids}
            dry = CliRunner().invoke(
                main, ["reset", "--bad-build", "bad-2", "--reason", "INC-1", "--dry-run"]
            )
            assert dry.exit_code == 0, dry.output
            assert dry.output.splitlines()[-1] == "5 run(s) of build bad-2"

            done = CliRunner().invoke(main, ["reset", "--bad-build", "bad-2", "--reason", "INC-1"])
            assert done.exit_code == 0, done.output
            last = done.output.splitlines()[-1]
            assert last.startswith("build bad-2: 5 reset, 0 skipped, 0 failed (batch "), last
            with Client(kafka_config, layout=layout) as fresh:
                for wf_id in bad_ids:
                    assert fresh.get_handle(wf_id).result(timeout=60) == f"packed {wf_id}"

            again = CliRunner().invoke(main, ["reset", "--bad-build", "bad-2", "--reason", "x"])
            assert again.exit_code == 0, again.output
            last = again.output.splitlines()[-1]
            assert last.startswith("build bad-2: 0 reset, 5 skipped, 0 failed"), last
            described = {w: client.get_handle(w).describe().run_id for w in good_ids}
            assert described == first_runs, "the good build's runs are not touched"


def test_runs_the_fixed_build_cannot_replay_are_reset_out_of_parking(
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_config["bootstrap.servers"])
    monkeypatch.setenv("SAGA_TOPIC_PREFIX", topic_prefix)
    monkeypatch.setenv("SAGA_SHARDS", str(SHARDS))
    monkeypatch.setenv("DATABASE_URL", database)
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE, BATCH_TASK_QUEUE])
    ids = [f"d-{i}" for i in range(4)]
    with (
        Projector(database, kafka_config, layout),
        ActivityWorker(kafka_config, QUEUE, [build_sagas_good.pack], layout=layout),
        BatchWorker(kafka_config, layout, database),
        Client(kafka_config, layout=layout) as client,
    ):
        bad = ProcessorOptions(worker_id=f"{topic_prefix}-bad")
        with EngineWorker(
            kafka_config, layout, [build_sagas_bad.deliver], build_id="bad-9", options=bad
        ):
            for wf_id in ids:
                client.start(build_sagas_bad.deliver, wf_id, id=wf_id, task_queue=QUEUE)
            # each waits a day, a decision of the bad build in its history
            wait_for(
                "the bad build's runs RUNNING in the visibility store",
                lambda: (
                    listed(database, "bad-9") == dict.fromkeys(ids, "RUNNING")
                    and all(
                        any(e.__class__.__name__ == "TimerStarted" for e in h.events)
                        for h in (client.fetch_history(w) for w in ids)
                    )
                ),
            )
            first_runs = {w: str(client.fetch_history(w).run_id) for w in ids}
        good = ProcessorOptions(worker_id=f"{topic_prefix}-good")
        with EngineWorker(
            kafka_config, layout, [build_sagas_good.deliver], build_id="good-10", options=good
        ):
            done = CliRunner().invoke(main, ["reset", "--bad-build", "bad-9", "--reason", "INC-2"])
            assert done.exit_code == 0, done.output
            last = done.output.splitlines()[-1]
            assert last.startswith("build bad-9: 4 reset, 0 skipped, 0 failed"), last
            with Client(kafka_config, layout=layout) as fresh:
                for wf_id in ids:
                    assert fresh.get_handle(wf_id).result(timeout=60) == f"packed {wf_id}"
                    old = fresh.fetch_history(wf_id, first_runs[wf_id]).events[-1]
                    assert isinstance(old, ev.WorkflowTerminated) and old.reset_run_id
    parked = [r for r in caplog.records if " parked: " in r.getMessage()]
    assert {r.getMessage().split()[1] for r in parked} == set(ids), "the fixed build parked them"
