"""Pause in the executor alone: what is held, what passes, and replay of a pause."""

from __future__ import annotations

from orchestrator.converter import DataConverter
from orchestrator.engine import commands as cmd
from orchestrator.engine import events as ev
from orchestrator.engine import inputs
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.workflow import definition_of
from tests.unit.worker.test_pause import Counter

CONV = DataConverter()
START = inputs.StartWorkflow(workflow_id="c", run_id="r", workflow_type="unit.counter")


def started() -> WorkflowExecutor:
    executor = WorkflowExecutor(definition_of(Counter))
    executor.apply([START], 1)
    return executor


def test_held_inputs_replay_to_the_same_state() -> None:
    executor = started()
    add = inputs.RequestUpdate(update_id="u", name="add", args=[CONV.to_payload(2)])
    executor.apply([inputs.PauseWorkflow(reason="r", operator="o"), add], 2)
    assert executor.paused is not None
    assert CONV.from_payload(executor.query("total")) == 0, "held, not applied"
    replayed = WorkflowExecutor(definition_of(Counter), executor.history)
    assert replayed.paused is not None
    decision = replayed.apply([inputs.UnpauseWorkflow()], 3)
    assert [type(e).__name__ for e in decision.events][:2] == ["WorkflowUnpaused", "UpdateAccepted"]
    assert any(isinstance(c, cmd.RespondUpdate) and c.failure is None for c in decision.commands)


def test_nothing_is_held_after_a_paused_run_was_terminated() -> None:
    executor = started()
    executor.apply([inputs.PauseWorkflow(), inputs.TerminateWorkflow(reason="stop")], 2)
    add = inputs.RequestUpdate(update_id="u", name="add", args=[CONV.to_payload(2)])
    decision = executor.apply([add], 3)
    assert decision.events == []
    [answer] = decision.commands
    assert isinstance(answer, cmd.RespondUpdate) and answer.rejected
    assert isinstance(executor.history[-1], ev.WorkflowTerminated)
