"""The visibility read side (VisibilityStore) on a real PostgreSQL: rows written
directly into the runs table, read back through list/search/get/counts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from orchestrator.cli import main
from orchestrator.visibility.schema import apply_schema
from orchestrator.visibility.store import VisibilityStore, decode_cursor

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _insert(dsn: str, rows: list[dict[str, Any]], table: str = "saga_runs") -> None:
    with psycopg.connect(dsn) as conn:
        apply_schema(conn, table)
        for r in rows:
            conn.execute(
                f"INSERT INTO {table} (workflow_id, run_id, workflow_type, task_queue, status,"
                " start_time, close_time, current_step, history_length, search_attributes,"
                " memo, error, parked, shard)"
                " VALUES (%s,%s,%s,'q',%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                [
                    r["wf"],
                    r.get("run", "r1"),
                    r.get("type", "transfer"),
                    r["status"],
                    r["start"],
                    r.get("close"),
                    r.get("step"),
                    r.get("len", 3),
                    Jsonb(r.get("sa", {})),
                    Jsonb({"note": "hi"}),
                    r.get("error"),
                    r.get("parked"),
                    r.get("shard", 0),
                ],
            )


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(7):
        rows.append(
            {
                "wf": f"wf-{i}",
                "status": "RUNNING" if i % 2 else "COMPLETED",
                "type": "transfer" if i < 5 else "refund",
                "start": T0 + timedelta(seconds=i),
                "close": None if i % 2 else T0 + timedelta(seconds=i, milliseconds=500),
                "step": "debit" if i % 2 else None,
                "sa": {"customer": f"c{i % 3}", "amount": i * 10},
            }
        )
    # a workflow id with two runs: the older one continued as new
    rows.append({"wf": "wf-can", "run": "a", "status": "CONTINUED_AS_NEW", "start": T0})
    rows.append({"wf": "wf-can", "run": "b", "status": "RUNNING", "start": T0 + timedelta(1)})
    return rows


async def test_list_filters_and_pages_newest_first(database: str) -> None:
    _insert(database, _rows())
    async with VisibilityStore(database) as store:
        page, cursor = await store.list_runs(limit=4)
        assert [r.workflow_id for r in page] == ["wf-can", "wf-6", "wf-5", "wf-4"]
        assert cursor is not None
        seen = [r.workflow_id for r in page]
        while cursor is not None:
            page, cursor = await store.list_runs(limit=4, after=cursor)
            seen += [r.workflow_id for r in page]
        # wf-can/a and wf-0 started at the same instant: ties go by workflow id, descending
        assert seen == ["wf-can", *(f"wf-{i}" for i in range(6, 0, -1)), "wf-can", "wf-0"]

        running, _ = await store.list_runs(status="running")
        assert {r.workflow_id for r in running} == {"wf-1", "wf-3", "wf-5", "wf-can"}
        refunds, _ = await store.list_runs(workflow_type="refund", status="COMPLETED")
        assert [r.workflow_id for r in refunds] == ["wf-6"]

        c0, _ = await store.list_runs(search={"customer": "c0"})
        assert [r.workflow_id for r in c0] == ["wf-6", "wf-3", "wf-0"]
        both, _ = await store.list_runs(search={"customer": "c1", "amount": 40})
        assert [r.workflow_id for r in both] == ["wf-4"]
        none, cursor = await store.list_runs(search={"customer": "nobody"})
        assert (none, cursor) == ([], None)


async def test_list_by_start_time_range_and_parked(database: str) -> None:
    rows = _rows()
    rows[3]["parked"] = "non-determinism: expected ScheduleActivity debit, code sent StartTimer"
    _insert(database, rows)
    async with VisibilityStore(database) as store:
        window, _ = await store.list_runs(
            started_after=T0 + timedelta(seconds=2), started_before=T0 + timedelta(seconds=5)
        )
        assert [r.workflow_id for r in window] == ["wf-4", "wf-3", "wf-2"]
        parked, _ = await store.list_runs(parked=True)
        assert [(r.workflow_id, r.parked) for r in parked] == [("wf-3", rows[3]["parked"])]
        others, _ = await store.list_runs(parked=False)
        assert "wf-3" not in {r.workflow_id for r in others}
        assert len(others) == len(rows) - 1


async def test_get_run_counts_and_json(database: str) -> None:
    _insert(database, _rows())
    async with VisibilityStore(database) as store:
        latest = await store.get_run("wf-can")
        assert latest is not None and latest.run_id == "b"
        old = await store.get_run("wf-can", "a")
        assert old is not None and old.status == "CONTINUED_AS_NEW"
        assert await store.get_run("missing") is None
        assert await store.get_run("wf-can", "zzz") is None

        assert await store.counts() == {"RUNNING": 4, "COMPLETED": 4, "CONTINUED_AS_NEW": 1}

        row = await store.get_run("wf-2")
        assert row is not None
        doc = row.to_json()
        assert doc["start_time"] == "2025-01-01T00:00:02+00:00"
        assert doc["close_time"] == "2025-01-01T00:00:02.500000+00:00"
        assert doc["search_attributes"] == {"customer": "c2", "amount": 20}
        assert doc["memo"] == {"note": "hi"}
        assert doc["status"] == "COMPLETED" and doc["current_step"] is None
        assert isinstance(doc["updated_at"], str)


async def test_empty_database_and_bad_arguments(database: str) -> None:
    async with VisibilityStore(database, table="other_runs") as store:
        assert await store.list_runs() == ([], None)
        assert await store.counts() == {}
        with pytest.raises(ValueError, match="limit"):
            await store.list_runs(limit=0)
        with pytest.raises(ValueError, match="cursor"):
            await store.list_runs(after="not-a-cursor")
    with pytest.raises(ValueError, match="invalid visibility table name"):
        VisibilityStore(database, table='runs"; DROP TABLE x; --')
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor("W10")  # base64 of "[]"


async def test_minute_stats_count_starts_and_closes_with_their_percentiles(database: str) -> None:
    rows: list[dict[str, Any]] = []
    # minute 0: ten transfers start; nine close in minute 1 after 100..900 ms, one fails
    for i in range(10):
        start = T0 + timedelta(seconds=50)
        rows.append(
            {
                "wf": f"t-{i}",
                "status": "FAILED" if i == 9 else "COMPLETED",
                "start": start,
                "close": start + timedelta(seconds=10, milliseconds=100 * i),
            }
        )
    rows.append({"wf": "r-0", "type": "refund", "status": "RUNNING", "start": T0 + timedelta(60)})
    rows.append(  # outside the window asked for
        {"wf": "old", "status": "COMPLETED", "start": T0 - timedelta(hours=1),
         "close": T0 - timedelta(hours=1)}
    )
    _insert(database, rows)
    async with VisibilityStore(database) as store:
        found = await store.minute_stats(T0, T0 + timedelta(minutes=5))
        by_key = {(m.workflow_type, m.minute): m for m in found}
        first = by_key[("transfer", T0)]
        assert (first.started, first.closed) == (10, 0)
        second = by_key[("transfer", T0 + timedelta(minutes=1))]
        assert (second.started, second.closed) == (0, 10)
        assert second.by_status == {"COMPLETED": 9, "FAILED": 1}
        # start-to-close 10.0 .. 10.9 s
        assert second.p50_ms == 10_450.0 and second.p99_ms is not None
        assert 10_800 < second.p99_ms <= 10_900
        assert ("refund", T0) not in by_key  # it started 60 days later
        assert [m.minute for m in found] == sorted(m.minute for m in found)
        only = await store.minute_stats(T0, T0 + timedelta(minutes=5), "refund")
        assert only == []
        doc = second.to_json()
        assert doc["start_to_close_ms"]["p50"] == 10_450.0
        assert doc["minute"] == "2025-01-01T00:01:00+00:00"


def test_saga_stats_prints_the_minutes_of_recent_runs(database: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    _insert(
        database,
        [
            {"wf": "s-1", "status": "COMPLETED", "start": now - timedelta(seconds=3),
             "close": now - timedelta(seconds=2)},
            {"wf": "s-2", "status": "RUNNING", "start": now - timedelta(seconds=1)},
        ],
    )
    out = CliRunner().invoke(
        main, ["stats", "--minutes", "5", "--json", "--database-url", database],
        catch_exceptions=False,
    )
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.splitlines()]
    assert sum(r["started"] for r in rows) == 2 and sum(r["closed"] for r in rows) == 1
    assert {r["workflow_type"] for r in rows} == {"transfer"}
    bad = CliRunner().invoke(main, ["stats", "--minutes", "0", "--database-url", database])
    assert bad.exit_code == 2 and "--minutes" in bad.output
