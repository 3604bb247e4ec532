"""The dry run lists what the batch itself would deal with: parked runs only for a
reset (the batch's pages leave them out of every other operation). The visibility
store is a fake that filters the way the real one does."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace, TracebackType
from typing import Any, cast

import click
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from click.testing import CliRunner

from orchestrator.batch.cli import register
from orchestrator.batch.spec import BatchFilter, BatchOp
from orchestrator.http import batches
from orchestrator.http.services import SERVICES
from orchestrator.visibility.store import RunRow

T = datetime(2026, 1, 1, tzinfo=UTC)


def _row(workflow_id: str, parked: str | None) -> RunRow:
    return RunRow(
        workflow_id=workflow_id, run_id=f"{workflow_id}-r", workflow_type="t", task_queue="q",
        status="RUNNING", start_time=T, close_time=None, current_step=None, history_length=3,
        search_attributes={}, memo={}, error=None, parked=parked, paused=None, build_ids=[],
        shard=0, updated_at=T,
    )


ROWS = [_row("ok-1", None), _row("stuck-1", "non-determinism at event 7")]


class FakeStore:
    """``list_runs`` over :data:`ROWS`, honouring ``parked`` as the real store does."""

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    async def __aenter__(self) -> FakeStore:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def list_runs(
        self, *, parked: bool | None = None, **_: Any
    ) -> tuple[list[RunRow], str | None]:
        rows = [r for r in ROWS if parked is None or (r.parked is not None) == parked]
        return rows, None


def _cli_dry_run(op: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr("orchestrator.visibility.store.VisibilityStore", FakeStore)
    main = click.Group()
    register(main, lambda operator: operator or "me")
    args = ["batch", "start", op, "--type", "t", "--dry-run", "--database-url", "x",
            "--reason", "INC-1"]
    if op == "signal":
        args += ["--signal", "retry"]
    if op == "reset":
        args += ["--to-event", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("op", ["cancel", "terminate", "signal", "pause", "unpause"])
def test_the_cli_dry_run_leaves_out_parked_runs_the_batch_would_not_touch(
    op: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _cli_dry_run(op, monkeypatch)
    assert f"would {op} ok-1 run ok-1-r" in out
    assert "stuck-1" not in out
    assert "1 run(s) would be touched" in out


def test_the_cli_dry_run_of_a_reset_lists_parked_runs_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = _cli_dry_run("reset", monkeypatch)
    assert "would reset stuck-1 run stuck-1-r" in out
    assert "2 run(s) would be touched" in out


async def _http_dry_run(op: BatchOp) -> dict[str, Any]:
    app = web.Application()
    services = SimpleNamespace(visibility=SimpleNamespace(require=FakeStore))
    app[SERVICES] = cast(Any, services)
    request = make_mocked_request("POST", "/v1/batches", app=app)
    response = await batches._dry_run(request, BatchFilter(workflow_type="t"), op)
    assert response.text is not None
    body: dict[str, Any] = json.loads(response.text)
    return body


async def test_the_http_dry_run_lists_what_the_batch_would_deal_with() -> None:
    cancel = await _http_dry_run(BatchOp.CANCEL)
    assert [r["workflow_id"] for r in cancel["runs"]] == ["ok-1"]
    assert (cancel["op"], cancel["count"]) == ("cancel", 1)
    reset = await _http_dry_run(BatchOp.RESET)
    assert [r["workflow_id"] for r in reset["runs"]] == ["ok-1", "stuck-1"]
