"""Routes that read: health, describe, result, history, list/search and stats.

Describe, result and history are answered by the engine shard that owns the workflow,
from its store, through the client (always current); list, search and stats read the
visibility projection in PostgreSQL (eventually consistent, typically well under a
second behind).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from aiohttp import web

from orchestrator.client import ReplyTimeoutError, WorkflowNotFoundError, WorkflowStatus
from orchestrator.exceptions import WorkflowFailedError
from orchestrator.http import validation as v
from orchestrator.http.commands import handle_of
from orchestrator.http.errors import ApiError
from orchestrator.http.jsonout import description_json, event_json, jsonable, pause_json
from orchestrator.http.limits import (
    DEFAULT_LIST_LIMIT,
    DESCRIBE_TIMEOUT_S,
    HISTORY_TIMEOUT_S,
    MAX_ID_CHARS,
    MAX_WAIT_S,
)
from orchestrator.http.services import SERVICES, database_down, visibility_error
from orchestrator.visibility.store import MAX_LIMIT
from orchestrator.visibility.windows import MAX_MINUTES, last_minutes

__all__ = ["routes"]

_STATUSES = frozenset(s.name for s in WorkflowStatus)


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz`` (no auth): 200 when the Kafka client is connected, else 503."""
    services = request.app[SERVICES]
    connected = services.kafka.client is not None
    body = {
        "status": "ok" if connected else "starting",
        "kafka": "connected" if connected else "connecting",
        "visibility": services.visibility.state,
    }
    return web.json_response(body, status=200 if connected else 503)


async def describe(request: web.Request) -> web.Response:
    """``GET /v1/workflows/{id}``: the latest snapshot, plus the visibility row if any."""
    handle = handle_of(request)
    visibility = request.app[SERVICES].visibility
    row: dict[str, Any] | None = None
    if visibility.store is not None:
        try:
            found = await visibility.store.get_run(handle.workflow_id, handle.run_id)
        except psycopg.Error as exc:
            database_down(exc)  # logged; describe goes on with the snapshot alone
        else:
            row = found.to_json() if found is not None else None
    try:
        snapshot: dict[str, Any] | None = description_json(
            await handle.describe(timeout=DESCRIBE_TIMEOUT_S)
        )
    except WorkflowNotFoundError:
        if row is None:
            raise
        snapshot = None  # retention ended in Kafka; the projection still has the run
    return web.json_response({"workflow": snapshot, "visibility": row})


def _failure(exc: WorkflowFailedError) -> dict[str, Any] | None:
    """The recorded failure (type and message), None when the run recorded none."""
    cause = exc.cause
    if cause is None:
        return None
    return {
        "type": getattr(cause, "type", None) or type(cause).__name__,
        "message": getattr(cause, "message", None) or str(cause),
    }


async def result(request: web.Request) -> web.Response:
    """``GET /v1/workflows/{id}/result?wait=s``: the outcome, waiting up to ``wait`` s."""
    handle = handle_of(request, ("wait",))  # the latest run: RESULT replies are per id
    wait = v.query_seconds(request, "wait", default=0.0, maximum=MAX_WAIT_S)
    described = await handle.describe(timeout=DESCRIBE_TIMEOUT_S)  # 404 for an unknown id
    body: dict[str, Any] = {"workflow_id": handle.workflow_id, "run_id": described.run_id}
    if described.is_open and not wait:
        return web.json_response({**body, "done": False, "status": described.status.name})
    converter = request.app[SERVICES].options.converter
    try:
        value = await handle.result(timeout=wait if described.is_open else MAX_WAIT_S)
    except ReplyTimeoutError:
        return web.json_response({**body, "done": False, "status": described.status.name})
    except WorkflowFailedError as exc:
        status = exc.status
        if exc.cause is None:
            # a RESULT reply without a failure (cancelled, terminated) does not say
            # which; the snapshot does
            status = (await handle.describe(timeout=DESCRIBE_TIMEOUT_S)).status.name
        return web.json_response({**body, "done": True, "status": status, "error": _failure(exc)})
    return web.json_response(
        {**body, "done": True, "status": "COMPLETED", "result": jsonable(value, converter)}
    )


async def history(request: web.Request) -> web.Response:
    """``GET /v1/workflows/{id}/history[?run_id=][&format=replay]``: a run's events,
    oldest first; ``format=replay`` answers the file ``saga history --json`` writes."""
    handle = handle_of(request, ("run_id", "format"))
    replay_format = request.query.get("format", "api")
    if replay_format not in ("api", "replay"):
        raise v.bad("format must be api or replay")
    services = request.app[SERVICES]
    found = await handle.client.fetch_history(
        handle.workflow_id, handle.run_id, timeout=HISTORY_TIMEOUT_S
    )
    if found.snapshot is None and not found.events:
        raise ApiError(404, "workflow_not_found", f"no history of workflow {handle.workflow_id!r}")
    if handle.run_id is not None and not found.events:
        raise ApiError(
            404,
            "workflow_not_found",
            f"workflow {handle.workflow_id!r} has no run {handle.run_id!r}",
        )
    if replay_format == "replay":
        from orchestrator.engine.replayer import history_to_json

        return web.Response(
            text=history_to_json(found.events),
            content_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{found.run_id}.json"'},
        )
    # the snapshot is the latest run's: its status says nothing about an earlier run
    snapshot = found.snapshot if (
        found.snapshot is not None and found.snapshot.run_id == found.run_id
    ) else None
    converter = services.options.converter
    return web.json_response(
        {
            "workflow_id": handle.workflow_id,
            "run_id": found.run_id,
            "status": snapshot.status.name if snapshot is not None else None,
            "parked": snapshot.parked if snapshot is not None else None,
            "paused": pause_json(handle.client.builder.describe(snapshot).paused)
            if snapshot is not None
            else None,
            "events": [event_json(e, converter) for e in found.events],
        }
    )


