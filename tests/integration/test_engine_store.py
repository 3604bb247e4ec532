"""The shard store on real Kafka: a restart on the same disk reads only the tail, a
standby copy takes over warm, and memory holds no sleeping run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator import workflow
from orchestrator.client import Client
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from orchestrator.worker.shard.store import ShardStore, StoreMemory, StoreOptions

pytestmark = pytest.mark.integration
SHARDS = 4
QUEUE = "store"


@workflow.defn(name="store.sleeper")
async def sleeper(ctx: workflow.WorkflowContext, seconds: float) -> str:
    got: list[str] = []
    ctx.set_signal_handler("poke", got.append)
    await ctx.wait_condition(lambda: bool(got), timeout=timedelta(seconds=seconds))
    return got[0] if got else "timer"


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    return layout


@pytest.fixture
def client(kafka_config: dict[str, Any], layout: TopicLayout) -> Iterator[Client]:
    with Client(kafka_config, layout=layout) as c:
        yield c


def engine(
    kafka_config: dict[str, Any], layout: TopicLayout, state: Path, name: str, **kw: Any
) -> EngineWorker:
    options = ProcessorOptions(worker_id=name, transaction_timeout_ms=5000, **kw)
    return EngineWorker(kafka_config, layout, [sleeper], options=options, state_dir=state)


def wait_for(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def restored_records(worker: EngineWorker) -> int:
    return sum(r.records for r in worker.processor.metrics.restores)


def test_restart_on_the_same_disk_reads_only_the_tail(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client, tmp_path: Path
) -> None:
    with engine(kafka_config, layout, tmp_path, "e1") as first:
        handles = [
            client.start(sleeper, 3600.0, id=f"r-{i}", task_queue=QUEUE, wait_started=30)
            for i in range(40)
        ]
        wait_for(lambda: all(len(s.executions) == 0 for s in first.shards.values()), 20,
                 "sleeping runs to leave memory")
    with engine(kafka_config, layout, tmp_path, "e1") as second:
        wait_for(lambda: len(second.processor.owned_shards) == SHARDS, 30, "all shards")
        assert restored_records(second) == 0, "a restart on the same disk re-read history"
        for h in handles[:5]:
            h.signal("poke", "after restart")
        assert [h.result(timeout=30) for h in handles[:5]] == ["after restart"] * 5
    with engine(kafka_config, layout, tmp_path / "fresh", "e2") as rebuilt:
        wait_for(lambda: len(rebuilt.processor.owned_shards) == SHARDS, 30, "all shards")
        assert restored_records(rebuilt) >= 40 * 3, "a new disk must rebuild from the log"
        wait_for(lambda: not any(s.recovery.pending for s in rebuilt.shards.values()), 30,
                 "the rebuilt runs to be recovered")
        time.sleep(0.5)  # a cycle or two: what recovery wrote reaches the stores
    # what the recovery found (each sleeping run's timer) was written to disk although
    # it made no record to commit: a restart does not replay those runs again
    memory = StoreMemory(StoreOptions(tmp_path / "fresh"))
    for partition in range(SHARDS):
        store = ShardStore.open(memory, layout.history, partition)
        try:
            assert store.first(b"v") is None, "runs left to recover after a clean stop"
            assert store.first(b"t") is not None or partition not in {
                shard_for(f"r-{i}", SHARDS) for i in range(6, 40)
            }, "no timer indexed"
        finally:
            store.close()
    with engine(kafka_config, layout, tmp_path / "fresh", "e2"):
        handles[5].signal("poke", "after rebuild")
        assert handles[5].result(timeout=30) == "after rebuild"


def test_a_standby_copy_takes_over_warm_and_fires_the_timers(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client, tmp_path: Path
) -> None:
    owner = engine(kafka_config, layout, tmp_path / "a", "owner").start()
    try:
        wait_for(lambda: len(owner.processor.owned_shards) == SHARDS, 30, "the owner's shards")
        handles = [
            client.start(sleeper, 12.0, id=f"s-{i}", task_queue=QUEUE, wait_started=30)
            for i in range(30)
        ]
        with engine(
            kafka_config, layout, tmp_path / "b", "standby", standby=True,
            standby_warm_interval_s=0.5,
        ) as standby:
            # the group may give the newcomer some shards at once; the rest it stands by for
            wait_for(
                lambda: len(standby.processor.standby_shards)
                + len(standby.processor.owned_shards)
                == SHARDS,
                30,
                "standby copies",
            )
            time.sleep(3)  # the standby tails and recomputes timers
            before = len(standby.processor.metrics.restores)
            owner.stop()
            wait_for(lambda: len(standby.processor.owned_shards) == SHARDS, 30, "a takeover")
            promoted = sum(r.records for r in standby.processor.metrics.restores[before:])
            assert promoted < 30, f"the standby read {promoted} records to take over"
            assert {h.result(timeout=40) for h in handles} == {"timer"}
    finally:
        owner.stop()


def test_signal_with_start_on_a_running_id_signals_that_run(
    kafka_config: dict[str, Any], layout: TopicLayout, client: Client, tmp_path: Path
) -> None:
    with engine(kafka_config, layout, tmp_path, "sws"):
        first = client.start(sleeper, 3600.0, id="sws-1", task_queue=QUEUE, wait_started=30)
        again = client.start(
            sleeper, 3600.0, id="sws-1", task_queue=QUEUE, wait_started=30,
            start_signal="poke", start_signal_args=["with start"],
        )
        assert again.run_id == first.run_id
        assert first.result(timeout=30) == "with start"
