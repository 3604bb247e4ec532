"""The engine shard over its local store, without a broker (see shard_harness.py)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator import workflow
from orchestrator.serde import records as rec
from orchestrator.worker.shard import store as keys
from orchestrator.worker.shard.due import TimerIndex
from orchestrator.worker.shard.engine_shard import ShardTuning
from orchestrator.worker.shard.records import ShardStateLost
from orchestrator.worker.shard.store import StoreCorrupted
from orchestrator.worker.shard.view import StoreView
from tests.unit.worker.shard_harness import CONV, Harness

DAY_MS = 86_400_000


@workflow.defn(name="unit.sleeper")
async def sleeper(ctx: workflow.WorkflowContext, days: int) -> str:
    await ctx.sleep(timedelta(days=days))
    return f"slept {days}d"


@workflow.defn(name="unit.waiter")
async def waiter(ctx: workflow.WorkflowContext) -> str:
    got: list[str] = []
    ctx.set_signal_handler("go", got.append)
    await ctx.wait_condition(lambda: bool(got))
    return got[0]


@workflow.defn(name="unit.hoarder")
async def hoarder(ctx: workflow.WorkflowContext, size: int) -> str:
    await ctx.sleep(timedelta(seconds=1))
    return "x" * size


@workflow.defn(name="unit.chain")
async def chain(ctx: workflow.WorkflowContext, n: int) -> int:
    if n > 0:
        ctx.continue_as_new(n - 1)
    return n


@workflow.defn(name="unit.two_timers")
async def two_timers(ctx: workflow.WorkflowContext) -> str:
    await asyncio.gather(ctx.sleep(timedelta(days=1)), ctx.sleep(timedelta(days=2)))
    return "both"


def harness(tmp_path: Path, **kw: object) -> Harness:
    workflows = [sleeper, waiter, chain, hoarder, two_timers]
    return Harness(tmp_path / "state", workflows, **kw)  # type: ignore[arg-type]


def test_a_sleeping_run_leaves_memory_and_wakes_from_the_store(tmp_path: Path) -> None:
    h = harness(tmp_path)
    for i in range(50):
        h.start(f"s-{i}", "unit.sleeper", 30)
    h.commit()
    assert len(h.shard.executions) == 0, "sleeping runs stay in memory"
    assert h.shard.next_due_ms() == h.clock.now + 30 * DAY_MS
    h.run(advance_ms=30 * DAY_MS)
    assert h.results() == {f"s-{i}": "slept 30d" for i in range(50)}
    assert h.events_of("s-7")[-2:] == ["TimerFired", "WorkflowCompleted"]


def test_a_start_of_a_running_id_is_answered_with_the_running_run(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("dup", "unit.sleeper", 1)
    h.commit()
    h.start("dup", "unit.sleeper", 1)
    h.commit()
    starts = [r for r in h.replies if r.kind is rec.ReplyKind.START]
    assert [r.ok for r in starts] == [True, True]
    assert starts[0].run_id == starts[1].run_id
    assert h.events_of("dup").count("WorkflowStarted") == 1


def test_restart_on_the_same_disk_reads_nothing_and_keeps_every_timer(tmp_path: Path) -> None:
    h = harness(tmp_path)
    for i in range(20):
        h.start(f"s-{i}", "unit.sleeper", 1 + i % 3)
    h.commit()
    h.stop()
    h.shard = h.open_shard()
    assert h.restore() == [], "the store was up to date: nothing to read"
    h.run(advance_ms=3 * DAY_MS)
    assert len(h.results()) == 20


def test_a_fresh_disk_rebuilds_everything_from_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness(tmp_path)
    for i in range(20):
        h.start(f"s-{i}", "unit.sleeper", 2)
    h.start("w", "unit.waiter")
    h.commit()
    h.stop()
    other = harness(tmp_path / "elsewhere")
    other.history = h.history
    other.commands_offset = h.commands_offset
    read = other.restore()  # slices of 7 records: some runs' histories straddle two
    assert len(read) == len(h.history)
    left = len(list(other.shard.store.scan(b"v")))
    assert 0 < left < 21, "runs whose history a slice held whole have their timers already"
    with caplog.at_level("INFO", logger="orchestrator.worker.shard.recovery"):
        other.run()  # recovery: the others' timers are found
    assert f"shard 0: runs to recover after the restore all recovered ({left} in " in caplog.text
    other.send(rec.SignalWorkflow(workflow_id="w", signal_name="go", args=[CONV.to_payload("x")]))
    other.commit()
    other.run(advance_ms=2 * DAY_MS)
    assert other.results() == {**{f"s-{i}": "slept 2d" for i in range(20)}, "w": "x"}


def test_a_crash_after_commit_before_the_store_caught_up_loses_nothing(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("a", "unit.sleeper", 1)
    h.commit()
    checkpoint = h.shard.checkpoint
    h.start("b", "unit.sleeper", 1)
    h.start("w", "unit.waiter")
    h.commit(apply=False)  # in the log, not in the store
    h.crash()
    assert h.shard.checkpoint == checkpoint
    tail = h.restore()
    assert tail, "the tail since the checkpoint is read again"
    h.run()
    h.start("b", "unit.sleeper", 1)  # a resent start finds the run the log has
    h.commit()
    assert h.events_of("b").count("WorkflowStarted") == 1
    h.send(rec.SignalWorkflow(workflow_id="w", signal_name="go", args=[CONV.to_payload("y")]))
    h.commit()
    h.run(advance_ms=DAY_MS)
    assert h.results() == {"a": "slept 1d", "b": "slept 1d", "w": "y"}


def test_decisions_that_never_committed_are_not_in_the_store(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("lost", "unit.sleeper", 1)
    h.pending = []  # the transaction failed: nothing reached the log
    h.shard.close(discard=True)
    h.shard = h.open_shard()
    h.restore()
    h.run()
    assert h.shard.executions.get("lost") is None
    h.start("lost", "unit.sleeper", 1)  # the rewound consumer decides it again
    h.commit()
    h.run(advance_ms=DAY_MS)
    assert h.results() == {"lost": "slept 1d"}


def test_retention_tombstones_closed_runs_and_frees_the_id_after_a_restart(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path, retention_ms=60_000)
    h.start("c", "unit.chain", 0)
    h.commit()
    assert h.results() == {"c": 0}
    h.stop()
    h.shard = h.open_shard()  # the expiry index is on disk too
    h.restore()
    h.run(advance_ms=61_000)
    assert not any(k.startswith(b"c/") for k in h.compacted()), "closed run not tombstoned"
    assert h.shard.executions.get("c") is None
    h.start("c", "unit.chain", 0, id_reuse_policy=rec.IdReusePolicy.REJECT_DUPLICATE)
    h.commit()
    assert [r.ok for r in h.replies if r.kind is rec.ReplyKind.START] == [True, True]


def test_closed_runs_keep_their_events_in_the_store_until_retention(tmp_path: Path) -> None:
    h = harness(tmp_path, retention_ms=60_000)
    for i in range(30):
        h.start(f"c-{i}", "unit.chain", 2)  # three runs each, by continue-as-new
    h.commit()
    h.run()
    assert h.results() == {f"c-{i}": 0 for i in range(30)}
    store = h.shard.store
    events = {k for k, _ in store.scan(b"e")}
    runs = {keys.parse_run(k, 1)[:2] for k in events}
    assert len(runs) == 90, "every run's events, superseded runs included"
    assert len(list(store.scan(b"s"))) == 30
    rebuilt = harness(tmp_path / "elsewhere", retention_ms=60_000)
    rebuilt.history = list(h.history)
    rebuilt.compact()
    rebuilt.restore()
    assert {k for k, _ in rebuilt.shard.store.scan(b"e")} == events
    # every run's retention is known, superseded runs included
    assert len(list(rebuilt.shard.store.scan(b"r"))) == 90
    for shard in (h, rebuilt):
        shard.run(advance_ms=61_000)
        left = [k for k, _ in shard.shard.store.scan(b"") if k[:1] in b"esr"]
        assert left == [], "retention ended: nothing of the runs stays"


def test_a_wake_up_storm_fires_in_bounded_slices(tmp_path: Path) -> None:
    h = harness(tmp_path, tuning=ShardTuning(timers_per_cycle=25, timer_budget_ms=60_000))
    for i in range(100):
        h.start(f"s-{i}", "unit.sleeper", 1)
    h.commit()
    h.clock.now += DAY_MS
    fired = []
    for _ in range(4):
        h.tick()
        h.commit()
        fired.append(len(h.results()))
    assert fired == [25, 50, 75, 100]
    h.start("new", "unit.waiter")  # other commands are served between slices
    h.commit()
    assert any(r.workflow_id == "new" and r.ok for r in h.replies)


def test_a_store_ahead_of_the_log_is_rebuilt(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("a", "unit.sleeper", 1)
    h.commit()
    h.stop()
    h.history = h.history[:1]  # the topic was recreated: its end is behind the store
    h.shard = h.open_shard()
    h.restore()
    assert h.shard.store.rebuilt
    assert h.shard.checkpoint == 1


def test_a_corrupt_store_is_wiped_and_rebuilt(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("a", "unit.sleeper", 1)
    h.commit()
    path = h.shard.store.path
    h.stop()
    for f in path.glob("*"):
        if f.name.startswith("MANIFEST"):
            f.write_bytes(b"garbage")
    h.shard = h.open_shard()
    assert h.shard.store.rebuilt
    h.restore()
    h.run(advance_ms=DAY_MS)
    assert h.results() == {"a": "slept 1d"}


def test_keys_sort_by_time_and_keep_ids_apart() -> None:
    assert keys.timer_due_key(5, "a", "r", "t") < keys.timer_due_key(10, "a", "r", "t")
    assert not keys.event_key("ab", "r", 1).startswith(b"e" + keys.run_prefix("a", "br"))
    headers: list[tuple[str, bytes | None]] = [("ce_id", b"1"), ("empty", None)]
    assert keys.unframe(keys.frame(headers, b"v")) == (headers, b"v")


def test_a_store_that_fails_a_read_says_so_instead_of_looking_empty(tmp_path: Path) -> None:
    h = harness(tmp_path)
    store = h.shard.store
    for i in range(20_000):
        store.put(keys.event_key(f"wf-{i}", "r", 1), bytes(range(256)) * 2)
    store._db.flush()
    path = store.path
    h.stop()
    for sst in path.glob("*.sst"):
        with sst.open("r+b") as fh:  # a bad block inside a file of the right size
            fh.seek(sst.stat().st_size // 2)
            fh.write(b"\0" * 4096)
    reopened = h.open_shard().store
    with pytest.raises(StoreCorrupted, match="Corruption"):
        list(reopened.scan(b"e"))
    assert issubclass(StoreCorrupted, ShardStateLost)  # the processor rebuilds the shard


def test_a_timer_whose_firing_never_committed_fires_again_after_a_crash(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path)
    h.start("s", "unit.sleeper", 1)
    h.commit()
    h.tick(DAY_MS)  # the timer fires and the run completes, in a transaction...
    assert h.pending, "the firing decided nothing"
    h.crash()  # ...that dies with the process
    h.restore()
    h.run()
    assert h.results() == {"s": "slept 1d"}
    assert h.events_of("s").count("TimerFired") == 1


def test_retention_whose_tombstones_never_committed_comes_due_again(tmp_path: Path) -> None:
    h = harness(tmp_path, retention_ms=60_000)
    h.start("c", "unit.chain", 0)
    h.commit()
    h.tick(61_000)  # tombstones decided, never written
    h.crash()
    h.restore()
    h.run()
    assert not any(k.startswith(b"c/") for k in h.compacted())


def test_a_storm_slice_stops_at_its_time_budget_but_always_moves(tmp_path: Path) -> None:
    h = harness(tmp_path, tuning=ShardTuning(timers_per_cycle=1000, timer_budget_ms=0))
    for i in range(40):
        h.start(f"s-{i}", "unit.sleeper", 1)
    h.commit()
    h.tick(DAY_MS)
    h.commit()
    assert len(h.results()) == 16, "one chunk per cycle when the budget is spent at once"
    h.run()
    assert len(h.results()) == 40


def test_signal_with_start_to_a_running_id_signals_the_running_run(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.start("w", "unit.waiter")
    h.commit()
    go = rec.SignalWithStart(signal_name="go", args=[CONV.to_payload("from start")])
    h.start("w", "unit.waiter", signal_with_start=go)
    h.commit()
    starts = [r for r in h.replies if r.kind is rec.ReplyKind.START]
    assert [r.ok for r in starts] == [True, True]
    assert starts[0].run_id == starts[1].run_id
    assert h.results() == {"w": "from start"}
    assert h.events_of("w").count("WorkflowStarted") == 1


def test_a_decision_too_large_to_write_parks_its_run_and_the_shard_goes_on(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path)
    h.start("big", "unit.hoarder", 2_000_000)  # its result is over Kafka's record limit
    h.start("small", "unit.hoarder", 3)
    h.commit()
    h.run(advance_ms=1_000)  # the timer path: fire_due -> decision -> too large
    assert h.results() == {"small": "xxx"}
    parked = h.shard.executions.get("big")
    assert parked is not None and parked.parked is not None
    assert "cannot be written" in parked.parked
    assert h.events_of("big")[-1] == "TimerStarted", "nothing of the decision was written"
    assert h.shard.stats.parked == 1


def test_a_full_cache_stays_bounded_and_loses_no_run(tmp_path: Path) -> None:
    h = harness(tmp_path, tuning=ShardTuning(cache_size=5))
    for i in range(20):  # one generation: the runs are pinned until it is applied
        h.start(f"s-{i}", "unit.sleeper", 1)
        assert len(h.shard.executions) <= 5
    h.commit()
    h.start("late", "unit.sleeper", 1)
    assert len(h.shard.executions) <= 5
    h.commit()
    h.run(advance_ms=DAY_MS)
    assert len(h.results()) == 21, "evicted runs wake from the store"


def test_a_run_woken_from_the_store_keeps_its_other_timers(tmp_path: Path) -> None:
    h = harness(tmp_path, tuning=ShardTuning(idle_evict_ms=0))
    h.start("t", "unit.two_timers")
    h.commit()
    assert h.shard.executions.get("t").executor is None  # type: ignore[union-attr]
    h.run(advance_ms=DAY_MS)  # the first timer wakes it: replayed from the store
    assert h.results() == {}
    h.run(advance_ms=DAY_MS)
    assert h.results() == {"t": "both"}
    assert h.events_of("t").count("TimerFired") == 2


def test_the_due_index_finds_an_entry_added_below_what_it_already_read(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path)
    view = StoreView(h.shard.store)
    timers = TimerIndex(view)
    for n in range(1, 6):
        timers.set(f"w{n}", "r", "t", 100 * n)
    view.apply(view.seal(), None)  # in RocksDB now, like every committed timer

    def fire(now: int, limit: int = 10) -> list[str]:
        due = [t.workflow_id for t in timers.pop_due(now, limit)]
        view.apply(view.seal(), None)  # the deletes become tombstones on disk
        return due

    assert fire(350, 2) == ["w1", "w2"]
    assert fire(350) == ["w3"]
    # re-indexed late (a run recovered after a restore): already due, below the front
    timers.set("w0", "r", "t", 50)
    assert timers.next_due() == 50
    assert fire(450) == ["w0", "w4"]
    assert fire(10_000) == ["w5"]
    assert fire(10_000) == [] and timers.next_due() is None


def test_a_spent_cycle_budget_fires_nothing_and_the_next_cycle_goes_on(tmp_path: Path) -> None:
    h = harness(tmp_path)
    for i in range(20):
        h.start(f"s-{i}", "unit.sleeper", 1)
    h.commit()
    h.clock.now += DAY_MS
    h.pending += h.shard.fire_due(h.clock.now, until=time.monotonic() - 1)
    h.commit()
    assert h.results() == {}, "the processor spent the cycle's budget on other shards"
    h.start("new", "unit.waiter")  # commands are decided all the same
    h.commit()
    assert any(r.workflow_id == "new" and r.ok for r in h.replies)
    h.run()
    assert len(h.results()) == 20
