"""Schedules on real Kafka: a schedule every second with overlap ``skip`` over a saga
that takes 2.5 s skips and counts the overlapping firings, and a kill -9 of the
engine worker mid-run loses and doubles no firing; a one-hour backfill (across a
daylight-saving jump) starts exactly its nominal times; ``terminate_other`` stops the
running firing through the engine's own local activity. Every schedule run's
history replays."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient

from orchestrator.cli import main
from orchestrator.client import Client, ScheduleHandle
from orchestrator.engine import events as ev
from orchestrator.engine.replayer import Replayer
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.schedules import (
    OverlapPolicy,
    ScheduleAction,
    ScheduleDescription,
    SchedulePolicy,
    ScheduleSpec,
)
from orchestrator.schedules.calendar import to_ms
from orchestrator.schedules.workflow import ScheduleWorkflow
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.status import WorkflowStatus
from orchestrator.visibility.projector import Projector
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from orchestrator.worker.shard.records import headers_of
from tests.integration import schedule_sagas
from tests.integration.kafka_reading import read_topic
from tests.integration.saga_process import saga_env, spawn_saga

pytestmark = pytest.mark.integration
SHARDS = 2
QUEUE = "sched"
WIRE = WireFormat()
REPLAYER = Replayer(workflows=[ScheduleWorkflow, schedule_sagas.slow, schedule_sagas.quick])

Runs = dict[str, list[ev.Event]]  # run id -> events in log order


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout)
    return layout


@pytest.fixture
def client(kafka_config: dict[str, Any], layout: TopicLayout) -> Iterator[Client]:
    with Client(kafka_config, layout=layout) as c:
        yield c


def histories(config: dict[str, Any], layout: TopicLayout) -> dict[str, Runs]:
    """workflow id -> run id -> events, as the history topic holds them."""
    found: dict[str, Runs] = defaultdict(dict)
    for msg in read_topic(config, layout.history, SHARDS):
        if msg.value() is None:
            continue
        record = WIRE.decode_history(headers_of(msg), msg.value()).record
        if not isinstance(record, rec.WorkflowSnapshot):
            found[record.workflow_id].setdefault(record.run_id, []).append(record.event)
    return found


def start_commands(config: dict[str, Any], layout: TopicLayout) -> Counter[str]:
    """How many start commands each workflow id got on the commands topic."""
    seen: Counter[str] = Counter()
    for msg in read_topic(config, layout.commands, SHARDS):
        command = WIRE.decode_command(headers_of(msg), msg.value()).record
        if isinstance(command, rec.StartWorkflow):
            seen[command.workflow_id] += 1
    return seen


def initiated(runs: Runs) -> list[str]:
    """The firing ids a schedule's runs started, in order; each run replays."""
    ids: list[str] = []
    for events in runs.values():
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        REPLAYER.replay(events)
        ids += [e.workflow_id for e in events if isinstance(e, ev.ChildWorkflowInitiated)]
    return ids


def wait_for(
    handle: ScheduleHandle, check: Callable[[ScheduleDescription], bool], what: str,
    timeout: float = 60,
) -> ScheduleDescription:
    deadline = time.monotonic() + timeout
    while True:
        try:
            described = handle.describe(timeout=5)
        except TimeoutError:
            described = None  # the shard is being restored
        if described is not None and check(described):
            return described
        assert time.monotonic() < deadline, f"{what}: {described}"
        time.sleep(0.2)


def spawn_engine(bootstrap: str, prefix: str, log_path: Path) -> subprocess.Popen[bytes]:
    # the same worker id each time: the restarted worker fences the dead one
    args = ["worker", "--sagas", "tests.integration.schedule_sagas",
            "--worker-id", f"{prefix}-engine"]
    return spawn_saga(args, saga_env(bootstrap, prefix, SHARDS), log_path)


