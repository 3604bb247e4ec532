"""New runs get seeds a JavaScript reader can decode; old runs keep their stored seed."""

from __future__ import annotations

import random

from orchestrator import workflow
from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.inputs import StartWorkflow
from orchestrator.workflow import WorkflowContext, definition_of

CONV = DataConverter()
T0 = 1_735_689_600_000
JS_MAX_SAFE_INTEGER = 2**53 - 1
OLD_SEED = 7_784_550_836_714_821_106  # a 63-bit seed, as runs got before the limit


@workflow.defn(name="draws")
class Draws:
    def __init__(self) -> None:
        self.drawn: list[float] = []

    @workflow.run
    async def run(self, ctx: WorkflowContext) -> None:
        self.drawn.append(ctx.random())
        await ctx.wait_condition(lambda: False)

    @workflow.query
    def values(self) -> list[float]:
        return self.drawn


def started_event(run_id: str) -> ev.WorkflowStarted:
    executor = WorkflowExecutor(definition_of(Draws))
    decision = executor.apply(
        [StartWorkflow(workflow_id="w", run_id=run_id, workflow_type="draws")], T0
    )
    first = decision.events[0]
    assert isinstance(first, ev.WorkflowStarted)
    return first


def test_new_seeds_fit_in_a_javascript_number() -> None:
    seeds = [started_event(f"run-{n}").random_seed for n in range(2000)]
    assert all(0 <= s <= JS_MAX_SAFE_INTEGER for s in seeds)
    assert max(seeds) > 2**52  # the whole 53 bits are used, not a narrower range
    assert len(set(seeds)) == len(seeds)


def test_a_run_started_with_a_63_bit_seed_replays_with_it() -> None:
    history = [
        ev.WorkflowStarted(
            seq=1, time=T0, workflow_type="draws", workflow_id="w", run_id="old",
            task_queue="default", random_seed=OLD_SEED,
        )
    ]
    executor = WorkflowExecutor(definition_of(Draws), history)
    drawn = CONV.from_payload(executor.query("values"), list[float])
    assert drawn == [random.Random(OLD_SEED).random()]
