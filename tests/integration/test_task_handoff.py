"""Task handoff (orchestrator/worker/task_handoff.py) on real Kafka: a ``saga worker``
process that runs the engine and serves the task queue hands a task with a start-to-close
timeout to its own activity worker, and takes the outcome back, without either record
travelling through Kafka; when the process dies with a handed attempt, the engine's
start-to-close timer retries it on the next owner.

What a user checks: the run's result, the records on ``<prefix>.tasks.<queue>`` and on
``<prefix>.commands``, the run's history and its replies.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from orchestrator.client import Client
from orchestrator.engine import events as ev
from orchestrator.engine.failures import TIMEOUT_TYPE
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.shard.records import headers_of
from tests.integration.handoff_sagas import QUEUE
from tests.integration.kafka_reading import read_topic, run_history
from tests.integration.raw_commands import produce_start
from tests.integration.saga_process import saga_env, spawn_saga

pytestmark = pytest.mark.integration
SHARDS = 2
SAGAS = "tests.integration.handoff_sagas"
WIRE = WireFormat()
Outcome = rec.ActivityTaskCompleted | rec.ActivityTaskFailed
#: what a ``saga worker`` logs when its batch jobs' worker stopped: its engine stops next
_BATCH_STOPPED = "stopped: ActivityWorkerStats(received=0"


def _wait(
    what: str, check: Callable[[], bool], timeout_s: float, logs: Path, every_s: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs.glob("*.log"))
            raise AssertionError(f"{what}: not after {timeout_s}s\n{tails}")
        time.sleep(every_s)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


def _kill(*procs: subprocess.Popen[bytes] | None) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(30)


def _queued(config: dict[str, Any], layout: TopicLayout) -> list[rec.ActivityTask]:
    """Every task record on the queue's topic."""
    return [
        WIRE.decode_task(headers_of(m), m.value()).record
        for m in read_topic(config, layout.task_queue(QUEUE), SHARDS)
    ]


def _tasks(config: dict[str, Any], layout: TopicLayout, workflow_id: str) -> list[rec.ActivityTask]:
    """The run's task records on the queue's topic."""
    return [t for t in _queued(config, layout) if t.workflow_id == workflow_id]


def _warm(config: dict[str, Any], layout: TopicLayout) -> None:
    """Run a first saga to its end: it wakes the activity worker (one that fetched
    nothing for a second is blocked in the Kafka client, so the engine sends it the
    next task through the queue)."""
    _start(config, layout, "warm", "handoff.three_steps")
    assert _result(config, layout, "warm") == "warm+++"


def _outcomes(config: dict[str, Any], layout: TopicLayout, workflow_id: str) -> list[Outcome]:
    """The run's activity outcome records on the commands topic."""
    commands = [
        WIRE.decode_command(headers_of(m), m.value()).record
        for m in read_topic(config, layout.commands, SHARDS)
    ]
    return [
        c for c in commands
        if isinstance(c, Outcome) and c.workflow_id == workflow_id
    ]


def _history(config: dict[str, Any], layout: TopicLayout, workflow_id: str) -> list[ev.Event]:
    return run_history(config, layout, workflow_id, wire=WIRE)


def _results(config: dict[str, Any], layout: TopicLayout, workflow_id: str) -> list[rec.Reply]:
    replies = [
        WIRE.decode_reply(headers_of(m), m.value()).record
        for m in read_topic(config, layout.replies, SHARDS)
    ]
    return [r for r in replies if r.workflow_id == workflow_id and r.kind is rec.ReplyKind.RESULT]


def _start(config: dict[str, Any], layout: TopicLayout, workflow_id: str, saga: str) -> None:
    producer = Producer({**config, "linger.ms": 0})
    produce_start(producer, layout, workflow_id, saga, QUEUE, [workflow_id])
    assert producer.flush(10) == 0


def _result(config: dict[str, Any], layout: TopicLayout, workflow_id: str) -> Any:
    with Client(config, layout=layout) as client:
        return client.get_handle(workflow_id).result(timeout=120)


