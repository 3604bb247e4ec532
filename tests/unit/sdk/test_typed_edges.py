"""The generic edges carry real types: mypy rejects a wrong annotation on each.

tests/typing/typed_edges.py (part of the project's mypy run) assigns each edge's
result to a correctly annotated variable; that passes as well when a generic is
lost (``Any`` fits every annotation). So this test feeds mypy a module whose
annotations are wrong, one per edge, and requires an error on every such line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

WRONG = '''
from orchestrator import workflow
from orchestrator.client import AsyncClient, Client, WorkflowHandle
from orchestrator.testing import WorkflowEnvironment
from tests.typing.typed_edges import Order, charge, child, label, parent


def sync_client(client: Client, order: Order) -> None:
    handle = client.start(parent, order, id="x", task_queue="q")
    a: int = handle.result()  # WRONG
    b: int = client.get_handle("x", result_type=str).result()  # WRONG
    c: int = handle.result(result_type=str)  # WRONG
    other: WorkflowHandle[int] = client.start(parent, order, id="x", task_queue="q")  # WRONG


async def async_client(client: AsyncClient, order: Order) -> None:
    handle = await client.start(parent, order, id="x", task_queue="q")
    d: int = await handle.result()  # WRONG
    e: int = await client.get_handle("x", result_type=str).result()  # WRONG


@workflow.defn(name="wrong.parent")
async def wrong_parent(ctx: workflow.WorkflowContext, order: Order) -> None:
    saga = ctx.saga()
    f: str = await saga.step(charge, order)  # WRONG
    g: int = await saga.step(label, order)  # WRONG
    h: int = await ctx.execute_child_workflow(child, order)  # WRONG
    i: int = await ctx.execute_child_workflow("typed.child", order, result_type=str)  # WRONG


async def environment(order: Order) -> None:
    async with WorkflowEnvironment(workflows=[parent]) as env:
        handle = await env.start_workflow(parent, order)
        j: int = await handle.result()  # WRONG
        k: int = await env.execute_workflow(child, order)  # WRONG
'''


def test_mypy_rejects_a_wrong_annotation_on_every_typed_edge(tmp_path: Path) -> None:
    module = tmp_path / "wrong_edges.py"
    module.write_text(WRONG)
    expected = {n for n, line in enumerate(WRONG.splitlines(), 1) if line.endswith("# WRONG")}
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary",
         "--cache-dir", str(tmp_path / "cache"), str(module)],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )
    # an error on each wrong line (an incompatible assignment, or inside a workflow an
    # incompatible argument: mypy infers the awaited call from the annotation), no other
    flagged = {
        int(m.group(1))
        for m in re.finditer(r"wrong_edges\.py:(\d+): error: .*incompatible type", run.stdout,
                             flags=re.IGNORECASE)
    }
    assert flagged == expected, run.stdout + run.stderr
    assert run.stdout.count(": error:") == len(expected), run.stdout
