"""Two versions of one workflow type in one saga module (discovery tests)."""

from __future__ import annotations

from orchestrator import workflow


@workflow.defn(name="unit.versioned")
async def versioned_v1(ctx: workflow.WorkflowContext) -> str:
    return "v1"


@workflow.defn(name="unit.versioned", version=2)
class VersionedV2:
    @workflow.run
    async def run(self, ctx: workflow.WorkflowContext) -> str:
        return "v2"
