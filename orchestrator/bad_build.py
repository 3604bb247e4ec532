"""``saga reset --bad-build``: reset every run a build made decisions for.

The runs come from the visibility store (its ``build_ids`` column); each is reset
through the client to just before the first decision that build made in it, by run
id, so a run that is no longer its workflow id's current run (already reset, or
continued as new) is refused by its shard and skipped: running this again touches
nothing twice. It runs in the CLI process, one reset at a time; it is not the
server-side batch job of issue 12 (docs/operations.md says what that means).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from orchestrator.client import Client
from orchestrator.exceptions import OrchestratorError
from orchestrator.visibility.store import RunRow, VisibilityStore

__all__ = ["BadBuildReport", "reset_bad_build", "runs_of_build"]


@dataclass
class BadBuildReport:
    """What a pass over a build's runs did."""

    reset: dict[str, str] = field(default_factory=dict)
    """workflow id -> the new run"""
    skipped: dict[str, str] = field(default_factory=dict)
    """``workflow_id/run_id`` -> why it was not reset"""


def runs_of_build(dsn: str, table: str, build_id: str) -> list[RunRow]:
    """Every run the visibility store says ``build_id`` decided for, newest first."""

    async def fetch() -> list[RunRow]:
        rows: list[RunRow] = []
        after: str | None = None
        async with VisibilityStore(dsn, table=table) as store:
            while True:
                page, after = await store.list_runs(build_id=build_id, limit=1000, after=after)
                rows += page
                if after is None:
                    return rows

    return asyncio.run(fetch())


def reset_bad_build(
    client: Client,
    rows: list[RunRow],
    build_id: str,
    *,
    reason: str,
    operator: str,
    echo: Callable[[str], None],
    timeout: float = 30.0,
) -> BadBuildReport:
    """Reset each of ``rows`` to just before ``build_id``'s first decision in it."""
    report = BadBuildReport()
    for row in rows:
        handle = client.get_handle(row.workflow_id, row.run_id)
        try:
            new_run = handle.reset(
                reason, before_build=build_id, operator=operator, timeout=timeout
            )
        except OrchestratorError as exc:  # not current any more, or refused: say why
            report.skipped[f"{row.workflow_id}/{row.run_id}"] = str(exc)
            echo(f"skipped {row.workflow_id} run {row.run_id}: {exc}")
            continue
        report.reset[row.workflow_id] = new_run
        echo(f"reset {row.workflow_id} run {row.run_id}: new run {new_run}")
    return report
