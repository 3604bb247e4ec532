"""Continue-as-new chains on the shard (worker/shard/chains.py): bounded per cycle, and
a next run this build cannot start parks the run it continues."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from orchestrator import workflow
from orchestrator.engine import inputs
from orchestrator.engine.status import WorkflowStatus
from orchestrator.serde import records as rec
from orchestrator.worker.engine_worker import definitions
from orchestrator.worker.shard.chains import MAX_CHAINED_RUNS, Chains
from orchestrator.worker.shard.executions import Execution
from orchestrator.worker.shard.records import OutRecord
from orchestrator.worker.shard.snapshots import snapshot_of
from tests.unit.worker.shard_harness import LAYOUT, WIRE, Parts, open_parts


@workflow.defn(name="unit.chains.loop")
async def loop(ctx: workflow.WorkflowContext) -> None:
    ctx.continue_as_new()


class Restless:
    """An apply in which every run continues as new at once (as ``loop`` would)."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def __call__(
        self,
        execution: Execution,
        batch: Sequence[inputs.Input],
        now: int,
        command: rec.Command | None,
        correlation: str,
        *,
        park_unwritable: bool = False,
        cause: str | None = None,
    ) -> list[OutRecord]:
        (start,) = batch
        assert isinstance(start, inputs.StartWorkflow)
        self.started.append(execution.run_id)
        execution.status = WorkflowStatus.CONTINUED_AS_NEW
        execution.next_run = dataclasses.replace(start, run_id=f"r{len(self.started) + 1}")
        return []


def _chains(parts: Parts, apply: Restless) -> Chains:
    return Chains(
        workflows=definitions([loop]), executions=parts.executions, view=parts.view,
        stats=parts.stats, output=parts.output, apply=apply,
    )


def _continued(parts: Parts, workflow_type: str) -> Execution:
    execution = Execution(
        "wf", "r0", "unit.chains.loop", "q", 0, status=WorkflowStatus.CONTINUED_AS_NEW
    )
    execution.snapshot = snapshot_of(execution, None, [])
    execution.next_run = inputs.StartWorkflow(
        workflow_id="wf", run_id="r1", workflow_type=workflow_type
    )
    parts.executions.add(execution)
    return execution


def test_a_chain_longer_than_a_cycle_allows_goes_on_in_the_next_cycle(tmp_path: Path) -> None:
    parts = open_parts(tmp_path)
    apply = Restless()
    chains = _chains(parts, apply)
    assert chains.run(_continued(parts, "unit.chains.loop"), 5) == []
    assert len(apply.started) == MAX_CHAINED_RUNS
    assert [e.run_id for e in chains.due] == [f"r{MAX_CHAINED_RUNS}"], "left for the next cycle"
    assert not chains.running
    chains.resume(6)
    assert len(apply.started) == 2 * MAX_CHAINED_RUNS
    assert apply.started[MAX_CHAINED_RUNS] == f"r{MAX_CHAINED_RUNS + 1}", "it went on, in order"
    assert parts.stats.continued == 2 * MAX_CHAINED_RUNS


def test_a_chain_a_newer_run_replaced_is_not_resumed(tmp_path: Path) -> None:
    parts = open_parts(tmp_path)
    apply = Restless()
    chains = _chains(parts, apply)
    chains.run(_continued(parts, "unit.chains.loop"), 5)
    parts.executions.add(Execution("wf", "reset-run", "unit.chains.loop", "q", 6))
    assert chains.resume(6) == [] and len(apply.started) == MAX_CHAINED_RUNS
    assert chains.due == []


def test_a_next_run_of_a_type_this_build_lacks_parks_the_run_it_continues(
    tmp_path: Path,
) -> None:
    parts = open_parts(tmp_path)
    apply = Restless()
    previous = _continued(parts, "unit.chains.gone")
    (record,) = _chains(parts, apply).run(previous, 5)
    assert apply.started == []
    snapshot = WIRE.decode_snapshot(record.headers, record.value).record
    assert record.topic == LAYOUT.history
    assert snapshot.parked is not None and "'unit.chains.gone' is unknown here" in snapshot.parked
    assert snapshot.status is WorkflowStatus.CONTINUED_AS_NEW
    assert previous.next_run is not None, "kept for the restore that retries it"
    assert parts.view.get(b"k" + b"wf") is not None, "in the parked set"
    assert parts.stats.parked == 1