def test_every_second_skip_counts_overlaps_and_kill9_loses_and_doubles_no_firing(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client, tmp_path: Path
) -> None:
    bootstrap = kafka_config["bootstrap.servers"]
    first = spawn_engine(bootstrap, layout.prefix, tmp_path / "engine-1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        handle = client.create_schedule(
            "every",
            ScheduleSpec(interval_s=1),
            ScheduleAction("sched.slow", QUEUE, [2.5]),
            SchedulePolicy(OverlapPolicy.SKIP, catchup_window_s=60),
            timeout=60,
        )
        before = wait_for(
            handle, lambda d: d.started >= 2 and bool(d.running), "two firings, one running"
        )
        assert before.missed == 0
        first.send_signal(signal.SIGKILL)  # mid-run: a firing sleeps on its timer
        assert first.wait(10) == -signal.SIGKILL
        time.sleep(1.0)
        second = spawn_engine(bootstrap, layout.prefix, tmp_path / "engine-2.log")
        after_kill = wait_for(handle, lambda d: d.started >= 2, "answering again")
        final = wait_for(
            handle, lambda d: d.started >= after_kill.started + 2 and not d.running,
            "two more firings after the restart",
        )
        handle.delete()
        assert client.get_handle("schedule:every").result(timeout=30) is None
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)

    assert "restored shard" in (tmp_path / "engine-2.log").read_text()
    logs = histories(kafka_config, layout)
    fired = initiated(logs["schedule:every"])
    assert len(fired) == len(set(fired))  # no firing started twice
    handled = to_ms(final.handled_until)
    counted = [f for f in fired if logs[f] and _nominal_ms(f) <= handled]
    assert len(counted) == final.started
    # nothing lost: every second from creation to `handled_until` is started or skipped
    seconds = handled // 1000 - to_ms(final.created_at) // 1000
    assert final.missed == 0
    assert final.started + final.skipped == seconds
    assert final.skipped >= final.started  # 2.5 s runs, one a second: most are skipped
    starts = start_commands(kafka_config, layout)
    spans: list[tuple[int, int]] = []
    for firing in fired:
        assert starts[firing] == 1, firing  # one start command per firing: none doubled
        assert len(logs[firing]) == 1, firing  # ... and one run
        events = next(iter(logs[firing].values()))
        assert isinstance(events[-1], ev.WorkflowCompleted)
        REPLAYER.replay(events)
        spans.append((events[0].time, events[-1].time))
    late = sorted(opened - _nominal_ms(f) for f, (opened, _) in zip(fired, spans, strict=True))
    print(f"firing runs started {late} ms after their nominal times")
    spans.sort()
    for (_, closed), (opened, _) in itertools.pairwise(spans):
        assert opened >= closed  # overlap "skip": a firing never starts while one runs
    print(f"{final.started} started, {final.skipped} skipped over {seconds} s")


def _nominal_ms(firing_id: str) -> int:
    stamp = firing_id.rsplit("-", 1)[1]
    return to_ms(datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC))


def saga(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_backfill_of_one_hour_across_a_dst_jump_starts_exactly_its_nominal_times(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    client: Client,
    database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = saga_env(kafka_config["bootstrap.servers"], layout.prefix, SHARDS)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "SAGA_TOPIC_PREFIX", "SAGA_SHARDS"):
        monkeypatch.setenv(name, env[name])  # for the in-process `saga schedule ...`
    monkeypatch.setenv("DATABASE_URL", database)
    options = ProcessorOptions(worker_id=f"{layout.prefix}-engine", transaction_timeout_ms=5000)
    workflows = [schedule_sagas.slow, schedule_sagas.quick]
    with (
        EngineWorker(kafka_config, layout, workflows, options=options),
        Projector(database, kafka_config, layout),
    ):
        saga("schedule", "create", "nightly", "--workflow", "sched.quick", "--task-queue", QUEUE,
             "--input", '"bf"', "--cron", "*/5 * * * *", "--time-zone", "America/New_York",
             "--paused", "--note", "backfill only")
        described = json.loads(saga("schedule", "describe", "nightly", "--json"))
        assert described["paused"] is True and described["next_times"] == []
        # 06:30-07:30 UTC on 8 March 2026 is 01:30 EST to 03:30 EDT: the wall clock jumps
        # from 02:00 to 03:00, and every 5 minutes of real time fires exactly once
        out = saga("schedule", "backfill", "nightly", "--start", "2026-03-08T06:30:00Z",
                   "--end", "2026-03-08T07:30:00Z", "--overlap", "allow_all")
        start = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)
        expected = [
            f"nightly-{(start + timedelta(minutes=5 * k)):%Y%m%dT%H%M%SZ}" for k in range(12)
        ]
        assert out.splitlines()[:-1] == expected
        for firing in expected:
            assert client.get_handle(firing).result(timeout=30) == f"bf:{firing}"
        triggered = saga("schedule", "trigger", "nightly").split()[-1]  # also while paused
        assert triggered.endswith("-trigger")
        assert client.get_handle(triggered).result(timeout=30) == f"bf:{triggered}"
        final = client.schedule_handle("nightly").describe()
        assert (final.started, final.skipped, final.missed) == (13, 0, 0)
        assert [a.outcome for a in final.recent] == ["completed"] * 10

        saga("schedule", "update", "nightly", "--every", "1h", "--overlap", "buffer_all",
             "--note", "hourly too")
        saga("schedule", "unpause", "nightly", "--note", "live")
        described = json.loads(saga("schedule", "describe", "nightly", "--json"))
        assert described["spec"]["cron"] == ["*/5 * * * *"]  # kept: the update gave no --cron
        assert (described["spec"]["interval_s"], described["policy"]["overlap"]) == (
            3600, "buffer_all")
        assert (described["paused"], described["note"]) == (False, "live")
        assert len(described["next_times"]) == 5
        saga("schedule", "pause", "nightly", "--note", "quiet")
        deadline = time.monotonic() + 30
        while "nightly" not in (listed := saga("schedule", "list")):
            assert time.monotonic() < deadline, listed  # the projector writes the run
            time.sleep(0.2)
        assert "paused" in listed and "13 started" in listed and "1 schedule(s)" in listed
        saga("schedule", "delete", "nightly")
        assert client.get_handle("schedule:nightly").result(timeout=30) is None
        status = client.get_handle("schedule:nightly").describe().status
        assert status is WorkflowStatus.COMPLETED

    logs = histories(kafka_config, layout)
    assert initiated(logs["schedule:nightly"]) == [*expected, triggered]


