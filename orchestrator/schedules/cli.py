"""``saga schedule ...``: create, read and change schedules from the shell
(docs/schedules.md). Settings come from the environment like every ``saga`` command;
``list`` reads the visibility store (``DATABASE_URL``)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli_client import env_client
from orchestrator.config import Settings
from orchestrator.schedules.forms import (
    parse_duration_s,
    parse_overlap,
    parse_time,
    to_json,
)
from orchestrator.schedules.spec import (
    SCHEDULE_WORKFLOW,
    OverlapPolicy,
    ScheduleAction,
    ScheduleDescription,
    SchedulePolicy,
    ScheduleSpec,
)

if TYPE_CHECKING:
    from orchestrator.client import Client, ScheduleHandle

__all__ = ["register"]

_OVERLAPS = [p.value for p in OverlapPolicy]


_client = env_client  # shared by the saga subcommands' modules


def _handle(client: Client, schedule_id: str) -> ScheduleHandle:
    return client.schedule_handle(schedule_id)


def _when_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that say when a schedule fires and how it overlaps."""
    options = [
        click.option("--cron", "crons", multiple=True,
                     help="A 5-field cron expression on the time zone's wall clock (repeatable)."),
        click.option("--every", default=None, help="An interval: 30s, 5m, 1h, 1d."),
        click.option("--offset", default=None, help="Phase of the interval from the epoch (UTC)."),
        click.option("--time-zone", default=None, help="IANA zone for cron (default UTC)."),
        click.option("--jitter", default=None, help="Start each firing up to this much late."),
        click.option("--start-at", default=None, help="No firing before (ISO time with offset)."),
        click.option("--end-at", default=None, help="No firing after (ISO time with offset)."),
        click.option("--overlap", type=click.Choice(_OVERLAPS), default=None,
                     help="While a firing still runs (default skip)."),
        click.option("--catchup-window", default=None,
                     help="How late a missed firing may still start (default 5m)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _spec(base: ScheduleSpec | None, opts: dict[str, Any]) -> ScheduleSpec | None:
    """The spec the options give (over ``base``), or None when they give nothing."""
    keys = ("crons", "every", "offset", "time_zone", "jitter", "start_at", "end_at")
    if not any(opts.get(k) for k in keys):
        return None
    spec = base or ScheduleSpec()
    changes: dict[str, Any] = {}
    if opts.get("crons"):
        changes["cron"] = list(opts["crons"])
    if opts.get("every"):
        changes["interval_s"] = round(parse_duration_s(opts["every"]))
    if opts.get("offset"):
        changes["offset_s"] = round(parse_duration_s(opts["offset"]))
    if opts.get("time_zone"):
        changes["time_zone"] = opts["time_zone"]
    if opts.get("jitter"):
        changes["jitter_s"] = parse_duration_s(opts["jitter"])
    if opts.get("start_at"):
        changes["start_at"] = parse_time(opts["start_at"])
    if opts.get("end_at"):
        changes["end_at"] = parse_time(opts["end_at"])
    return dataclasses.replace(spec, **changes)


def _policy(base: SchedulePolicy | None, opts: dict[str, Any]) -> SchedulePolicy | None:
    if opts.get("overlap") is None and opts.get("catchup_window") is None:
        return None
    policy = base or SchedulePolicy()
    overlap = parse_overlap(opts.get("overlap")) or policy.overlap
    window = opts.get("catchup_window")
    seconds = parse_duration_s(window) if window else policy.catchup_window_s
    return SchedulePolicy(overlap=overlap, catchup_window_s=seconds)


def _args(input_json: str | None, args_json: str | None) -> list[Any]:
    try:
        if args_json is not None:
            found = json.loads(args_json)
            if not isinstance(found, list):
                raise click.BadParameter("--args must be a JSON list")
            return found
        return [] if input_json is None else [json.loads(input_json)]
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from exc


def _print(description: ScheduleDescription, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(to_json(description), sort_keys=True))
        return
    d = description
    when = [*(f"cron {c!r}" for c in d.spec.cron)]
    if d.spec.interval_s is not None:
        when.append(f"every {d.spec.interval_s}s (offset {d.spec.offset_s}s)")
    lines = [
        f"schedule {d.schedule_id}" + (" (PAUSED)" if d.paused else ""),
        f"  fires:     {', '.join(when)} in {d.spec.time_zone}, jitter {d.spec.jitter_s:g}s",
        f"  starts:    {d.action.workflow_type} on {d.action.task_queue} "
        f"with {json.dumps(d.action.args)}",
        f"  overlap:   {d.policy.overlap.value}, catch-up window {d.policy.catchup_window_s:g}s",
        f"  counts:    {d.started} started, {d.skipped} skipped, {d.missed} missed",
        f"  running:   {', '.join(d.running) or '-'}",
        f"  buffered:  {', '.join(t.isoformat() for t in d.buffered) or '-'}",
        f"  next:      {', '.join(t.isoformat() for t in d.next_times) or '-'}",
    ]
    if d.note:
        lines.insert(1, f"  note:      {d.note}")
    lines.append("  recent:")
    for a in d.recent:
        started = a.started_at.isoformat(timespec="seconds") if a.started_at else ""
        lines.append(f"    {a.nominal_time.isoformat()}  {a.kind.value:<9} {a.outcome:<10} "
                     f"{a.workflow_id}  {started}")
    click.echo("\n".join(lines))


@click.group("schedule")
def schedule() -> None:
    """Sagas that start on a calendar: create, list, describe and change schedules."""


@schedule.command("create")
@click.argument("schedule_id")
@click.option("--workflow", "workflow_type", required=True, help="Workflow type to start.")
@click.option("--task-queue", required=True)
@click.option("--input", "input_json", default=None, help="The workflow's input, as JSON.")
@click.option("--args", "args_json", default=None, help="Several arguments, as a JSON list.")
@_when_options
@click.option("--paused", is_flag=True, help="Create it paused.")
@click.option("--note", default="", help="Free text shown by describe.")
def create_command(
    schedule_id: str,
    *, workflow_type: str, task_queue: str, input_json: str | None,
    args_json: str | None, paused: bool, note: str, **opts: Any,
) -> None:
    """Create a schedule (an id that exists is left as it is)."""
    with _client() as client:
        spec = _spec(None, opts)
        if spec is None:
            raise click.UsageError("give --cron and/or --every")
        action = ScheduleAction(workflow_type, task_queue, _args(input_json, args_json))
        client.create_schedule(
            schedule_id, spec, action, _policy(None, opts), paused=paused, note=note
        )
    click.echo(f"created schedule {schedule_id}")


@schedule.command("describe")
@click.argument("schedule_id")
@click.option("--json", "as_json", is_flag=True, help="The description as JSON.")
def describe_command(schedule_id: str, as_json: bool) -> None:
    """Spec, counters, running firings, recent actions and the next firing times."""
    with _client() as client:
        _print(_handle(client, schedule_id).describe(), as_json)


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON description per line.")
@click.option("--database-url", default=None, help="PostgreSQL DSN (default: $DATABASE_URL).")
def list_command(as_json: bool, database_url: str | None) -> None:
    """Every schedule (from the visibility store), each described by its shard."""
    from orchestrator.visibility.store import VisibilityStore

    dsn = database_url or Settings.from_env().database_url

    async def ids() -> list[str]:
        found: list[str] = []
        after: str | None = None
        async with VisibilityStore(dsn) as store:
            while True:  # every page: a deployment may have more schedules than one holds
                rows, after = await store.list_runs(
                    status="running", workflow_type=SCHEDULE_WORKFLOW, limit=1000, after=after
                )
                found += (r.workflow_id.removeprefix("schedule:") for r in rows)
                if after is None:
                    return sorted(found)

    import psycopg

    try:
        found = asyncio.run(ids())
    except psycopg.Error as exc:
        raise click.ClickException(f"the visibility store did not answer: {exc}") from exc
    with _client() as client:
        for schedule_id in found:
            d = _handle(client, schedule_id).describe()
            if as_json:
                click.echo(json.dumps(to_json(d), sort_keys=True))
            else:
                nxt = d.next_times[0].isoformat() if d.next_times else "-"
                state = "paused" if d.paused else "active"
                click.echo(f"{schedule_id:<30} {state:<7} next {nxt}  {d.started} started, "
                           f"{d.skipped} skipped, {d.missed} missed, {len(d.running)} running")
    if not as_json:
        click.echo(f"{len(found)} schedule(s)")


@schedule.command("update")
@click.argument("schedule_id")
@click.option("--workflow", "workflow_type", default=None)
@click.option("--task-queue", default=None)
@click.option("--input", "input_json", default=None)
@click.option("--args", "args_json", default=None)
@_when_options
@click.option("--note", default=None)
def update_command(
    schedule_id: str,
    *, workflow_type: str | None, task_queue: str | None,
    input_json: str | None, args_json: str | None, note: str | None, **opts: Any,
) -> None:
    """Change what a schedule fires, when, or how it overlaps (the rest stays)."""
    with _client() as client:
        handle = _handle(client, schedule_id)
        current = handle.describe()
        action = None
        if workflow_type or task_queue or input_json is not None or args_json is not None:
            args = (_args(input_json, args_json) if input_json is not None or args_json
                    is not None else current.action.args)
            action = ScheduleAction(workflow_type or current.action.workflow_type,
                                    task_queue or current.action.task_queue, args)
        done = handle.update(spec=_spec(current.spec, opts), action=action,
                             policy=_policy(current.policy, opts), note=note)
    _print(done, False)


@schedule.command("pause")
@click.argument("schedule_id")
@click.option("--note", default="", help="Why (shown by describe).")
def pause_command(schedule_id: str, note: str) -> None:
    """Stop firing; firings due while paused never run."""
    with _client() as client:
        _handle(client, schedule_id).pause(note)
    click.echo(f"paused schedule {schedule_id}")


@schedule.command("unpause")
@click.argument("schedule_id")
@click.option("--note", default="", help="Shown by describe.")
def unpause_command(schedule_id: str, note: str) -> None:
    """Fire again, from now on."""
    with _client() as client:
        _handle(client, schedule_id).unpause(note)
    click.echo(f"unpaused schedule {schedule_id}")


@schedule.command("trigger")
@click.argument("schedule_id")
@click.option("--overlap", type=click.Choice(_OVERLAPS), default=None)
def trigger_command(schedule_id: str, overlap: str | None) -> None:
    """Fire now (also while paused), under the overlap policy."""
    with _client() as client:
        wid = _handle(client, schedule_id).trigger(parse_overlap(overlap))
    click.echo(f"triggered {wid}")


@schedule.command("backfill")
@click.argument("schedule_id")
@click.option("--start", "start_text", required=True, help="ISO time with offset (inclusive).")
@click.option("--end", "end_text", required=True, help="ISO time with offset (exclusive).")
@click.option("--overlap", type=click.Choice(_OVERLAPS), default=None)
def backfill_command(schedule_id: str, start_text: str, end_text: str, overlap: str | None) -> None:
    """Fire every nominal time of the spec in [start, end) now, in order."""
    with _client() as client:
        try:
            start, end = parse_time(start_text), parse_time(end_text)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
        ids = _handle(client, schedule_id).backfill(start, end, parse_overlap(overlap))
    for wid in ids:
        click.echo(wid)
    click.echo(f"{len(ids)} firing(s) queued")


@schedule.command("delete")
@click.argument("schedule_id")
def delete_command(schedule_id: str) -> None:
    """End the schedule; firings that run go on to their end."""
    with _client() as client:
        _handle(client, schedule_id).delete()
    click.echo(f"deleted schedule {schedule_id}")


def register(main: click.Group) -> None:
    """Add ``saga schedule`` to the CLI."""
    main.add_command(schedule)
