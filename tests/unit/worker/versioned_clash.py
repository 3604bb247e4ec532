"""Version 2 of ``unit.versioned`` again: discovered beside versioned_module, a clash."""

from __future__ import annotations

from orchestrator import workflow


@workflow.defn(name="unit.versioned", version=2)
async def versioned_v2_again(ctx: workflow.WorkflowContext) -> str:
    return "v2, again"
