"""Versions of one workflow type side by side: the registry, the version a run records
and stays pinned to on replay, continue-as-new onto the newest (or a named) version,
and histories recorded before versions existed, which replay as version 1."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from orchestrator import workflow
from orchestrator.engine import events as ev
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.registry import WorkflowRegistry, missing_version, pinned_version
from orchestrator.exceptions import DefinitionError, NonDeterminismError, NotFoundError
from orchestrator.testing import Replayer, WorkflowEnvironment, history_from_json, history_to_json
from orchestrator.workflow import WorkflowContext, WorkflowStatus, definition_of


@workflow.defn(name="ver.transfer")
async def transfer_v1(ctx: WorkflowContext, amount: int) -> str:
    await ctx.sleep(timedelta(minutes=1))
    return f"v1 moved {amount}"


@workflow.defn(name="ver.transfer", version=2)
async def transfer_v2(ctx: WorkflowContext, amount: int) -> str:
    # a different shape: two sleeps, so a v1 history cannot replay on it
    await ctx.sleep(timedelta(seconds=10))
    await ctx.sleep(timedelta(seconds=50))
    return f"v2 moved {amount} in version {ctx.info.workflow_version}"


@workflow.defn(name="ver.transfer", version=3)
class TransferV3:
    @workflow.run
    async def run(self, ctx: WorkflowContext, amount: int) -> str:
        return f"v3 moved {amount}"


@workflow.defn(name="ver.loop")
async def loop_v1(ctx: WorkflowContext, n: int) -> str:
    if n == 0:
        ctx.continue_as_new(1)  # onto the newest version
    if n == 1:
        ctx.continue_as_new(2, version=1)  # onto this one, by name
    return f"v1 ended at {n}"


@workflow.defn(name="ver.loop", version=2)
async def loop_v2(ctx: WorkflowContext, n: int) -> str:
    if n == 1:
        ctx.continue_as_new(2, version=1)
    return f"v2 ended at {n}"


# --- the registry ---------------------------------------------------------------------


def test_a_registry_holds_versions_side_by_side_and_starts_the_newest() -> None:
    registry = WorkflowRegistry([transfer_v2, transfer_v1, TransferV3])
    assert registry.versions("ver.transfer") == (1, 2, 3)
    assert registry["ver.transfer"].version == 3  # as a mapping: the newest
    assert registry.get_version("ver.transfer") is definition_of(TransferV3)
    assert registry.get_version("ver.transfer", 1) is definition_of(transfer_v1)
    assert registry.get_version("ver.transfer", 9) is None
    assert registry.get_version("nope") is None
    assert list(registry) == ["ver.transfer"] and len(registry) == 1
    assert registry.describe() == ["ver.transfer@v1,v2,v3"]
    assert ("ver.transfer", 2) in registry.held()
    assert [d.version for d in registry.all()] == [1, 2, 3]


def test_the_same_name_and_version_twice_is_a_definition_error() -> None:
    async def other(ctx: WorkflowContext) -> None:
        return None

    again = workflow.defn(name="ver.transfer", version=2)(other)
    with pytest.raises(DefinitionError, match="version 2 is defined twice"):
        WorkflowRegistry([transfer_v1, transfer_v2, again])
    # the same definition twice (imported twice, say) is no conflict
    assert WorkflowRegistry([transfer_v1, transfer_v1]).versions("ver.transfer") == (1,)


def test_version_defaults_to_1_and_must_be_a_positive_whole_number() -> None:
    assert definition_of(loop_v1).version == 1
    for bad in (0, -1, True, "2", 2**31):

        async def wf(ctx: WorkflowContext) -> None:
            return None

        with pytest.raises(DefinitionError, match="version must be a whole number"):
            workflow.defn(name="ver.bad", version=bad)(wf)  # type: ignore[arg-type]


def test_why_a_run_waits_names_the_version_and_what_the_worker_holds() -> None:
    registry = WorkflowRegistry([transfer_v2])
    reason = missing_version(registry, "ver.transfer", 1)
    assert "waiting for version 1 of workflow type 'ver.transfer'" in reason
    assert "holds v2" in reason
    assert missing_version(registry, "other", 1) == "unknown workflow type 'other'"


# --- runs record their version and replay on it ---------------------------------------


async def test_new_runs_start_on_the_version_given_and_record_it() -> None:
    env = WorkflowEnvironment(workflows=[transfer_v1, transfer_v2])
    old = await env.start_workflow(transfer_v1, 5, id="a")
    new = await env.start_workflow(transfer_v2, 7, id="b")
    assert await old.result() == "v1 moved 5"
    assert await new.result() == "v2 moved 7 in version 2"
    started = old.history[0]
    assert isinstance(started, ev.WorkflowStarted) and started.workflow_version == 1
    assert pinned_version(new.history) == 2


async def test_the_replayer_picks_the_version_a_history_recorded() -> None:
    env = WorkflowEnvironment(workflows=[transfer_v1, transfer_v2])
    v1 = await env.start_workflow(transfer_v1, 5, id="a")
    v2 = await env.start_workflow(transfer_v2, 7, id="b")
    await v1.result()
    await v2.result()
    replayer = Replayer(workflows=[transfer_v2, transfer_v1, TransferV3])
    for handle, version in ((v1, 1), (v2, 2)):
        result = replayer.replay(history_from_json(history_to_json(handle.history)))
        assert (result.status, result.workflow_version) == (WorkflowStatus.COMPLETED, version)
    env.replay(v1.history)  # the environment too
    env.replay(v2.history)
    with pytest.raises(NotFoundError, match="version 1"):
        Replayer(workflows=[transfer_v2]).replay(v1.history)


def test_an_executor_refuses_a_history_of_another_version() -> None:
    history = [
        ev.WorkflowStarted(seq=1, time=0, workflow_type="ver.transfer", workflow_id="a",
                           run_id="r", task_queue="q", workflow_version=1),
    ]
    with pytest.raises(NonDeterminismError, match="started on version 1"):
        WorkflowExecutor(definition_of(transfer_v2), history)
    WorkflowExecutor(definition_of(transfer_v1), history)  # its own version replays


async def test_a_history_exported_before_versions_replays_as_version_1() -> None:
    env = WorkflowEnvironment(workflows=[transfer_v1])
    handle = await env.start_workflow(transfer_v1, 5, id="a")
    await handle.result()
    old = json.loads(history_to_json(handle.history))
    assert old[0].pop("workflow_version") == 1  # an export of before: no such field
    history = history_from_json(json.dumps(old))
    assert pinned_version(history) == 1
    # the newest version held is 3, yet the old run replays on version 1
    result = Replayer(workflows=[transfer_v1, transfer_v2, TransferV3]).replay(history)
    assert (result.workflow_version, result.status) == (1, WorkflowStatus.COMPLETED)


# --- continue-as-new ------------------------------------------------------------------


async def test_continue_as_new_starts_the_newest_version_unless_the_author_names_one() -> None:
    env = WorkflowEnvironment(workflows=[loop_v1, loop_v2])
    handle = await env.start_workflow(loop_v1, 0, id="loop")
    assert await handle.result() == "v1 ended at 2"
    runs = handle.run_histories
    assert [pinned_version(h) for h in runs] == [1, 2, 1]
    continued = [h[-1] for h in runs[:-1]]
    assert all(isinstance(e, ev.WorkflowContinuedAsNew) for e in continued)
    assert [e.workflow_version for e in continued] == [None, 1]  # type: ignore[attr-defined]
    for history in runs:
        Replayer(workflows=[loop_v1, loop_v2]).replay(history)
