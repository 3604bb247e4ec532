"""Flow control on real Kafka: a dispatcher process between a queue's backlog and its
workers holds the rate limit across a kill -9 (no burst, no task lost or doubled),
keeps a backlogged key from delaying another, and lets a high priority overtake."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from orchestrator.flow.configs import read_state
from orchestrator.flow.scheduler import FlowConfig
from orchestrator.log.headers import headers_of
from orchestrator.log.topics import TopicLayout
from orchestrator.worker.activity_worker import ActivityWorker, ActivityWorkerOptions
from tests.integration import flow_helpers as fh
from tests.integration.saga_process import saga_env, spawn_saga

pytestmark = pytest.mark.integration

QUEUE = "flow"


@pytest.fixture
def layout(topic_prefix: str) -> TopicLayout:
    return TopicLayout(prefix=topic_prefix, shards=4)


@pytest.fixture
def producer(kafka_config: dict[str, Any]) -> Producer:
    return Producer({**kafka_config, "linger.ms": 5})


@pytest.fixture
def dispatchers(
    kafka_config: dict[str, Any], topic_prefix: str, tmp_path: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def _dispatcher(
    kafka_config: dict[str, Any], prefix: str, tmp_path: Path
) -> subprocess.Popen[bytes]:
    env = saga_env(kafka_config["bootstrap.servers"], prefix, 4)
    return spawn_saga(["dispatcher", QUEUE, "--cycle-ms", "10"], env, tmp_path / "dispatcher.log")


def _workers(kafka_config: dict[str, Any], layout: TopicLayout, n: int) -> list[ActivityWorker]:
    return [
        ActivityWorker(
            kafka_config,
            QUEUE,
            [fh.flow_nap],
            layout=layout,
            options=ActivityWorkerOptions(max_in_flight=4, commit_interval_s=0.05),
        ).start()
        for _ in range(n)
    ]


def _stop(workers: list[ActivityWorker]) -> None:
    for w in workers:
        w.stop()
    for w in workers:
        w.join(30)


def test_rate_limit_holds_across_a_dispatcher_kill_and_releases_each_task_once(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    producer: Producer,
    topic_prefix: str,
    tmp_path: Path,
    dispatchers: list[subprocess.Popen[bytes]],
) -> None:
    rate, burst = 20.0, 40  # a burst far above what a restart's downtime refills
    fh.configure(kafka_config, layout, FlowConfig(queue=QUEUE, rate=rate, burst=burst, window=0))
    sent = fh.send_tasks(producer, layout, QUEUE, 600)
    dispatchers.append(_dispatcher(kafka_config, topic_prefix, tmp_path))
    time.sleep(8)
    os.kill(dispatchers[0].pid, signal.SIGKILL)  # mid-stream, inside a release cycle or not
    dispatchers[0].wait(10)
    killed_at = time.time()
    dispatchers.append(_dispatcher(kafka_config, topic_prefix, tmp_path))
    time.sleep(8)
    os.kill(dispatchers[1].pid, signal.SIGKILL)
    dispatchers[1].wait(10)
    end = time.time()
    released = fh.read_released(kafka_config, layout.task_queue(QUEUE), 10_000, 8)
    times = [r.time_s for r in released]
    assert times, (tmp_path / "dispatcher.log").read_text()
    span = end - times[0]
    # over the whole run (two dispatchers, a kill between) the bucket's bound holds:
    # rate * span + one burst. A restart from a full bucket would add another burst
    # (minus the ~1.5 s of downtime's refill): the restart restored the bucket's level
    assert len(times) <= rate * span + burst + 1, (len(times), rate * span + burst)
    after = [t for t in times if t >= killed_at]
    assert fh.max_in_window(after, 1.0) <= rate + burst
    assert len(after) >= rate * 4  # and it went on releasing
    # steady rate between the first burst and the kill: within 10%
    steady = [t for t in times if times[0] + 1 <= t < killed_at - 0.5]
    measured = (len(steady) - 1) / (steady[-1] - steady[0])
    assert abs(measured - rate) / rate < 0.10, measured
    # drain the rest fast: each task released exactly once across both kills
    fh.configure(kafka_config, layout, FlowConfig(queue=QUEUE, rate=2000, burst=100, window=0))
    dispatchers.append(_dispatcher(kafka_config, topic_prefix, tmp_path))
    released = fh.read_released(kafka_config, layout.task_queue(QUEUE), len(sent), 60)
    counts = collections.Counter(r.ce_id for r in released)
    assert sorted(counts) == sorted(sent)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1][:5]
    state = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = read_state(kafka_config, layout, QUEUE)
        if state is not None and state.released >= len(sent):
            break
        time.sleep(0.5)
    assert state is not None
    assert state.released == len(sent)
    assert state.throttled > 0
    assert state.pending == []


@pytest.mark.timeout(60)
def test_each_fairness_key_keeps_to_its_own_rate_below_the_queue_rate(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    producer: Producer,
    topic_prefix: str,
    tmp_path: Path,
    dispatchers: list[subprocess.Popen[bytes]],
) -> None:
    key_rate = 10.0
    fh.configure(
        kafka_config,
        layout,
        FlowConfig(queue=QUEUE, rate=50.0, burst=5, key_rate=key_rate, key_burst=1, window=0),
    )
    keys = {ce_id: key for key in ("A", "B") for ce_id in fh.send_tasks(
        producer, layout, QUEUE, 200, key=key
    )}  # fmt: skip
    dispatchers.append(_dispatcher(kafka_config, topic_prefix, tmp_path))
    deadline = time.monotonic() + 30
    while read_state(kafka_config, layout, QUEUE) is None and time.monotonic() < deadline:
        time.sleep(0.2)  # the dispatcher's first release
    time.sleep(10.5)
    dispatchers[0].terminate()
    dispatchers[0].wait(10)
    released = fh.read_released(kafka_config, layout.task_queue(QUEUE), 400, 5)
    assert released, (tmp_path / "dispatcher.log").read_text()
    for key in ("A", "B"):
        times = [r.time_s for r in released if keys[r.ce_id] == key]
        span = times[-1] - times[0]
        assert span > 9, (key, span)  # it released through the ~10 s measured
        measured = (len(times) - 1) / span
        assert abs(measured - key_rate) / key_rate < 0.10, (key, measured)
        assert fh.max_in_window(times, 1.0) <= key_rate + 1, key  # rate + the key's burst
    # the two keys together stayed far below the queue's 50/s: the keys' limits held them
    both = [r.time_s for r in released]
    assert (len(both) - 1) / (both[-1] - both[0]) < 2 * key_rate * 1.1
    state = read_state(kafka_config, layout, QUEUE)
    assert state is not None and state.throttled_keys.keys() == {"A", "B"}


def test_a_backlogged_key_does_not_delay_another_and_a_high_priority_overtakes(
    kafka_config: dict[str, Any],
    layout: TopicLayout,
    producer: Producer,
    topic_prefix: str,
    tmp_path: Path,
    dispatchers: list[subprocess.Popen[bytes]],
) -> None:
    fh.STARTS.clear()
    fh.configure(kafka_config, layout, FlowConfig(queue=QUEUE, window=8))
    fh.send_tasks(producer, layout, QUEUE, 3000, key="A", ms=10)
    workers = _workers(kafka_config, layout, 3)
    try:
        time.sleep(6)  # the three join the group: no rebalance pause in what is measured
        dispatchers.append(_dispatcher(kafka_config, topic_prefix, tmp_path))
        deadline = time.monotonic() + 30
        while len(fh.STARTS) < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fh.STARTS, (tmp_path / "dispatcher.log").read_text()
        for _ in range(60):  # tenant B: 20/s for 3 s, while A's backlog drains
            fh.send_tasks(producer, layout, QUEUE, 1, key="B", ms=10)
            time.sleep(0.05)
        fh.send_tasks(producer, layout, QUEUE, 1, key="A", priority=10, ms=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            keys = collections.Counter((k, p) for k, p, _ in fh.STARTS)
            if keys[("B", 0)] == 60 and keys[("A", 10)] == 1:
                break
            time.sleep(0.1)
        b = [s for k, _, s in fh.STARTS if k == "B"]
        high = [s for _, p, s in fh.STARTS if p == 10]
        a_left = 3000 - sum(1 for k, p, _ in fh.STARTS if k == "A" and p == 0)
    finally:
        _stop(workers)
    assert len(b) == 60
    assert a_left > 0  # A still had a backlog when B and the high priority went
    assert fh.percentile(b, 99) < 1.0, sorted(b)[-5:]
    assert len(high) == 1
    assert high[0] < 1.0, high


@pytest.mark.timeout(240)
def test_a_saga_on_a_flow_controlled_queue_through_the_engine_and_the_cli(
    kafka_config: dict[str, Any], topic_prefix: str, tmp_path: Path
) -> None:
    from orchestrator.client import Client
    from tests.integration.flow_sagas import QUEUE as FLOWQ
    from tests.integration.flow_sagas import tenant_step
    from tests.integration.kafka_reading import read_topic

    layout = TopicLayout(prefix=topic_prefix, shards=4)
    env = saga_env(kafka_config["bootstrap.servers"], topic_prefix, 4)
    configure = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "queue", "configure", FLOWQ,
         "--rate", "100", "--burst", "5", "--weight", "t1=3"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert configure.returncode == 0, configure.stderr
    assert "rate 100/s burst 5" in configure.stdout
    procs = [
        spawn_saga(["worker", "--sagas", "tests.integration.flow_sagas", "--task-queue", FLOWQ],
                   env, tmp_path / "worker.log"),
        spawn_saga(["dispatcher", FLOWQ], env, tmp_path / "dispatcher.log"),
    ]  # fmt: skip
    try:
        with Client(kafka_config, layout=layout) as client:
            handle = client.start(tenant_step, "t1", id="flow-1", task_queue=FLOWQ)
            assert handle.result(timeout=120) == ["t1@1", "again@1"]
            # the client verbs: change the config, read it and the dispatcher's state
            client.configure_task_queue(FlowConfig(queue=FLOWQ, rate=200.0, burst=5))
            config, state = client.describe_task_queue(FLOWQ)
            assert config is not None and config.rate == 200.0
            assert state is None or state.released <= 2
            assert client.describe_task_queue("no-such-queue") == (None, None)
        backlog = [
            fh.WIRE.decode_task(headers_of(m), m.value()).record
            for m in read_topic(kafka_config, layout.backlog(FLOWQ), 1)
        ]
        assert [(t.priority, t.fairness_key) for t in backlog] == [(7, "t1"), (0, "t1")]
        deadline = time.monotonic() + 30
        while True:
            described = subprocess.run(
                [sys.executable, "-m", "orchestrator.cli", "queue", "describe", FLOWQ],
                env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            if "released   2" in described.stdout or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert described.returncode == 0, described.stderr
        assert "released   2" in described.stdout, described.stdout
        assert "rate 200/s burst 5" in described.stdout
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
