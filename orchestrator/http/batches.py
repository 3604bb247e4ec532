"""Batch routes (docs/batch.md): start (or dry-run), list, describe, cancel. A batch is
a run of the built-in ``saga.batch`` workflow, so each route is a start, a query (or
the closed run's result) or an update of it.

Bodies use the JSON shape of the records in ``orchestrator.batch.spec``:
``{"batch_id": "inc-42", "operation": {"op": "signal", "signal_name": "retry",
"signal_args": [], "reason": "INC-42"}, "filter": {"workflow_type": "payments.transfer",
"status": "RUNNING", "search": {"customer": "acme"}}, "rate": 20, "page_size": 100}``;
``"dry_run": true`` answers with the runs it would touch and starts nothing.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import psycopg
from aiohttp import web

from orchestrator.batch.spec import (
    BATCH_WORKFLOW,
    BatchFilter,
    BatchOp,
    BatchOperation,
    BatchState,
    check_batch_id,
    parked_filter,
)
from orchestrator.client import AsyncBatchHandle
from orchestrator.exceptions import PayloadConversionError
from orchestrator.http import validation as v
from orchestrator.http.limits import MAX_OPERATOR_CHARS, QUERY_TIMEOUT_S, UPDATE_TIMEOUT_S
from orchestrator.http.services import SERVICES, database_down, visibility_error
from orchestrator.schedules.forms import from_json, to_json
from orchestrator.visibility.store import MAX_LIMIT, RunRow

__all__ = ["routes"]

_LIST_LIMIT = 200
_DRY_RUN_MAX = 10_000


def _batch_id(value: Any) -> str:
    return v.checked_id(value, "batch id", check_batch_id)


def _handle(request: web.Request) -> AsyncBatchHandle:
    v.check_query(request, ())
    batch_id = _batch_id(request.match_info["batch_id"])
    return request.app[SERVICES].kafka.require().batch_handle(batch_id)


def _record(body: dict[str, Any], key: str, hint: Any) -> Any:
    value = body.get(key)
    if not isinstance(value, dict):
        raise v.bad(f"{key} must be a JSON object")
    try:
        return from_json(value, hint)
    except PayloadConversionError as exc:
        raise v.bad(f"{key}: {exc}") from None


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise v.bad(f"{key} must be a number")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond a float's range
        raise v.bad(f"{key} is out of range") from None
    if not math.isfinite(number):
        raise v.bad(f"{key} is out of range")
    return number


def _check_filter(filter_: BatchFilter) -> None:
    """Refuse values PostgreSQL cannot take (NUL characters, numbers out of range)."""
    for key in ("workflow_type", "status", "build_id"):
        value = getattr(filter_, key)
        if value is not None:
            v.no_nul(value, f"filter.{key}")
    v.plain_json(filter_.search, "filter.search")


async def _dry_run(request: web.Request, filter_: BatchFilter, op: BatchOp) -> web.Response:
    store = request.app[SERVICES].visibility.require()
    now = datetime.now(UTC)
    if filter_.started_before is None or filter_.started_before > now:
        filter_ = dataclasses.replace(filter_, started_before=now)
    found: list[RunRow] = []
    after: str | None = None
    try:
        while len(found) < _DRY_RUN_MAX:
            page, after = await store.list_runs(
                **filter_.store_args(), parked=parked_filter(op), limit=MAX_LIMIT, after=after
            )
            found += page
            if after is None:
                break
    except psycopg.Error as exc:
        raise visibility_error(exc) from None
    runs = [{"workflow_id": r.workflow_id, "run_id": r.run_id, "status": r.status}
            for r in found[:_DRY_RUN_MAX]]
    return web.json_response({"dry_run": True, "op": op.value, "runs": runs, "count": len(runs),
                              "truncated": after is not None})


async def start(request: web.Request) -> web.Response:
    """``POST /v1/batches``: start a batch; 201 with its description (or, with
    ``dry_run``, 200 with the runs it would touch)."""
    v.check_query(request, ())
    body = await v.json_body(
        request, required=("operation", "filter"),
        optional=("batch_id", "rate", "page_size", "allow_all", "dry_run"),
    )
    operation: BatchOperation = _record(body, "operation", BatchOperation)
    filter_: BatchFilter = _record(body, "filter", BatchFilter)
    if len(operation.operator) > MAX_OPERATOR_CHARS:
        raise v.bad(f"operator: at most {MAX_OPERATOR_CHARS} characters")
    if not operation.operator:
        operation = dataclasses.replace(operation, operator=f"http {request.remote or 'unknown'}")
    allow_all, dry_run = body.get("allow_all", False), body.get("dry_run", False)
    if not isinstance(allow_all, bool) or not isinstance(dry_run, bool):
        raise v.bad("allow_all and dry_run must be true or false")
    if operation.event_seq is not None:
        v.int64(operation.event_seq, "operation.event_seq", minimum=1)
    _check_filter(filter_)
    default_id = f"{operation.op.value}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}"
    batch_id = _batch_id(body.get("batch_id", default_id))
    page_size = _number(body, "page_size", 100)
    if page_size != int(page_size):
        raise v.bad("page_size must be a whole number")
    rate = _number(body, "rate", 10.0)
    # a dry run is checked as a start is, so one that passes can be started as it is
    state = BatchState(batch_id, operation, filter_, rate=rate, page_size=int(page_size))
    found = state.problems()
    if filter_.is_empty() and not allow_all:
        found.append("the filter matches every run; pass allow_all: true if that is meant")
    if found:
        raise v.bad("; ".join(found))
    if dry_run:
        return await _dry_run(request, filter_, operation.op)
    client = request.app[SERVICES].kafka.require()
    try:
        handle = await client.start_batch(
            batch_id, operation, filter_, rate=rate,
            page_size=int(page_size), allow_all=allow_all, timeout=UPDATE_TIMEOUT_S,
        )
    except ValueError as exc:
        raise v.bad(str(exc)) from None
    described = await handle.describe(timeout=QUERY_TIMEOUT_S)
    return web.json_response(
        {"batch": to_json(described)},
        status=201,
        headers={"Location": f"/v1/batches/{quote(batch_id, safe='')}"},
    )


async def list_batches(request: web.Request) -> web.Response:
    """``GET /v1/batches``: the batches the visibility store knows, newest first, with
    the status of their latest run."""
    v.check_query(request, ())
    store = request.app[SERVICES].visibility.require()
    try:
        rows, _ = await store.list_runs(workflow_type=BATCH_WORKFLOW, limit=_LIST_LIMIT)
    except psycopg.Error as exc:
        raise database_down(exc) from None
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        batch_id = r.workflow_id.removeprefix("batch:")
        seen.setdefault(batch_id, {"batch_id": batch_id, "status": r.status,
                                   "start_time": r.start_time.isoformat()})
    return web.json_response({"batches": list(seen.values())})


async def describe(request: web.Request) -> web.Response:
    """``GET /v1/batches/{id}``: status, counts, total estimate, samples of why."""
    handle = _handle(request)
    return web.json_response({"batch": to_json(await handle.describe(QUERY_TIMEOUT_S))})


async def cancel(request: web.Request) -> web.Response:
    """``POST /v1/batches/{id}/cancel``: stop after the page under way."""
    handle = _handle(request)
    body = await v.json_body(request, optional=("reason",), allow_empty=True)
    reason = v.text(body.get("reason", ""), "reason", 1000)
    return web.json_response({"batch": to_json(await handle.cancel(reason, UPDATE_TIMEOUT_S))})


def routes() -> list[web.RouteDef]:
    """The batch routes."""
    one = "/v1/batches/{batch_id}"
    return [
        web.post("/v1/batches", start),
        web.get("/v1/batches", list_batches, allow_head=False),
        web.get(one, describe, allow_head=False),
        web.post(f"{one}/cancel", cancel),
    ]
