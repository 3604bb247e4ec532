"""Two parts of the shard on their own: a standby copy's warming, and retention."""

from __future__ import annotations

from pathlib import Path

from orchestrator.serde import records as rec
from orchestrator.worker.shard import store as keys
from orchestrator.worker.shard.engine_shard import ShardTuning
from tests.unit.worker.shard_harness import Harness
from tests.unit.worker.test_engine_shard import DAY_MS, chain, hoarder, sleeper, waiter


def harness(tmp_path: Path, **kw: object) -> Harness:
    return Harness(tmp_path, [sleeper, waiter, hoarder, chain], **kw)  # type: ignore[arg-type]


def test_a_standby_copy_indexes_timers_so_a_promotion_fires_them(tmp_path: Path) -> None:
    owner = harness(tmp_path / "owner")
    for i in range(30):
        owner.start(f"s-{i}", "unit.sleeper", 1)
    owner.commit()
    standby = harness(tmp_path / "standby", tuning=ShardTuning(recoveries_per_cycle=7))
    standby.history = owner.history
    shard = standby.shard
    for entry in standby.history[shard.checkpoint :]:  # a record per slice of the tail: no
        shard.ingest([entry])  # run's history is whole in one, so none is folded on the way
    assert len(list(shard.store.scan(b"v"))) == 30, "every sleeper is left to the warming"
    warmed = 0
    while shard.keep_warm(standby.clock.now):  # a slice at a time
        warmed += 1
    assert warmed >= 30 // 7, "bounded slices"
    assert len(list(shard.store.scan(b"u"))) == 30, "every sleeper's timer is indexed"
    assert list(shard.store.scan(b"v")) == [], "nothing left to recover"
    assert list(shard.store.scan(b"k")) == [], "nothing needs the owner's recovery"
    # promoted: the timers fire without any replay of the runs first
    standby.pending += shard.restored(standby.clock.now)
    standby.run(advance_ms=DAY_MS)
    assert standby.results() == {f"s-{i}": "slept 1d" for i in range(30)}


def test_a_standby_tail_that_holds_whole_histories_indexes_their_timers_at_once(
    tmp_path: Path,
) -> None:
    owner = harness(tmp_path / "owner")
    for i in range(30):
        owner.start(f"s-{i}", "unit.sleeper", 1)
    owner.commit()
    standby = harness(tmp_path / "standby")
    standby.history = owner.history
    standby.shard.ingest(standby.history)  # one slice holds every run's whole history
    assert list(standby.shard.store.scan(b"v")) == [], "nothing left to warm"
    assert len(list(standby.shard.store.scan(b"u"))) == 30, "every sleeper's timer is indexed"
    standby.pending += standby.shard.restored(standby.clock.now)
    standby.run(advance_ms=DAY_MS)
    assert standby.results() == {f"s-{i}": "slept 1d" for i in range(30)}


def test_a_standby_leaves_runs_it_cannot_replay_to_the_owners_recovery(tmp_path: Path) -> None:
    owner = harness(tmp_path / "owner")
    owner.start("w", "unit.waiter")
    owner.commit()
    standby = Harness(tmp_path / "standby", [sleeper])  # this build lacks unit.waiter
    standby.history = owner.history
    standby.shard.ingest(standby.history)
    while standby.shard.keep_warm(standby.clock.now):
        pass
    assert [k for k, _ in standby.shard.store.scan(b"k")] == [b"kw"]


def test_retention_deletes_a_closed_runs_events_and_snapshot_with_its_tombstones(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path, retention_ms=60_000)
    h.start("c", "unit.chain", 0)
    h.commit()
    run_keys = {k for k, _ in h.shard.store.scan(b"e")}
    assert run_keys, "the closed run's events are kept until retention ends"
    h.run(advance_ms=59_000)
    assert {k for k, _ in h.shard.store.scan(b"e")} == run_keys, "not before its end"
    h.run(advance_ms=2_000)
    assert list(h.shard.store.scan(b"e")) == []
    assert h.shard.store.get(keys.snapshot_key("c")) is None
    tombstoned = {e.key for e in h.history if e.value is None}
    assert b"c/snapshot" in tombstoned
    assert len(tombstoned) == len(run_keys) + 1
    h.start("c", "unit.chain", 0, id_reuse_policy=rec.IdReusePolicy.REJECT_DUPLICATE)
    h.commit()
    assert sum(r.ok for r in h.replies if r.kind is rec.ReplyKind.START) == 2, "the id is free"
