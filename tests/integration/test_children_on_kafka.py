"""Child workflows and continue-as-new on real Kafka: results reach the parent across
shards, a failed child is compensated by the parent's saga, a counter continues as
new and the client gets its last run's result, a next run of a type the worker
lacks waits parked for one that has it, an engine SIGKILLed while children run
still finishes every parent exactly once; every history replays."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient

from orchestrator.cli import main
from orchestrator.client import Client, ReplyTimeoutError
from orchestrator.engine import events as ev
from orchestrator.engine.replayer import Replayer
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.engine_shard import result_correlation_id
from orchestrator.worker.shard.processor import ProcessorOptions
from orchestrator.worker.shard.records import headers_of
from tests.integration import child_sagas as kids
from tests.integration.kafka_reading import read_topic
from tests.integration.saga_process import saga_env, spawn_saga

pytestmark = pytest.mark.integration
SHARDS = 4
QUEUE = "kids"
WIRE = WireFormat()
WORKFLOWS: list[Any] = [
    kids.double,
    kids.pay,
    kids.parent_of_two,
    kids.order,
    kids.counter,
    kids.parent_of_counter,
    kids.twins,
    kids.handover,
    kids.waits_for_go,
    kids.cancels_child,
    kids.waits_on_sleeper,
]
REPLAYER = Replayer(workflows=[*WORKFLOWS, kids.later])

Runs = dict[str, list[ev.Event]]  # run id -> events in log order


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    kids.LEDGER.clear()
    return layout


@pytest.fixture
def client(kafka_config: dict[str, Any], layout: TopicLayout) -> Iterator[Client]:
    with Client(kafka_config, layout=layout) as c:
        yield c


def engine(kafka_config: dict[str, Any], layout: TopicLayout, *more: Any) -> EngineWorker:
    options = ProcessorOptions(worker_id=f"{layout.prefix}-engine", transaction_timeout_ms=5000)
    return EngineWorker(kafka_config, layout, [*WORKFLOWS, *more], options=options)


def histories(config: dict[str, Any], layout: TopicLayout) -> dict[str, Runs]:
    """workflow id -> run id -> events, as the history topic holds them."""
    found: dict[str, Runs] = defaultdict(dict)
    for msg in read_topic(config, layout.history, SHARDS):
        if msg.value() is None:
            continue
        record = WIRE.decode_history(headers_of(msg), msg.value()).record
        if isinstance(record, rec.WorkflowSnapshot):
            continue
        found[record.workflow_id].setdefault(record.run_id, []).append(record.event)
    return found


def result_replies(config: dict[str, Any], layout: TopicLayout) -> Counter[str]:
    """How many RESULT replies each workflow id got."""
    seen: Counter[str] = Counter()
    for msg in read_topic(config, layout.replies, SHARDS):
        reply = WIRE.decode_reply(headers_of(msg), msg.value()).record
        if reply.kind is rec.ReplyKind.RESULT:
            assert reply.correlation_id == result_correlation_id(reply.workflow_id)
            seen[reply.workflow_id] += 1
    return seen


def start_commands(config: dict[str, Any], layout: TopicLayout) -> Counter[str]:
    """How many start commands each workflow id got on the commands topic."""
    seen: Counter[str] = Counter()
    for msg in read_topic(config, layout.commands, SHARDS):
        command = WIRE.decode_command(headers_of(msg), msg.value()).record
        if isinstance(command, rec.StartWorkflow):
            seen[command.workflow_id] += 1
    return seen


def only_run(runs: Runs) -> list[ev.Event]:
    assert len(runs) == 1, f"expected one run, got {sorted(runs)}"
    return next(iter(runs.values()))


def assert_gapless_and_replays(events: list[ev.Event]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    result = REPLAYER.replay(events)
    assert result.events == len(events)
    assert result.status.is_terminal


def ids_on_distinct_shards(prefix: str, count: int) -> list[str]:
    """``count`` workflow ids with pairwise different shards."""
    chosen: dict[int, str] = {}
    for n in itertools.count():
        wf_id = f"{prefix}-{n}"
        chosen.setdefault(shard_for(wf_id, SHARDS), wf_id)
        if len(chosen) == count:
            return list(chosen.values())
    raise AssertionError("unreachable")


def test_parent_gets_the_results_of_two_children_on_other_shards(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client
) -> None:
    parent_id, kid_a, kid_b = ids_on_distinct_shards("family", 3)
    with engine(kafka_config, layout) as worker:
        began = time.monotonic()
        handle = client.start(
            kids.parent_of_two, args=[[kid_a, kid_b], [3, 4], 200], id=parent_id, task_queue=QUEUE
        )
        assert handle.result(timeout=30) == [6, 8]
        took = time.monotonic() - began
        assert worker.error is None
    print(f"parent with two 200 ms children: {took * 1000:.0f} ms start to result")

    logs = histories(kafka_config, layout)
    parent = only_run(logs[parent_id])
    assert_gapless_and_replays(parent)
    parent_run = parent[0].run_id if isinstance(parent[0], ev.WorkflowStarted) else ""
    child_events = [e for e in parent if type(e).__name__.startswith("ChildWorkflow")]
    child_runs: dict[str, str] = {}
    for child_seq, kid in ((1, kid_a), (2, kid_b)):
        mine = [e for e in child_events if getattr(e, "child_seq", None) == child_seq]
        assert [type(e).__name__ for e in mine] == [
            "ChildWorkflowInitiated",
            "ChildWorkflowStarted",
            "ChildWorkflowCompleted",
        ]
        initiated, started, _ = mine
        assert isinstance(initiated, ev.ChildWorkflowInitiated) and initiated.workflow_id == kid
        # the child has its own history, one run, naming its parent; the parent
        # recorded that run's id
        child = only_run(logs[kid])
        assert_gapless_and_replays(child)
        first = child[0]
        assert isinstance(first, ev.WorkflowStarted) and isinstance(
            started, ev.ChildWorkflowStarted
        )
        assert (first.parent_workflow_id, first.parent_run_id) == (parent_id, parent_run)
        assert started.run_id == first.run_id
        assert isinstance(child[-1], ev.WorkflowCompleted)
        child_runs[kid] = first.run_id
    with engine(kafka_config, layout):  # a new owner answers from a store rebuilt from the log
        for kid, run_id in child_runs.items():
            described = client.get_handle(kid).describe(timeout=30)
            assert (described.run_id, described.status) == (run_id, rec.WorkflowStatus.COMPLETED)
    assert result_replies(kafka_config, layout) == Counter({parent_id: 1, kid_a: 1, kid_b: 1})


def test_a_failed_child_is_compensated_by_the_parents_saga(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client
) -> None:
    with (
        engine(kafka_config, layout),
        ActivityWorker(kafka_config, QUEUE, [kids.reserve, kids.release], layout=layout),
    ):
        refused = client.start(kids.order, args=["o-150", 150], id="o-150", task_queue=QUEUE)
        accepted = client.start(kids.order, args=["o-50", 50], id="o-50", task_queue=QUEUE)
        outcome = refused.result(timeout=30)
        assert accepted.result(timeout=30) == "paid 50"
    assert outcome == "compensated: ApplicationError: amount 150 over the limit"
    assert sorted(kids.LEDGER) == ["release o-150", "reserve o-150", "reserve o-50"]

    logs = histories(kafka_config, layout)
    parent = only_run(logs["o-150"])
    assert_gapless_and_replays(parent)
    failed = [e for e in parent if isinstance(e, ev.ChildWorkflowFailed)]
    assert len(failed) == 1 and failed[0].failure.type == "LimitExceeded"
    # the compensation ran after the child's failure was recorded
    release = next(
        e
        for e in parent
        if isinstance(e, ev.ActivityScheduled) and e.activity_type == "kids.release"
    )
    assert release.seq > failed[0].seq
    child = only_run(logs["o-150/payment"])
    assert_gapless_and_replays(child)
    assert isinstance(child[-1], ev.WorkflowFailed)
    with engine(kafka_config, layout):
        described = client.get_handle("o-150/payment").describe(timeout=30)
    assert described.status is rec.WorkflowStatus.FAILED


def assert_chain(runs: Runs, final: int) -> list[list[ev.Event]]:
    """The runs of a counter, linked first to last; each gapless and replayable."""
    by_prev = {}
    for events in runs.values():
        first = events[0]
        assert isinstance(first, ev.WorkflowStarted)
        by_prev[first.continued_from_run_id] = events
    chain, previous = [], None
    while previous in by_prev:
        events = by_prev.pop(previous)
        assert_gapless_and_replays(events)
        chain.append(events)
        last = events[-1]
        if isinstance(last, ev.WorkflowContinuedAsNew):
            previous = events[0].run_id if isinstance(events[0], ev.WorkflowStarted) else None
            assert last.new_run_id in runs  # the run it named exists
        else:
            previous = None
    assert not by_prev, "every run belongs to the chain"
    assert [type(r[-1]).__name__ for r in chain] == ["WorkflowContinuedAsNew"] * final + [
        "WorkflowCompleted"
    ]
    return chain


def test_continue_as_new_counter_returns_the_last_runs_result(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with engine(kafka_config, layout):
        handle = client.start(kids.counter, args=[0, 5, 30], id="count-5", task_queue=QUEUE)
        assert handle.result(timeout=30) == 5
        # a chain that never waits: past the per-input limit it goes on next cycle
        quick = client.start(kids.counter, args=[0, 250, 0], id="count-250", task_queue=QUEUE)
        assert quick.result(timeout=30) == 250

    logs = histories(kafka_config, layout)
    chain = assert_chain(logs["count-5"], 5)
    assert len(chain) == 6
    last_run = chain[-1][0]
    assert isinstance(last_run, ev.WorkflowStarted)
    with engine(kafka_config, layout):  # describe, history and replay ask the owner
        described = handle.describe(timeout=30)
        latest = (last_run.run_id, rec.WorkflowStatus.COMPLETED)
        assert (described.run_id, described.status) == latest
        assert len(assert_chain(logs["count-250"], 250)) == 251
        # the CLI shows and replays the latest run by default, any run with --run-id
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_config["bootstrap.servers"])
        monkeypatch.setenv("SAGA_TOPIC_PREFIX", layout.prefix)
        monkeypatch.setenv("SAGA_SHARDS", str(SHARDS))
        shown = saga("history", "count-5")
        assert shown.output.splitlines()[0] == f"count-5 run {last_run.run_id} COMPLETED"
        replayed = saga("replay", "count-5", "--sagas", "tests.integration.child_sagas")
        assert replayed.exit_code == 0 and "COMPLETED" in replayed.output
        first_run = chain[0][0]
        assert isinstance(first_run, ev.WorkflowStarted)
        args = ["--sagas", "tests.integration.child_sagas", "--run-id", first_run.run_id]
        replayed = saga("replay", "count-5", *args)
        assert replayed.exit_code == 0 and "CONTINUED_AS_NEW" in replayed.output
    # one RESULT per workflow id: the continued runs do not answer
    assert result_replies(kafka_config, layout) == Counter({"count-5": 1, "count-250": 1})


def test_child_that_continues_as_new_and_a_refused_duplicate_child(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client
) -> None:
    with engine(kafka_config, layout):
        parent = client.start(
            kids.parent_of_counter, args=["count-kid", 3], id="count-parent", task_queue=QUEUE
        )
        twins = client.start(kids.twins, args=["twin"], id="twins", task_queue=QUEUE)
        assert parent.result(timeout=30) == 3
        assert twins.result(timeout=30) == "2 | ChildWorkflowError"

    logs = histories(kafka_config, layout)
    parent_events = only_run(logs["count-parent"])
    assert_gapless_and_replays(parent_events)
    chain = assert_chain(logs["count-kid"], 3)
    # the parent heard of the child's first run, and got its last run's result
    started = next(e for e in parent_events if isinstance(e, ev.ChildWorkflowStarted))
    assert isinstance(chain[0][0], ev.WorkflowStarted)
    assert started.run_id == chain[0][0].run_id
    assert all(
        isinstance(run[0], ev.WorkflowStarted) and run[0].parent_workflow_id == "count-parent"
        for run in chain
    )
    # the second start of a running id was refused; the first child ran once
    twin_events = only_run(logs["twins"])
    assert_gapless_and_replays(twin_events)
    refused = next(e for e in twin_events if isinstance(e, ev.ChildWorkflowFailed))
    assert refused.child_seq == 2 and refused.failure.type == "WorkflowAlreadyStarted"
    assert len(logs["twin"]) == 1


def saga(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def latest_snapshot(
    config: dict[str, Any], layout: TopicLayout, wf_id: str
) -> rec.WorkflowSnapshot | None:
    found = None
    for msg in read_topic(config, layout.history, SHARDS):
        if msg.key() == f"{wf_id}/snapshot".encode() and msg.value() is not None:
            found = WIRE.decode_snapshot(headers_of(msg), msg.value()).record
    return found


def test_a_next_run_of_an_unknown_type_waits_parked_for_a_worker_that_has_it(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client
) -> None:
    with engine(kafka_config, layout):  # does not have kids.later
        handle = client.start(kids.handover, args=[1], id="handover", task_queue=QUEUE)
        deadline = time.monotonic() + 20
        while (snap := latest_snapshot(kafka_config, layout, "handover")) is None or not (
            snap.parked
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert snap.status is rec.WorkflowStatus.CONTINUED_AS_NEW
        assert "kids.later" in snap.parked
        with pytest.raises(ReplyTimeoutError):
            handle.result(timeout=1)  # continued, not finished: the client waits
    with engine(kafka_config, layout, kids.later):  # its restore starts the next run
        assert handle.result(timeout=30) == "later got 2"

    runs = assert_chain(histories(kafka_config, layout)["handover"], 1)
    first, second = runs[0][-1], runs[1][0]
    assert isinstance(first, ev.WorkflowContinuedAsNew) and isinstance(second, ev.WorkflowStarted)
    assert (second.run_id, second.workflow_type) == (first.new_run_id, "kids.later")
    assert result_replies(kafka_config, layout)["handover"] == 1


def spawn_engine(bootstrap: str, prefix: str, log_path: Path) -> subprocess.Popen[bytes]:
    # the same worker id each time: the restarted worker fences the dead one
    args = ["worker", "--sagas", "tests.integration.child_sagas", "--worker-id", f"{prefix}-engine"]
    return spawn_saga(args, saga_env(bootstrap, prefix, SHARDS), log_path)


def test_engine_sigkilled_while_children_run_finishes_each_parent_once(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client, tmp_path: Path
) -> None:
    bootstrap = kafka_config["bootstrap.servers"]
    parents = [f"kill-parent-{n}" for n in range(4)]
    children = {p: [f"{p}/kid-a", f"{p}/kid-b"] for p in parents}
    first = spawn_engine(bootstrap, layout.prefix, tmp_path / "engine-1.log")
    second: subprocess.Popen[bytes] | None = None
    try:
        handles = [
            client.start(
                kids.parent_of_two,
                args=[children[p], [1, 2], 1500],
                id=p,
                task_queue=QUEUE,
            )
            for p in parents
        ]
        # kill once a child is running (sleeping on a durable timer)
        deadline = time.monotonic() + 30
        while not any(k in histories(kafka_config, layout) for k in children[parents[0]]):
            assert time.monotonic() < deadline, (tmp_path / "engine-1.log").read_text()[-3000:]
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert not set(parents) & set(result_replies(kafka_config, layout))  # none finished
        killed_at = time.monotonic()
        second = spawn_engine(bootstrap, layout.prefix, tmp_path / "engine-2.log")
        for handle in handles:
            assert handle.result(timeout=40) == [2, 4]
        print(f"every parent done {time.monotonic() - killed_at:.1f} s after the SIGKILL")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(15)

    assert "restored shard" in (tmp_path / "engine-2.log").read_text()
    logs = histories(kafka_config, layout)
    starts = start_commands(kafka_config, layout)
    replies = result_replies(kafka_config, layout)
    for p in parents:
        assert replies[p] == 1
        parent = only_run(logs[p])
        assert_gapless_and_replays(parent)
        kinds = Counter(type(e).__name__ for e in parent)
        assert kinds["ChildWorkflowInitiated"] == kinds["ChildWorkflowStarted"] == 2
        assert kinds["ChildWorkflowCompleted"] == 2
        for kid in children[p]:
            assert starts[kid] == 1  # one start command per child: no duplicate start
            assert replies[kid] == 1
            assert_gapless_and_replays(only_run(logs[kid]))