@pytest.mark.parametrize(
    ("overlap", "outcome", "status"),
    [
        (OverlapPolicy.TERMINATE_OTHER, "terminated", WorkflowStatus.TERMINATED),
        (OverlapPolicy.CANCEL_OTHER, "cancelled", WorkflowStatus.CANCELLED),
    ],
)
def test_stop_policies_stop_the_running_firing_through_the_engine(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    client: Client,
    overlap: OverlapPolicy,
    outcome: str,
    status: WorkflowStatus,
) -> None:
    options = ProcessorOptions(worker_id=f"{layout.prefix}-engine", transaction_timeout_ms=5000)
    with EngineWorker(kafka_config, layout, [schedule_sagas.slow], options=options):
        handle = client.create_schedule(
            "relay",
            ScheduleSpec(interval_s=2),
            ScheduleAction("sched.slow", QUEUE, [60.0]),
            SchedulePolicy(overlap),
        )
        final = wait_for(
            handle,
            lambda d: sum(a.outcome == outcome for a in d.recent) >= 2,
            f"two firings {outcome} by their successors",
        )
        handle.delete()
        stopped = [a.workflow_id for a in final.recent if a.outcome == outcome]
        for firing in stopped:
            assert client.get_handle(firing).describe().status is status
    # the next firing started when (terminate) or once (cancel) its predecessor stopped
    assert final.skipped == 0 and len(final.running) == 1
    assert final.started >= 3


def test_after_downtime_only_the_catchup_window_runs(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client
) -> None:
    options = ProcessorOptions(worker_id=f"{layout.prefix}-engine", transaction_timeout_ms=5000)
    workflows = [schedule_sagas.quick]
    with EngineWorker(kafka_config, layout, workflows, options=options):
        handle = client.create_schedule(
            "ticks",
            ScheduleSpec(interval_s=1),
            ScheduleAction("sched.quick", QUEUE, ["t"]),
            SchedulePolicy(OverlapPolicy.ALLOW_ALL, catchup_window_s=1.5),
        )
        wait_for(handle, lambda d: d.started >= 2, "two firings")
    stopped_at = time.time()
    time.sleep(5)  # every engine worker down
    with EngineWorker(kafka_config, layout, workflows, options=options):
        final = wait_for(
            handle,
            lambda d: d.handled_until.timestamp() > time.time() - 0.5 and d.started >= 5,
            "firing again after the restart",
        )
        handle.delete()
    assert final.missed >= 3  # the seconds of the downtime older than the window
    seconds = to_ms(final.handled_until) // 1000 - to_ms(final.created_at) // 1000
    assert final.started + final.missed == seconds and final.skipped == 0
    missed = [a.nominal_time.timestamp() for a in final.recent if a.outcome == "missed"]
    assert all(t > stopped_at - 1 for t in missed)
    print(f"{final.missed} missed, {final.started} started over {seconds} s")