def _blocking_step_handed(
    config: dict[str, Any], layout: TopicLayout, workflow_id: str, runs: Path, logs: Path
) -> None:
    """Wait until the run's blocking step (its step 2) has started and its schedule is
    committed, and check that it was handed over, not sent through the queue."""
    _wait("the blocking step started", lambda: runs.read_text() != "", 120, logs)
    _wait(
        "the blocking step's schedule committed",
        lambda: any(isinstance(e, ev.ActivityScheduled) and e.activity_seq == 2
                    for e in _history(config, layout, workflow_id)),
        60,
        logs,
    )
    assert not [t for t in _tasks(config, layout, workflow_id) if t.activity_seq == 2], (
        "the blocking step was sent through the queue, not handed over"
    )


def _spawn_patched(
    module: str, args: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """``python -m tests.integration.<module> *args`` (a ``saga`` patched for a test)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", f"tests.integration.{module}", *args],
            env=env, stdout=out, stderr=out,
        )


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    made = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, made, [QUEUE])
    return made


@pytest.fixture
def env(kafka_config: dict[str, Any], topic_prefix: str, tmp_path: Path) -> dict[str, str]:
    return saga_env(
        kafka_config["bootstrap.servers"], topic_prefix, SHARDS,
        HANDOFF_RUNS_FILE=str(tmp_path / "runs.txt"),
        HANDOFF_RELEASE_FILE=str(tmp_path / "release"),
    )


@pytest.fixture
def colocated(
    env: dict[str, str], topic_prefix: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[bool]:
    """One ``saga worker`` process: the engine and the activity worker of the queue;
    ``--no-task-handoff`` when parametrized (indirectly) with False. Yields whether
    handoff is on."""
    handoff: bool = getattr(request, "param", True)
    args = ["worker", "--sagas", SAGAS, "--task-queue", QUEUE,
            "--worker-id", f"{topic_prefix}-w"]
    if not handoff:
        args.append("--no-task-handoff")
    proc = spawn_saga(args, env, tmp_path / "worker.log")
    try:
        yield handoff
    finally:
        _stop(proc)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("colocated", [True, False], ids=["handoff", "no-handoff"], indirect=True)
def test_a_colocated_worker_runs_timed_steps_without_the_queue_or_the_commands_topic(
    kafka_config: dict[str, Any], layout: TopicLayout, colocated: bool
) -> None:
    handoff = colocated
    _warm(kafka_config, layout)
    _start(kafka_config, layout, "run", "handoff.three_steps")
    assert _result(kafka_config, layout, "run") == "run+++"

    on_queue = sorted((t.activity_seq, t.attempt) for t in _tasks(kafka_config, layout, "run"))
    outcomes = _outcomes(kafka_config, layout, "run")
    history = _history(kafka_config, layout, "run")
    kinds = [type(e).__name__ for e in history]
    assert kinds.count("ActivityCompleted") == 3
    assert kinds.count("WorkflowCompleted") == 1
    assert all(isinstance(o, rec.ActivityTaskCompleted) for o in outcomes)
    through_commands = sorted((o.activity_seq, o.attempt) for o in outcomes)
    if not handoff:
        assert on_queue == [(1, 1), (2, 1), (3, 1)]
        assert through_commands == [(1, 1), (2, 1), (3, 1)]
        return
    # steps 2 and 3 follow a step the worker just ran: handed over in memory, and their
    # outcomes taken back in memory; step 1 went through the queue only if the worker
    # had fallen asleep since the warm run (then its outcome went through Kafka too)
    assert on_queue in ([], [(1, 1)]), on_queue
    assert through_commands == on_queue, "an outcome goes back the way its task came"


@pytest.mark.timeout(240)
def test_a_burst_too_large_to_send_tasks_early_still_hands_them_over(
    kafka_config: dict[str, Any], layout: TopicLayout, colocated: bool
) -> None:
    # 150 runs started at once: a batch that large sends its tasks in its transaction
    # rather than early, but a task the process's own worker takes is handed all the same
    _warm(kafka_config, layout)
    burst = [f"burst-{n}" for n in range(150)]
    producer = Producer({**kafka_config, "linger.ms": 50})
    for workflow_id in burst:
        produce_start(producer, layout, workflow_id, "handoff.three_steps", QUEUE, [workflow_id])
    assert producer.flush(10) == 0
    with Client(kafka_config, layout=layout) as client:
        for workflow_id in burst:
            assert client.get_handle(workflow_id).result(timeout=120) == f"{workflow_id}+++"

    # a step after one the worker just ran finds it awake with free slots: handed
    later = [
        (t.workflow_id, t.activity_seq)
        for t in _queued(kafka_config, layout)
        if t.workflow_id.startswith("burst-") and t.activity_seq > 1
    ]
    assert later == [], f"{len(later)} later steps went through the queue: {later[:5]}"


@pytest.mark.timeout(240)
def test_a_step_without_start_to_close_goes_through_the_queue_between_handed_steps(
    kafka_config: dict[str, Any], layout: TopicLayout, colocated: bool
) -> None:
    _warm(kafka_config, layout)
    _start(kafka_config, layout, "mixed", "handoff.mixed")
    assert _result(kafka_config, layout, "mixed") == "mixed+~+"

    on_queue = {t.activity_seq: t for t in _tasks(kafka_config, layout, "mixed")}
    assert 2 in on_queue, "its attempt could be lost without a trace: never handed"
    assert on_queue[2].activity_type == "handoff.untimed"
    assert on_queue[2].start_to_close_timeout_ms is None
    assert 3 not in on_queue, "the timed step after it is handed"
    through_commands = {o.activity_seq for o in _outcomes(kafka_config, layout, "mixed")}
    assert through_commands == set(on_queue)


@pytest.mark.timeout(300)
def test_an_attempt_lost_with_its_process_is_retried_by_the_start_to_close_timer(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    env: dict[str, str],
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    runs, release = Path(env["HANDOFF_RUNS_FILE"]), Path(env["HANDOFF_RELEASE_FILE"])
    runs.touch()
    args = ["worker", "--sagas", SAGAS, "--task-queue", QUEUE,
            "--worker-id", f"{topic_prefix}-w"]
    first = spawn_saga(args, env, tmp_path / "first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        _start(kafka_config, layout, "crash", "handoff.crash")
        _blocking_step_handed(kafka_config, layout, "crash", runs, tmp_path)
        assert _results(kafka_config, layout, "crash") == []

        first.kill()  # with the handed attempt running: nothing on Kafka says it ran
        first.wait(30)
        release.touch()
        second = spawn_saga(args, env, tmp_path / "second.log")

        # read replies, then history: a RESULT reply is visible only with its run's end
        seen: list[rec.Reply] = []

        def answered() -> bool:
            seen[:] = _results(kafka_config, layout, "crash")
            if seen:
                history = _history(kafka_config, layout, "crash")
                assert any(isinstance(e, ev.WorkflowCompleted) for e in history), (
                    "a RESULT reply before the completion was written"
                )
            return bool(seen)

        _wait("the run's result", answered, 150, tmp_path)
        assert _result(kafka_config, layout, "crash") == "crash+ released"
    finally:
        _kill(first, second)

    # attempt 1 died with the first process; the retry ran on the second: twice in all
    attempts = [line.split() for line in runs.read_text().splitlines()]
    assert len(attempts) == 2, attempts
    assert len({key for key, _ in attempts}) == 1, "every run under one idempotency key"
    key = attempts[0][0]
    assert key.startswith("crash/") and key.endswith("/2"), key

    history = _history(kafka_config, layout, "crash")
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    timed_out = [e for e in history if isinstance(e, ev.ActivityAttemptFailed)]
    assert [(e.activity_seq, e.attempt) for e in timed_out] == [(2, 1)]
    assert timed_out[0].failure.type == TIMEOUT_TYPE
    assert ev.START_TO_CLOSE in timed_out[0].failure.message
    completed = [e for e in history if isinstance(e, ev.ActivityCompleted)]
    assert [(e.activity_seq, e.attempt >= 2) for e in completed] == [(1, False), (2, True)]
    assert [n for _, n in attempts] == ["1", str(completed[1].attempt)]
    ends = [e for e in history if isinstance(e, ev.WorkflowCompleted)]
    assert len(ends) == 1
    results = _results(kafka_config, layout, "crash")
    assert len(results) == 1
    assert results[0].ok and results[0].result == ends[0].result


@pytest.mark.timeout(300)
def test_a_graceful_stop_keeps_the_outcome_of_a_handed_attempt(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    env: dict[str, str],
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    runs, release = Path(env["HANDOFF_RUNS_FILE"]), Path(env["HANDOFF_RELEASE_FILE"])
    runs.touch()
    args = ["worker", "--sagas", SAGAS, "--task-queue", QUEUE,
            "--worker-id", f"{topic_prefix}-w"]
    first = spawn_saga(args, env, tmp_path / "first.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        _start(kafka_config, layout, "stop", "handoff.stop")
        _blocking_step_handed(kafka_config, layout, "stop", runs, tmp_path)
        # the attempt ends while the engine stops (the activity worker drains it): just
        # after the process's other activity worker, the batch jobs', stopped
        first.send_signal(signal.SIGTERM)
        log = tmp_path / "first.log"
        _wait("the batch worker stopped", lambda: _BATCH_STOPPED in log.read_text(), 60,
              tmp_path, every_s=0.002)
        release.touch()
        assert first.wait(90) == 0
        decided = [e for e in _history(kafka_config, layout, "stop")
                   if isinstance(e, ev.ActivityCompleted) and e.activity_seq == 2]
        sent = [o for o in _outcomes(kafka_config, layout, "stop") if o.activity_seq == 2]
        assert len(decided) + len(sent) >= 1, "the attempt's outcome was lost in the stop"

        second = spawn_saga(args, env, tmp_path / "second.log")
        assert _result(kafka_config, layout, "stop") == "stop+ released"
    finally:
        _kill(first, second)
    history = _history(kafka_config, layout, "stop")
    assert [line.split()[1] for line in runs.read_text().splitlines()] == ["1"], "ran once"
    assert not [e for e in history if isinstance(e, ev.ActivityAttemptFailed)]
    assert [type(e).__name__ for e in history].count("WorkflowCompleted") == 1


@pytest.mark.timeout(300)
def test_an_outcome_given_back_whose_transaction_fails_is_read_again_from_the_commands(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    env: dict[str, str],
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    """The transaction that would commit a handed attempt's outcome fails: the outcome
    has no offset for the rewind to read again, so the engine sends it through the
    commands topic. The attempt is not run again, nor retried by its start-to-close
    timer (tests/integration/handoff_failing_commit_worker.py fails the commit)."""
    runs, release = Path(env["HANDOFF_RUNS_FILE"]), Path(env["HANDOFF_RELEASE_FILE"])
    runs.touch()
    log = tmp_path / "worker.log"
    args = ["worker", "--sagas", SAGAS, "--task-queue", QUEUE,
            "--worker-id", f"{topic_prefix}-w"]
    proc = _spawn_patched("handoff_failing_commit_worker", args, env, log)
    try:
        _start(kafka_config, layout, "victim", "handoff.stop")
        _blocking_step_handed(kafka_config, layout, "victim", runs, tmp_path)
        released = time.monotonic()
        release.touch()  # its outcome comes back in memory; the commit carrying it fails
        assert _result(kafka_config, layout, "victim") == "victim+ released"
        took = time.monotonic() - released
        assert "commit fails once" in log.read_text(), log.read_text()[-3000:]
        assert proc.poll() is None, log.read_text()[-3000:]
    finally:
        _stop(proc)

    # the rewind found the schedule in history, so nothing dispatched the attempt again;
    # the outcome sent through the commands topic is what completed it
    assert [line.split()[1] for line in runs.read_text().splitlines()] == ["1"], "ran once"
    resent = [(o.activity_seq, o.attempt) for o in _outcomes(kafka_config, layout, "victim")]
    assert (2, 1) in resent, resent
    history = _history(kafka_config, layout, "victim")
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert not [e for e in history if isinstance(e, ev.ActivityAttemptFailed)]
    completed = [e for e in history if isinstance(e, ev.ActivityCompleted)]
    assert [(e.activity_seq, e.attempt) for e in completed] == [(1, 1), (2, 1)]
    assert [type(e).__name__ for e in history].count("WorkflowCompleted") == 1
    assert len(_results(kafka_config, layout, "victim")) == 1
    print(f"the run ended {took:.1f}s after the release")  # with -s


def _read_uncommitted(config: dict[str, Any], topic: str, partitions: int) -> list[Message]:
    """Every record of ``topic`` up to its end, those of open transactions included."""
    consumer = Consumer({**config, "group.id": "uncommitted-reader",
                         "isolation.level": "read_uncommitted", "enable.auto.commit": False})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
                for p in range(partitions)}
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got: list[Message] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            consumer.position([TopicPartition(topic, p)])[0].offset < end
            for p, end in ends.items() if end > 0
        ):
            got += [m for m in consumer.consume(500, 0.2) if m.error() is None]
        return got
    finally:
        consumer.close()


def _events_of(messages: list[Message], workflow_id: str) -> list[ev.Event]:
    """The history events of ``workflow_id`` among ``messages`` (snapshots left out)."""
    prefix = f"{workflow_id}/".encode()
    return [
        WIRE.decode_event(headers_of(m), m.value()).record.event
        for m in messages
        if (m.key() or b"").startswith(prefix) and b"/snapshot" not in (m.key() or b"")
    ]


@pytest.mark.timeout(300)
def test_records_sent_ahead_of_their_commit_stay_invisible_and_a_crash_aborts_them(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    env: dict[str, str],
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    """A batch waiting for a handed outcome has its records produced into its open
    transaction (tests/integration/handoff_long_hold_worker.py makes it wait a minute).
    Read committed, nothing of them shows; the process is killed with the transaction
    open; the next worker under the same id aborts it, reads the step's outcome command
    again, and the run completes once with a gapless history."""
    runs, release = Path(env["HANDOFF_RUNS_FILE"]), Path(env["HANDOFF_RELEASE_FILE"])
    runs.touch()
    log = tmp_path / "first.log"
    worker_id = ["--worker-id", f"{topic_prefix}-w"]
    common = ["worker", "--sagas", SAGAS, "--task-queue", QUEUE, *worker_id]
    first = _spawn_patched("handoff_long_hold_worker", common, env, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        _start(kafka_config, layout, "ahead", "handoff.stop")
        _wait("the blocking step started", lambda: runs.read_text() != "", 120, tmp_path)
        _wait("the held batch sent ahead", lambda: "sent ahead" in log.read_text(), 30, tmp_path)

        # step 1's completion and step 2's schedule are in the log, in a transaction
        # still open: read committed, the run has not got past step 1's schedule
        sent = _events_of(_read_uncommitted(kafka_config, layout.history, SHARDS), "ahead")
        assert any(isinstance(e, ev.ActivityScheduled) and e.activity_seq == 2 for e in sent)
        committed = _events_of(read_topic(kafka_config, layout.history, SHARDS, 3), "ahead")
        assert committed, "the run's start was committed before"
        assert not [e for e in committed if isinstance(e, ev.ActivityCompleted)], committed
        assert _results(kafka_config, layout, "ahead") == []

        first.kill()
        first.wait(30)
        release.touch()
        second = spawn_saga(common, env, tmp_path / "second.log")
        assert _result(kafka_config, layout, "ahead") == "ahead+ released"
    finally:
        _kill(first, second)

    history = _history(kafka_config, layout, "ahead")
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    completed = [(e.activity_seq, e.attempt) for e in history
                 if isinstance(e, ev.ActivityCompleted)]
    assert completed == [(1, 1), (2, 1)], completed
    assert [type(e).__name__ for e in history].count("WorkflowCompleted") == 1
    assert len(_results(kafka_config, layout, "ahead")) == 1
    # the schedule of step 2 was aborted with the kill: decided again, it ran again
    # under the same idempotency key (at most twice, as activities are)
    keys = {line.split()[0] for line in runs.read_text().splitlines()}
    assert len(keys) == 1 and len(runs.read_text().splitlines()) <= 2
