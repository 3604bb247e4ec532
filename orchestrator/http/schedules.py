"""Schedule routes (docs/schedules.md): create, list, describe, update, pause,
unpause, trigger, backfill, delete. A schedule is a run of the built-in
``saga.schedule`` workflow, so each route is a start, an update or a query of it and
answers once the schedule's shard has (errors as for any workflow command).

Bodies use the JSON shape of the records in ``orchestrator.schedules.spec``:
``{"spec": {"cron": [...], "interval_s": 60, "time_zone": "Europe/Paris",
"jitter_s": 5}, "action": {"workflow_type": ..., "task_queue": ..., "args": [...]},
"policy": {"overlap": "skip", "catchup_window_s": 300}}``.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import psycopg
from aiohttp import web

from orchestrator.client import AsyncScheduleHandle
from orchestrator.http import validation as v
from orchestrator.http.limits import MAX_WAIT_S, QUERY_TIMEOUT_S, UPDATE_TIMEOUT_S
from orchestrator.http.services import SERVICES, database_down
from orchestrator.schedules.forms import from_json, parse_overlap, parse_time, to_json
from orchestrator.schedules.spec import (
    SCHEDULE_WORKFLOW,
    ScheduleAction,
    ScheduleChange,
    SchedulePolicy,
    ScheduleSpec,
    check_schedule_id,
)

__all__ = ["routes"]

_LIST_LIMIT = 200


def _schedule_id(value: Any) -> str:
    return v.checked_id(value, "schedule id", check_schedule_id)


def _handle(request: web.Request) -> AsyncScheduleHandle:
    v.check_query(request, ())
    schedule_id = _schedule_id(request.match_info["schedule_id"])
    return request.app[SERVICES].kafka.require().schedule_handle(schedule_id)


def _record(body: dict[str, Any], key: str, hint: Any) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise v.bad(f"{key} must be a JSON object")
    return from_json(value, hint)


def _overlap(body: dict[str, Any]) -> Any:
    value = body.get("overlap")
    if value is not None and not isinstance(value, str):
        raise v.bad("overlap must be a string (a policy name such as skip)")
    try:
        return parse_overlap(value)
    except ValueError as exc:
        raise v.bad(str(exc)) from None


async def create(request: web.Request) -> web.Response:
    """``POST /v1/schedules``: create a schedule; 201 with its description."""
    v.check_query(request, ())
    body = await v.json_body(
        request, required=("schedule_id", "spec", "action"), optional=("policy", "paused", "note")
    )
    schedule_id = _schedule_id(body["schedule_id"])
    paused = body.get("paused", False)
    if not isinstance(paused, bool):
        raise v.bad("paused must be true or false")
    note = v.text(body.get("note", ""), "note", 1000)
    spec, action = _record(body, "spec", ScheduleSpec), _record(body, "action", ScheduleAction)
    if spec is None or action is None:
        raise v.bad("spec and action must be JSON objects")
    client = request.app[SERVICES].kafka.require()
    try:
        handle = await client.create_schedule(
            schedule_id, spec, action, _record(body, "policy", SchedulePolicy),
            paused=paused, note=note, timeout=UPDATE_TIMEOUT_S,
        )
    except ValueError as exc:
        raise v.bad(str(exc)) from None
    described = await handle.describe(timeout=QUERY_TIMEOUT_S)
    return web.json_response(
        {"schedule": to_json(described)},
        status=201,
        headers={"Location": f"/v1/schedules/{quote(schedule_id, safe='')}"},
    )


async def list_schedules(request: web.Request) -> web.Response:
    """``GET /v1/schedules``: every schedule the visibility store knows, each described
    by its shard (``schedule`` is null when the shard did not answer in time)."""
    v.check_query(request, ())
    store = request.app[SERVICES].visibility.require()
    try:
        rows, _ = await store.list_runs(
            status="running", workflow_type=SCHEDULE_WORKFLOW, limit=_LIST_LIMIT
        )
    except psycopg.Error as exc:
        raise database_down(exc) from None
    client = request.app[SERVICES].kafka.require()
    ids = sorted(r.workflow_id.removeprefix("schedule:") for r in rows)

    async def one(schedule_id: str) -> dict[str, Any]:
        try:
            described: Any = to_json(
                await client.schedule_handle(schedule_id).describe(timeout=QUERY_TIMEOUT_S)
            )
        except Exception:  # noqa: BLE001 - one silent shard must not fail the list
            described = None
        return {"schedule_id": schedule_id, "schedule": described}

    found = await asyncio.gather(*(one(i) for i in ids))
    return web.json_response({"schedules": list(found)})


async def describe(request: web.Request) -> web.Response:
    """``GET /v1/schedules/{id}``: spec, counters, running firings, recent actions,
    next firing times."""
    handle = _handle(request)
    return web.json_response({"schedule": to_json(await handle.describe(QUERY_TIMEOUT_S))})


async def update(request: web.Request) -> web.Response:
    """``POST /v1/schedules/{id}/update``: replace the parts given."""
    handle = _handle(request)
    body = await v.json_body(request, optional=("spec", "action", "policy", "note"))
    note = body.get("note")
    change = ScheduleChange(
        spec=_record(body, "spec", ScheduleSpec),
        action=_record(body, "action", ScheduleAction),
        policy=_record(body, "policy", SchedulePolicy),
        note=None if note is None else v.text(note, "note", 1000),
    )
    described = await handle.update(
        spec=change.spec, action=change.action, policy=change.policy, note=change.note,
        timeout=UPDATE_TIMEOUT_S,
    )
    return web.json_response({"schedule": to_json(described)})


async def pause(request: web.Request) -> web.Response:
    """``POST /v1/schedules/{id}/pause``: stop firing."""
    return await _pause_or_unpause(request, pausing=True)


async def unpause(request: web.Request) -> web.Response:
    """``POST /v1/schedules/{id}/unpause``: fire again from now on."""
    return await _pause_or_unpause(request, pausing=False)


async def _pause_or_unpause(request: web.Request, *, pausing: bool) -> web.Response:
    handle = _handle(request)
    body = await v.json_body(request, optional=("note",), allow_empty=True)
    note = v.text(body.get("note", ""), "note", 1000)
    verb = handle.pause if pausing else handle.unpause
    await verb(note, timeout=UPDATE_TIMEOUT_S)
    return web.json_response({"schedule_id": handle.schedule_id, "paused": pausing})


async def trigger(request: web.Request) -> web.Response:
    """``POST /v1/schedules/{id}/trigger``: fire now; the firing's workflow id."""
    handle = _handle(request)
    body = await v.json_body(request, optional=("overlap",), allow_empty=True)
    wid = await handle.trigger(_overlap(body), timeout=UPDATE_TIMEOUT_S)
    return web.json_response({"schedule_id": handle.schedule_id, "workflow_id": wid})