def _text_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: searched for as text


def _search(values: list[str]) -> dict[str, Any]:
    """``key:value`` terms; a value that is JSON (``42``, ``true``, ``"x"``) keeps its type.
    Each key may be given once: the terms are ANDed as one JSONB containment."""
    terms: dict[str, Any] = {}
    for term in values:
        key, sep, raw = term.partition(":")
        if not sep or not key:
            raise v.bad(f"search terms are key:value, got {term!r}")
        v.no_nul(key, "search key")
        if key in terms:
            raise v.bad(f"search key {key!r} is given twice; give each key once")
        try:
            value: Any = json.loads(raw, parse_constant=_text_constant)
        except RecursionError:
            raise v.bad(f"search value of {key!r} is nested too deeply") from None
        except ValueError:
            value = raw
        terms[key] = v.plain_json(value, f"search value of {key!r}")
    return terms


async def list_workflows(request: web.Request) -> web.Response:
    """``GET /v1/workflows?status=&type=&search=k:v&build_id=&started_after=&started_before=
    &parked=&limit=&after=``: newest first."""
    v.check_query(
        request,
        (
            "status", "type", "search", "build_id", "started_after", "started_before", "parked",
            "limit", "after",
        ),
    )
    status = request.query.get("status")
    if status is not None and status.upper() not in _STATUSES:
        raise v.bad(f"status must be one of {', '.join(sorted(_STATUSES))}")
    workflow_type = request.query.get("type")
    if workflow_type is not None:
        v.name(workflow_type, "type")
    try:
        limit = int(request.query.get("limit", DEFAULT_LIST_LIMIT))
    except ValueError:
        raise v.bad("limit must be an integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise v.bad(f"limit must be between 1 and {MAX_LIMIT}")
    search = _search(request.query.getall("search", []))
    build_id = request.query.get("build_id")
    if build_id is not None:
        v.no_nul(v.text(build_id, "build_id", MAX_ID_CHARS), "build_id")
    started_after = v.query_time(request, "started_after")
    started_before = v.query_time(request, "started_before")
    parked_text = request.query.get("parked")
    if parked_text not in (None, "true", "false"):
        raise v.bad("parked must be true or false")
    parked = None if parked_text is None else parked_text == "true"
    store = request.app[SERVICES].visibility.require()
    try:
        rows, cursor = await store.list_runs(
            status=status,
            workflow_type=workflow_type,
            search=search or None,
            build_id=build_id,
            started_after=started_after,
            started_before=started_before,
            parked=parked,
            limit=limit,
            after=request.query.get("after"),
        )
    except ValueError as exc:  # a malformed cursor
        raise v.bad(str(exc)) from None
    except psycopg.Error as exc:
        raise visibility_error(exc) from None
    return web.json_response({"workflows": [r.to_json() for r in rows], "next": cursor})


async def stats(request: web.Request) -> web.Response:
    """``GET /v1/stats[?minutes=N&type=]``: how many runs have each status; with
    ``minutes``, also per workflow type and minute of the last N: starts, closes by
    status and start-to-close percentiles."""
    v.check_query(request, ("minutes", "type"))
    minutes = _minutes(request.query.get("minutes"))
    workflow_type = request.query.get("type")
    if workflow_type is not None:
        v.name(workflow_type, "type")
    store = request.app[SERVICES].visibility.require()
    try:
        counts = await store.counts()
        body: dict[str, Any] = {"counts": counts, "total": sum(counts.values())}
        if minutes is not None:
            since, until = last_minutes(minutes)
            found = await store.minute_stats(since, until, workflow_type)
            body["minutes"] = [m.to_json() for m in found]
    except psycopg.Error as exc:
        raise visibility_error(exc) from None
    return web.json_response(body)


def _minutes(text: str | None) -> int | None:
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not (
        1 <= int(text) <= MAX_MINUTES
    ):
        raise v.bad(f"minutes must be a whole number from 1 to {MAX_MINUTES}")
    return int(text)


def routes() -> list[web.RouteDef]:
    """The read routes."""
    wf = "/v1/workflows/{workflow_id}"
    return [
        web.get("/healthz", healthz, allow_head=False),
        web.get("/v1/workflows", list_workflows, allow_head=False),
        web.get("/v1/stats", stats, allow_head=False),
        web.get(wf, describe, allow_head=False),
        web.get(f"{wf}/result", result, allow_head=False),
        web.get(f"{wf}/history", history, allow_head=False),
    ]
