"""Batch jobs on Kafka and PostgreSQL (docs/batch.md).

The acceptance case: runs a broken build decided for are reset by a batch job
(``saga reset --bad-build``) that survives a kill -9 of the engine worker running
it; exactly those runs are reset, once each, and all of them then complete. Then a
signal batch by type and status under a rate limit, and the dry run.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient

from orchestrator import activity
from orchestrator.batch.pages import LEDGER_TABLE, BatchPages, ledger_ddl, signal_request_id
from orchestrator.batch.spec import (
    BATCH_TASK_QUEUE,
    BatchDescription,
    BatchFilter,
    BatchOp,
    BatchOperation,
    BatchStatus,
)
from orchestrator.batch.workflow import BatchWorkflow
from orchestrator.cli import main
from orchestrator.client import Client
from orchestrator.engine.replayer import Replayer
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.visibility.projector import Projector
from orchestrator.visibility.store import RunRow, VisibilityStore
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.batch_worker import BatchWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration import batch_sagas, build_sagas_bad, build_sagas_good
from tests.integration.saga_process import saga_env, spawn_saga

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = build_sagas_good.QUEUE


def rows(database: str, **filters: Any) -> list[RunRow]:
    async def fetch() -> list[RunRow]:
        async with VisibilityStore(database) as store:
            found, _ = await store.list_runs(limit=1000, **filters)
            return found

    return asyncio.run(fetch())


def wait_for(what: str, check: Any, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def described(client: Client, batch_id: str) -> BatchDescription | None:
    try:
        return client.batch_handle(batch_id).describe(timeout=5)
    except TimeoutError:
        return None  # the engine is restarting


def test_bad_build_batch_survives_kill9_and_resets_each_run_once(
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    bootstrap = kafka_config["bootstrap.servers"]
    for key, value in saga_env(bootstrap, topic_prefix, SHARDS, DATABASE_URL=database).items():
        monkeypatch.setenv(key, value)
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE, BATCH_TASK_QUEUE])
    good_ids = [f"g-{i}" for i in range(5)]
    bad_ids = [f"b-{i:03}" for i in range(200)]
    env = saga_env(bootstrap, topic_prefix, SHARDS, DATABASE_URL=database)
    args = ["worker", "--sagas", "tests.integration.build_sagas_good", "--build-id", "good-3",
            "--worker-id", f"{topic_prefix}-engine"]
    procs: list[subprocess.Popen[bytes]] = []
    with (
        Projector(database, kafka_config, layout),
        ActivityWorker(kafka_config, QUEUE, [build_sagas_good.pack], layout=layout),
        Client(kafka_config, layout=layout) as client,
    ):
        options = ProcessorOptions(worker_id=f"{topic_prefix}-good-1")
        with EngineWorker(kafka_config, layout, [build_sagas_good.ship], build_id="good-1",
                          options=options):
            for wf_id in good_ids:
                client.start(build_sagas_good.ship, wf_id, id=wf_id, task_queue=QUEUE)
            for wf_id in good_ids:
                assert client.get_handle(wf_id).result(timeout=60) == f"packed {wf_id}"
        options = ProcessorOptions(worker_id=f"{topic_prefix}-bad-2")
        with EngineWorker(kafka_config, layout, [build_sagas_bad.ship], build_id="bad-2",
                          options=options):
            for wf_id in bad_ids:
                client.start(build_sagas_bad.ship, wf_id, id=wf_id, task_queue=QUEUE)
            wait_for("the bad build's runs FAILED in the visibility store", lambda: {
                r.workflow_id: r.status for r in rows(database, build_id="bad-2")
            } == dict.fromkeys(bad_ids, "FAILED"), timeout_s=120)
        try:
            procs.append(spawn_saga(args, env, tmp_path / "engine-1.log"))
            dry = CliRunner().invoke(
                main, ["reset", "--bad-build", "bad-2", "--reason", "INC-1", "--dry-run"]
            )
            assert dry.exit_code == 0, dry.output
            assert dry.output.splitlines()[-1] == "200 run(s) of build bad-2"
            assert sum(line.startswith("would reset b-") for line in dry.output.splitlines()) == 200

            started = time.monotonic()
            handle = client.start_batch(
                "bad-2-reset",
                BatchOperation(BatchOp.RESET, reason="INC-1", operator="test", bad_build="bad-2"),
                BatchFilter(build_id="bad-2"),
                rate=50, page_size=25, timeout=60,
            )
            wait_for("a page done", lambda: (d := described(client, "bad-2-reset"))
                     and d.pages >= 1 and d.status is BatchStatus.RUNNING)
            procs[0].send_signal(signal.SIGKILL)  # mid-batch: a page attempt is under way
            assert procs[0].wait(10) == -signal.SIGKILL
            procs.append(spawn_saga(args, env, tmp_path / "engine-2.log"))
            final = handle.result(timeout=120)
            took = time.monotonic() - started
            t = final.totals
            print(f"batch took {took:.1f}s: {t}")  # shown with -s
            assert final.status is BatchStatus.COMPLETED, final
            assert final.total == 200 and final.listed == 200, final
            # a run reset by the killed attempt but not yet recorded is refused (not
            # current) when the page runs again: skipped, never reset twice
            assert t.done + t.skipped == 200 and t.failed == 0 and t.in_doubt == 0, t
            assert t.skipped <= 1, "only the run the killed attempt was dealing with"
            assert all(why.startswith("sent again after an attempt died")
                       and "no such workflow run" in why for why in t.skipped_sample.values()), t
            assert took > 200 / 50 * 0.8, "the rate held"

            for wf_id in bad_ids:
                assert client.get_handle(wf_id).result(timeout=60) == f"packed {wf_id}"
            # the batch's history, cut by a kill -9, replays with the shipped workflow
            history = client.fetch_history("batch:bad-2-reset")
            assert Replayer(workflows=[BatchWorkflow]).replay(history.events).status.name == (
                "COMPLETED")
            def runs_per_id() -> Counter[str] | None:
                found = Counter(r.workflow_id for r in rows(database, workflow_type="ops.ship"))
                return found if all(found[w] == 2 for w in bad_ids) else None

            runs = wait_for("the new runs projected", runs_per_id)
            assert {w: runs[w] for w in bad_ids} == dict.fromkeys(bad_ids, 2), "reset once each"
            assert {w: runs[w] for w in good_ids} == dict.fromkeys(good_ids, 1), "good untouched"
            wait_for("the old runs FAILED, the new and the good ones COMPLETED", lambda: Counter(
                r.status for r in rows(database, workflow_type="ops.ship")
            ) == Counter({"COMPLETED": 205, "FAILED": 200}))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)


def test_signal_batch_by_type_and_status_holds_its_rate_and_signals_each_once(
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
    ensure_topics(admin, layout, [batch_sagas.QUEUE, BATCH_TASK_QUEUE])
    waiting = [f"w-{i:02}" for i in range(30)]
    finished = [f"f-{i}" for i in range(3)]
    others = [f"o-{i}" for i in range(3)]
    options = ProcessorOptions(worker_id=f"{topic_prefix}-engine")
    with (
        Projector(database, kafka_config, layout),
        EngineWorker(kafka_config, layout, [batch_sagas.Waiter, batch_sagas.Other],
                     options=options),
        BatchWorker(kafka_config, layout, database),
        Client(kafka_config, layout=layout) as client,
    ):
        for wf_id in waiting + finished:
            client.start(batch_sagas.Waiter, wf_id, id=wf_id, task_queue=batch_sagas.QUEUE)
        for wf_id in others:
            client.start(batch_sagas.Other, wf_id, id=wf_id, task_queue=batch_sagas.QUEUE)
        for wf_id in finished:
            client.get_handle(wf_id).signal("finish")
            assert client.get_handle(wf_id).result(timeout=60) == []
        wait_for("all projected", lambda: len(rows(database, workflow_type="batch.waiter",
                                                   status="RUNNING")) == 30
                 and len(rows(database, status="COMPLETED")) == 3
                 and len(rows(database, workflow_type="batch.other")) == 3)
        dry = CliRunner().invoke(main, ["batch", "start", "signal", "--type", "batch.waiter",
                                        "--status", "running", "--signal", "poke",
                                        "--args", '["b1"]', "--dry-run"])
        assert dry.exit_code == 0, dry.output
        lines = dry.output.splitlines()
        assert lines[-1] == "30 run(s) would be touched"
        assert sorted(line.split()[2] for line in lines[:-1]) == waiting

        started = time.monotonic()
        out = CliRunner().invoke(main, ["batch", "start", "signal", "--type", "batch.waiter",
                                        "--status", "running", "--signal", "poke",
                                        "--args", '["b1"]', "--rate", "10", "--page-size", "7",
                                        "--id", "poke-1", "--follow"])
        took = time.monotonic() - started
        assert out.exit_code == 0, out.output
        final = client.batch_handle("poke-1").describe()
        assert final.status is BatchStatus.COMPLETED
        assert (final.totals.done, final.totals.skipped, final.totals.failed) == (30, 0, 0)
        assert final.pages == 5 and final.total == 30
        assert 30 / 10 * 0.8 < took < 30 / 10 * 5, f"rate 10/s for 30 runs took {took:.1f}s"
        assert "30/30 done=30" in out.output
        for wf_id in waiting:
            assert client.get_handle(wf_id).query("pokes") == ["b1"], wf_id
        for wf_id in others:
            assert client.get_handle(wf_id).query("pokes") == [], wf_id

        slow = CliRunner().invoke(main, ["batch", "start", "signal", "--type", "batch.waiter",
                                         "--signal", "poke", "--args", '["b2"]', "--rate", "2",
                                         "--page-size", "4", "--id", "poke-2"])
        assert slow.exit_code == 0, slow.output
        wait_for("a page of the slow batch done",
                 lambda: (d := described(client, "poke-2")) and d.pages >= 1)
        stop = CliRunner().invoke(main, ["batch", "cancel", "poke-2", "--reason", "enough"])
        assert stop.exit_code == 0 and "cancelling batch poke-2" in stop.output, stop.output
        cancelled = client.batch_handle("poke-2").result(timeout=30)
        assert cancelled.status is BatchStatus.CANCELLED and cancelled.cancel_reason == "enough"
        t = cancelled.totals  # no status filter: the finished runs are skipped, with why
        assert t.processed < 33 and t.processed % 4 == 0 and t.processed == cancelled.listed, t
        assert all("is COMPLETED" in why for why in t.skipped_sample.values()), t
        got_b2 = [w for w in waiting if client.get_handle(w).query("pokes") == ["b1", "b2"]]
        assert len(got_b2) == cancelled.totals.done, "no page started after the cancel"

        reused = CliRunner().invoke(main, ["batch", "start", "cancel", "--type", "batch.waiter",
                                           "--id", "poke-1"])
        assert reused.exit_code != 0 and "WorkflowAlreadyStarted" in reused.output, (
            reused.output)

        for op in ("pause", "unpause"):
            handle = client.start_batch(
                f"{op}-all", BatchOperation(BatchOp(op), reason="INC-9", operator="ann"),
                BatchFilter(workflow_type="batch.waiter", status="RUNNING"), rate=0,
            )
            assert handle.result(timeout=60).totals.done == 30
            paused = {client.get_handle(w).describe().paused is not None for w in waiting}
            assert paused == {op == "pause"}, op

        listed = CliRunner().invoke(main, ["batch", "list"])
        assert listed.exit_code == 0 and "poke-1" in listed.output, listed.output
        again = CliRunner().invoke(main, ["batch", "describe", "poke-1"])
        assert again.exit_code == 0 and "completed" in again.output, again.output


def test_a_signal_page_run_again_after_its_attempt_died_signals_each_run_once(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, database: str
) -> None:
    """The dead attempt claimed ``w-1`` and its signal reached the run; the page runs
    again and sends that signal again with the same request id: the run applies it once,
    and the batch counts every run done (none in doubt)."""
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [batch_sagas.QUEUE])
    waiting = [f"w-{i}" for i in range(3)]
    options = ProcessorOptions(worker_id=f"{topic_prefix}-engine")
    with (
        Projector(database, kafka_config, layout),
        EngineWorker(kafka_config, layout, [batch_sagas.Waiter], options=options),
        Client(kafka_config, layout=layout) as client,
    ):
        for wf_id in waiting:
            client.start(batch_sagas.Waiter, wf_id, id=wf_id, task_queue=batch_sagas.QUEUE)
        listed = wait_for("all projected", lambda: (
            found if len(found := rows(database, status="RUNNING")) == 3 else None
        ))
        run_of = {r.workflow_id: r.run_id for r in listed}
        with psycopg.connect(database, autocommit=True) as conn:  # what the dead attempt did
            conn.execute(ledger_ddl())
            conn.execute(f"INSERT INTO {LEDGER_TABLE} (batch_id, workflow_id, run_id, outcome)"
                         " VALUES ('led-1', 'w-1', %s, 'claimed')", [run_of["w-1"]])
        client.get_handle("w-1", run_of["w-1"]).signal(
            "poke", "b1", wait=30, request_id=signal_request_id("led-1", run_of["w-1"])
        )
        pages = BatchPages(lambda: client, database)
        operation = BatchOperation(BatchOp.SIGNAL, signal_name="poke", signal_args=["b1"])
        info = activity.ActivityInfo("batch:led", "run", "saga.batch", "saga.batch.page", 3,
                                     2, "saga.batch", datetime.now(UTC), datetime.now(UTC))
        with activity.running(info, lambda _: None):
            page = pages.page("led-1", operation, BatchFilter(workflow_type="batch.waiter"),
                              None, 10, 0)
        assert (page.listed, page.totals.done, page.totals.in_doubt) == (3, 3, 0)
        for wf_id in waiting:
            assert client.get_handle(wf_id).query("pokes") == ["b1"], wf_id
