"""The projector under faults: SIGKILLed mid-stream, PostgreSQL restarted mid-stream,
junk on the history topic. The history is written the way the engine writes it
(transactions of events and snapshots) by a load thread, so the stream is large and
its content known; the projection must end equal to a rebuild and complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from orchestrator.converter import DataConverter
from orchestrator.devstack.postgres_local import LocalPostgres
from orchestrator.engine import events as ev
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.visibility.compare import check
from orchestrator.visibility.lag import wait_caught_up
from orchestrator.visibility.projector import Projector, ProjectorOptions

pytestmark = pytest.mark.integration

SHARDS = 3
WIRE, CONV = WireFormat(), DataConverter()
RETRY = ev.RetryPolicyRecord(initial_ms=100, backoff=2.0, maximum_ms=1000)


def run_records(wf_id: str, n: int) -> list[tuple[bytes, bytes, list[Any]]]:
    """The history of one completed run, as the engine writes it (events + snapshots)."""
    run_id, t0 = f"run{n}", 1_700_000_000_000 + n
    events: list[ev.Event] = [
        ev.WorkflowStarted(
            seq=1,
            time=t0,
            workflow_type="load.flow",
            workflow_id=wf_id,
            run_id=run_id,
            task_queue="q",
            search_attributes={"n": CONV.to_payload(n), "parity": CONV.to_payload(n % 2)},
        ),
        ev.ActivityScheduled(
            seq=2,
            time=t0 + 1,
            activity_seq=1,
            activity_type="load.step",
            task_queue="q",
            retry_policy=RETRY,
        ),
        ev.ActivityCompleted(
            seq=3, time=t0 + 2, activity_seq=1, attempt=1, result=CONV.to_payload(n)
        ),
        ev.WorkflowCompleted(seq=4, time=t0 + 3, result=CONV.to_payload("ok")),
    ]
    out = [WIRE.encode_event(wf_id, run_id, e) for e in events]
    for status, last in ((rec.WorkflowStatus.RUNNING, 2), (rec.WorkflowStatus.COMPLETED, 4)):
        snap = rec.WorkflowSnapshot(
            workflow_id=wf_id,
            run_id=run_id,
            workflow_type="load.flow",
            task_queue="q",
            status=status,
            start_time=t0,
            last_seq=last,
            close_time=t0 + 3 if last == 4 else None,
        )
        out.insert(last if last == 2 else len(out), WIRE.encode_snapshot(snap))
    return [(r.key, r.value, list(r.headers)) for r in out]


class Load(threading.Thread):
    """Writes ``runs`` completed runs in transactions of ``per_txn`` runs, paced; with
    ``hold_at``, stops there until :attr:`release` is set (so a fault can be made to land
    before the end of the stream, however fast the machine is)."""

    def __init__(
        self,
        config: dict[str, Any],
        layout: TopicLayout,
        runs: int,
        per_txn: int = 10,
        hold_at: int | None = None,
    ):
        super().__init__(name="load", daemon=True)
        self.config, self.layout, self.runs, self.per_txn = config, layout, runs, per_txn
        self.hold_at = hold_at
        self.release = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = Producer(
                {**self.config, "transactional.id": f"{self.layout.prefix}-load", "linger.ms": 5}
            )
            producer.init_transactions(30)
            for start in range(0, self.runs, self.per_txn):
                if self.hold_at is not None and start >= self.hold_at:
                    self.release.wait(60)
                producer.begin_transaction()
                for n in range(start, min(start + self.per_txn, self.runs)):
                    wf_id = f"load-{n}"
                    for key, value, headers in run_records(wf_id, n):
                        producer.produce(
                            self.layout.history,
                            key=key,
                            value=value,
                            headers=headers,
                            partition=shard_for(wf_id, SHARDS),
                        )
                producer.commit_transaction(30)
                self.sent = min(start + self.per_txn, self.runs)
                time.sleep(0.02)
        except BaseException as exc:
            self.error = exc


def projected(dsn: str) -> tuple[int, int]:
    """(rows, COMPLETED rows) in saga_runs, (-1, -1) while the table is missing or PG is down."""
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status = 'COMPLETED' AND "
                "history_length = 4 AND current_step IS NULL) FROM saga_runs"
            ).fetchone()
    except psycopg.Error:
        return (-1, -1)
    assert row is not None
    return int(row[0]), int(row[1])


def wait_until(what: str, probe: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout)
    return layout


@pytest.fixture
def projector_processes(
    kafka_config: dict[str, Any], layout: TopicLayout, database: str, tmp_path: Path
) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"],
        "SAGA_TOPIC_PREFIX": layout.prefix,
        "SAGA_SHARDS": str(SHARDS),
        "DATABASE_URL": database,
    }

    def start(name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli", "projector", "--report-seconds", "0"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_projector_processes_sigkilled_mid_stream_lose_and_duplicate_nothing(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    database: str,
    projector_processes: Callable[[str], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    runs = 600
    load = Load(kafka_config, layout, runs, hold_at=runs * 4 // 5)
    first, second = projector_processes("first"), projector_processes("second")  # one stands by
    load.start()
    for kills in range(3):  # SIGKILL whatever runs, mid-stream, and start it again
        floor = (kills + 1) * runs // 5
        wait_until("progress", lambda floor=floor: projected(database)[0] > floor, 30)
        for proc in (first, second):
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        first, second = projector_processes("first"), projector_processes("second")
    assert load.sent < runs, "the stream ended before the last kill: not mid-stream"
    load.release.set()  # the rest of the stream goes to the restarted projectors
    load.join(60)
    assert load.error is None and load.sent == runs
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in tmp_path.glob("*.log"))
    assert not wait_caught_up(database, kafka_config, layout, timeout_s=60), logs
    assert projected(database) == (runs, runs)
    result = check(database, kafka_config, layout)
    assert result.equal, [str(d) for d in result.differences] + [logs]
    assert result.live_rows == runs and not result.behind, (result.behind, logs)
    first.send_signal(signal.SIGTERM)
    second.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0 and second.wait(30) == 0, logs


@pytest.fixture
def own_postgres() -> Iterator[LocalPostgres]:
    server = LocalPostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


def test_projection_recovers_from_postgres_restarts_mid_stream(
    kafka_config: dict[str, Any], layout: TopicLayout, own_postgres: LocalPostgres
) -> None:
    pg, runs = own_postgres, 600
    options = ProjectorOptions(backoff_initial_s=0.1, backoff_max_s=1.0)
    load = Load(kafka_config, layout, runs)
    with Projector(pg.dsn, kafka_config, layout, options=options) as projector:
        load.start()
        wait_until("progress", lambda: projected(pg.dsn)[0] > runs // 5, 30)
        pg.kill()  # crash: the open transaction and the connection die
        time.sleep(1.5)
        pg.start()
        wait_until("progress after the crash", lambda: projected(pg.dsn)[0] > runs // 2, 30)
        pg.stop()  # clean shutdown
        time.sleep(1.5)
        pg.start()
        load.join(60)
        assert load.error is None and load.sent == runs
        assert not wait_caught_up(pg.dsn, kafka_config, layout, timeout_s=60)
        assert projected(pg.dsn) == (runs, runs)
        assert projector.error is None
        assert projector.metrics.pg_errors >= 2 and projector.metrics.active
    result = check(pg.dsn, kafka_config, layout)
    assert result.equal, [str(d) for d in result.differences]
    assert result.live_rows == runs and not result.behind


def test_undecodable_records_are_counted_and_skipped(
    kafka_config: dict[str, Any], layout: TopicLayout, database: str
) -> None:
    producer = Producer(kafka_config)
    failed: list[Any] = []
    real_headers = run_records("load-x", 1)[0][2]
    junk = [  # (a compacted topic refuses keyless records: those cannot occur)
        (b"load-x/run1/1", b"\x00\x01not avro", real_headers),
        (b"load-y/run1/1", b"unknown type", [("ce_type", b"com.example.other.v1")]),
        (b"no-slash-key", b"whatever", []),
    ]
    for key, value, headers in [*junk, *run_records("load-ok", 7)]:
        producer.produce(
            layout.history,
            key=key,
            value=value,
            headers=headers,
            partition=0,
            on_delivery=lambda err, _msg: failed.append(err) if err else None,
        )
    assert producer.flush(10) == 0 and not failed
    with Projector(database, kafka_config, layout) as projector:
        wait_until("the good run", lambda: projected(database) == (1, 1), 20)
        assert not wait_caught_up(database, kafka_config, layout, timeout_s=20)
        assert projector.metrics.undecodable == 3
        assert projector.error is None
    result = check(database, kafka_config, layout)
    assert result.equal and result.rebuild.undecodable == 3 and not result.behind


def saga_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_lists_checks_and_rebuilds(
    kafka_config: dict[str, Any], layout: TopicLayout, database: str
) -> None:
    load = Load(kafka_config, layout, 30)
    load.run()
    assert load.error is None
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"],
        "SAGA_TOPIC_PREFIX": layout.prefix,
        "SAGA_SHARDS": str(SHARDS),
        "DATABASE_URL": database,
    }
    with Projector(database, kafka_config, layout):
        assert not wait_caught_up(database, kafka_config, layout, timeout_s=20)

    listed = saga_cli(env, "list", "--search", "parity=1", "--json", "--limit", "10")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == 10 and all(r["search_attributes"]["parity"] == 1 for r in rows)
    assert [r["workflow_id"] for r in rows] == [f"load-{n}" for n in range(29, 9, -2)]
    cursor = listed.stderr.strip().rpartition("--after ")[2]
    rest = saga_cli(env, "list", "--search", "parity=1", "--json", "--after", cursor)
    assert [json.loads(line)["workflow_id"] for line in rest.stdout.splitlines()] == [
        f"load-{n}" for n in range(9, 0, -2)
    ]
    table = saga_cli(env, "list", "--status", "completed", "--type", "load.flow")
    assert table.returncode == 0 and "30 run(s)" in table.stdout and "load-17" in table.stdout

    bare = {
        k: v for k, v in env.items() if k not in ("SAGA_TOPIC_PREFIX", "KAFKA_BOOTSTRAP_SERVERS")
    }
    flags = ["--bootstrap", kafka_config["bootstrap.servers"], "--prefix", layout.prefix]
    ok = saga_cli(bare, "visibility", "check", *flags)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "30 runs, 0 difference(s)" in ok.stdout and "at the log end" in ok.stdout
    with psycopg.connect(database) as conn:  # damage the live projection
        conn.execute("UPDATE saga_runs SET status = 'FAILED' WHERE workflow_id = 'load-3'")
    bad = saga_cli(env, "visibility", "check")
    assert bad.returncode == 1
    assert "DIFF load-3/run3 status: 'FAILED' != 'COMPLETED'" in bad.stdout

    rebuilt = saga_cli(env, "visibility", "rebuild", "--into", "saga_runs_new")
    assert rebuilt.returncode == 0 and "rebuilt saga_runs_new: 30 runs" in rebuilt.stdout
    refused = saga_cli(env, "visibility", "rebuild", "--into", "saga_runs")
    assert refused.returncode == 2 and "must differ" in refused.stderr
