"""A cycle in which a shard changed nothing: no generation is opened or applied, the
checkpoint still moves, and what is decided meanwhile goes with the next transaction."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from orchestrator import workflow
from orchestrator.worker.shard import store as keys
from tests.unit.worker.shard_harness import Harness

DAY_MS = 86_400_000


@workflow.defn(name="unit.idle.sleeper")
async def sleeper(ctx: workflow.WorkflowContext) -> str:
    await ctx.sleep(timedelta(days=1))
    return "woke"


def _harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path / "state", [sleeper], retention_ms=30 * DAY_MS)


def test_an_idle_shard_fires_nothing_and_still_moves_its_checkpoint(tmp_path: Path) -> None:
    h = _harness(tmp_path)
    h.start("a", "unit.idle.sleeper")
    h.commit()
    assert h.tick() == []
    sealed = h.shard.seal()
    h.shard.committed(sealed, 123)  # another shard's records moved this partition's end
    assert h.shard.checkpoint == 123
    h.run(advance_ms=DAY_MS)
    assert h.results() == {"a": "woke"}


def test_decisions_made_while_an_empty_transaction_commits_wait_for_their_own(
    tmp_path: Path,
) -> None:
    h = _harness(tmp_path)
    h.start("a", "unit.idle.sleeper")
    h.commit()
    empty = h.shard.seal()  # nothing decided since the last commit
    h.start("b", "unit.idle.sleeper")  # decided while that transaction commits
    h.shard.committed(empty, None)
    assert h.shard.store.get(keys.snapshot_key("b")) is None, "b's start was not committed"
    h.crash()  # b's start is lost with the process, as its transaction never ran
    h.restore()
    assert h.shard.store.get(keys.snapshot_key("b")) is None
    h.start("b", "unit.idle.sleeper")
    h.commit()
    assert h.shard.store.get(keys.snapshot_key("b")) is not None
    h.run(advance_ms=DAY_MS)
    assert h.results() == {"a": "woke", "b": "woke"}
