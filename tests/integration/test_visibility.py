"""The visibility projector on real Kafka and PostgreSQL: engine runs become rows.

Sagas run on an in-process engine worker and activity worker; the projector folds
their history into PostgreSQL; a rebuild from the raw log must always agree.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from confluent_kafka.admin import AdminClient
from psycopg import sql

from orchestrator import activity, workflow
from orchestrator.client import Client
from orchestrator.exceptions import ApplicationError
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.retry import RetryPolicy
from orchestrator.visibility.compare import check
from orchestrator.visibility.lag import wait_caught_up
from orchestrator.visibility.projector import Projector
from orchestrator.visibility.store import RunRow, VisibilityStore
from orchestrator.worker.activity_worker import ActivityWorker
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions

pytestmark = pytest.mark.integration

SHARDS = 2
QUEUE = "vis"
GATE = threading.Event()  # vis.reserve waits for it: runs stay RUNNING at that step
CHARGE_GATE = threading.Event()  # and vis.charge for this one


@activity.defn(name="vis.reserve")
def reserve(item: str) -> str:
    GATE.wait(30)
    return f"R-{item}"


@activity.defn(name="vis.release")
def release(item: str) -> None:
    return None


@activity.defn(name="vis.charge")
def charge(item: str) -> str:
    CHARGE_GATE.wait(30)
    if item.startswith("bad"):
        raise ApplicationError(f"card declined for {item}", non_retryable=True)
    return f"C-{item}"


STEP: dict[str, Any] = {
    "task_queue": QUEUE,
    "start_to_close": timedelta(seconds=40),
    "retry": RetryPolicy(initial=timedelta(milliseconds=100), maximum=timedelta(seconds=1)),
}


@workflow.defn(name="vis.order")
async def order(ctx: workflow.WorkflowContext, item: str) -> str:
    saga = ctx.saga()
    receipt = await saga.step(reserve, item, compensate=release, **STEP)
    ctx.upsert_search_attributes({"stage": "reserved"})
    await saga.step(charge, item, **STEP)
    ctx.upsert_search_attributes({"stage": "charged"})
    return str(receipt)


def wait_until(what: str, probe: Callable[[], Any], timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


def rows(dsn: str, table: str = "saga_runs") -> dict[str, dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        query = sql.SQL(
            "SELECT workflow_id, status, current_step, search_attributes, error, close_time FROM {}"
        ).format(sql.Identifier(table))
        cur = conn.execute(query)
        return {
            r[0]: {"status": r[1], "step": r[2], "sa": r[3], "error": r[4], "closed": r[5]}
            for r in cur.fetchall()
        }


@pytest.fixture
def layout(admin: AdminClient, topic_prefix: str) -> TopicLayout:
    layout = TopicLayout(prefix=topic_prefix, shards=SHARDS)
    ensure_topics(admin, layout, [QUEUE])
    return layout


@pytest.fixture
def engine(
    kafka_config: dict[str, Any], layout: TopicLayout, topic_prefix: str
) -> Iterator[EngineWorker]:
    options = ProcessorOptions(worker_id=f"{topic_prefix}-e", transaction_timeout_ms=5000)
    GATE.clear()
    CHARGE_GATE.clear()
    with (
        EngineWorker(kafka_config, layout, [order], options=options, retention_ms=4000) as w,
        ActivityWorker(kafka_config, QUEUE, [reserve, release, charge], layout=layout),
    ):
        yield w
        GATE.set()
        CHARGE_GATE.set()


def test_rows_follow_runs_and_agree_with_a_rebuild(
    kafka_config: dict[str, Any], layout: TopicLayout, engine: EngineWorker, database: str
) -> None:
    items = {"o-1": "book", "o-2": "lamp", "o-3": "bad-card"}
    with (
        Projector(database, kafka_config, layout) as projector,
        Client(kafka_config, layout=layout) as client,
    ):
        for wf_id, item in items.items():
            customer = "acme" if wf_id != "o-2" else "globex"
            client.start(
                order, item, id=wf_id, task_queue=QUEUE, search_attributes={"customer": customer}
            )
        # every run is visible while it waits in its first step
        running = wait_until(
            "three RUNNING rows at vis.reserve",
            lambda: (
                (r := rows(database))
                and len(r) == 3
                and all(v["step"] == "vis.reserve" and v["status"] == "RUNNING" for v in r.values())
                and r
            ),
        )
        assert all(v["closed"] is None for v in running.values())
        assert running["o-1"]["sa"] == {"customer": "acme"}
        GATE.set()  # on to the second step
        charging = wait_until(
            "three rows at vis.charge",
            lambda: (
                (r := rows(database))
                and all(v["step"] == "vis.charge" and v["status"] == "RUNNING" for v in r.values())
                and r
            ),
        )
        assert charging["o-2"]["sa"] == {"customer": "globex", "stage": "reserved"}
        CHARGE_GATE.set()
        for wf_id in ("o-1", "o-2"):
            client.get_handle(wf_id).result(timeout=30)
        final = wait_until(
            "final statuses",
            lambda: (
                (r := rows(database))
                and all(v["status"] not in ("RUNNING", "COMPENSATING") for v in r.values())
                and r
            ),
        )
        assert projector.error is None and projector.metrics.undecodable == 0
        # past the last transaction markers too (stored once the projector idles)
        assert not wait_caught_up(database, kafka_config, layout, timeout_s=20)
    assert {k: v["status"] for k, v in final.items()} == {
        "o-1": "COMPLETED",
        "o-2": "COMPLETED",
        "o-3": "FAILED",
    }
    assert final["o-1"]["sa"] == {"customer": "acme", "stage": "charged"}
    assert final["o-3"]["sa"] == {"customer": "acme", "stage": "reserved"}
    assert "card declined for bad-card" in final["o-3"]["error"]
    assert all(v["step"] is None and v["closed"] is not None for v in final.values())

    result = check(database, kafka_config, layout)
    assert result.equal, [str(d) for d in result.differences]
    assert result.live_rows == 3 and not result.behind


async def test_store_lists_and_searches_projected_runs(
    kafka_config: dict[str, Any], layout: TopicLayout, engine: EngineWorker, database: str
) -> None:
    GATE.set()
    CHARGE_GATE.set()
    with Projector(database, kafka_config, layout), Client(kafka_config, layout=layout) as client:
        for i in range(4):
            client.start(
                order,
                "bad" if i == 3 else f"item-{i}",
                id=f"s-{i}",
                task_queue=QUEUE,
                search_attributes={"customer": f"c{i % 2}", "priority": i},
            )
        async with VisibilityStore(database) as store:
            deadline = time.monotonic() + 30
            counts: dict[str, int] = {}
            while time.monotonic() < deadline:
                counts = await store.counts()
                if counts == {"COMPLETED": 3, "FAILED": 1}:
                    break
                await asyncio.sleep(0.1)
            assert counts == {"COMPLETED": 3, "FAILED": 1}
            c0, _ = await store.list_runs(search={"customer": "c0"})
            assert sorted(r.workflow_id for r in c0) == ["s-0", "s-2"]
            failed, _ = await store.list_runs(status="FAILED", workflow_type="vis.order")
            assert [r.workflow_id for r in failed] == ["s-3"]
            one: RunRow | None = await store.get_run("s-1")
            assert one is not None
            assert one.search_attributes == {"customer": "c1", "priority": 1, "stage": "charged"}
            assert one.history_length > 5 and one.shard in range(SHARDS)
            assert one.to_json()["status"] == "COMPLETED"


def test_retention_tombstones_remove_rows(
    kafka_config: dict[str, Any], layout: TopicLayout, engine: EngineWorker, database: str
) -> None:
    GATE.set()
    CHARGE_GATE.set()
    with Projector(database, kafka_config, layout), Client(kafka_config, layout=layout) as client:
        client.start(order, "short-lived", id="t-1", task_queue=QUEUE)
        client.get_handle("t-1").result(timeout=30)
        wait_until(
            "a COMPLETED row", lambda: rows(database).get("t-1", {}).get("status") == "COMPLETED"
        )
        # the engine's 4 s retention ends: tombstones for every event and the snapshot
        wait_until("the row to go", lambda: "t-1" not in rows(database), timeout_s=20)
    result = check(database, kafka_config, layout)
    assert result.equal and result.live_rows == 0 and result.rebuild.records > 0