async def backfill(request: web.Request) -> web.Response:
    """``POST /v1/schedules/{id}/backfill``: fire every nominal time in [start, end)."""
    handle = _handle(request)
    body = await v.json_body(request, required=("start", "end"), optional=("overlap",))
    try:
        start, end = parse_time(str(body["start"])), parse_time(str(body["end"]))
    except ValueError as exc:
        raise v.bad(str(exc)) from None
    ids = await handle.backfill(start, end, _overlap(body), timeout=MAX_WAIT_S)
    return web.json_response({"schedule_id": handle.schedule_id, "workflow_ids": ids})


async def delete(request: web.Request) -> web.Response:
    """``DELETE /v1/schedules/{id}``: end the schedule (running firings go on)."""
    handle = _handle(request)
    await handle.delete(timeout=UPDATE_TIMEOUT_S)
    return web.json_response({"schedule_id": handle.schedule_id, "deleted": True})


def routes() -> list[web.RouteDef]:
    """The schedule routes."""
    one = "/v1/schedules/{schedule_id}"
    return [
        web.post("/v1/schedules", create),
        web.get("/v1/schedules", list_schedules, allow_head=False),
        web.get(one, describe, allow_head=False),
        web.post(f"{one}/update", update),
        web.post(f"{one}/pause", pause),
        web.post(f"{one}/unpause", unpause),
        web.post(f"{one}/trigger", trigger),
        web.post(f"{one}/backfill", backfill),
        web.delete(one, delete),
    ]
