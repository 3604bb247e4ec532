"""``saga projector``, ``saga list`` and ``saga visibility ...``: visibility from the shell.

Settings come from the environment like every ``saga`` command (``DATABASE_URL``,
``KAFKA_BOOTSTRAP_SERVERS``, ``SAGA_TOPIC_PREFIX``, ``SAGA_SHARDS``, ``SAGA_KAFKA_*``);
``--database-url`` overrides ``DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from orchestrator.config import Settings
from orchestrator.log.topics import TopicLayout
from orchestrator.visibility import DEFAULT_TABLE

__all__ = ["register"]

log = logging.getLogger("orchestrator.visibility.cli")

_DSN_HELP = "PostgreSQL DSN (default: $DATABASE_URL)."


def _settings(
    database_url: str | None, bootstrap: str | None = None, prefix: str | None = None
) -> tuple[Settings, str, TopicLayout]:
    settings = Settings.from_env()
    if bootstrap:
        settings = dataclasses.replace(settings, bootstrap_servers=bootstrap)
    if prefix:
        settings = dataclasses.replace(settings, topic_prefix=prefix)
    layout = TopicLayout(prefix=settings.topic_prefix, shards=settings.shards)
    return settings, database_url or settings.database_url, layout


def _kafka_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--bootstrap`` and ``--prefix``, as ``saga http`` has them."""
    command = click.option(
        "--prefix", default=None, help="Topic prefix [SAGA_TOPIC_PREFIX, else saga]."
    )(command)
    return click.option(
        "--bootstrap", default=None, help="Kafka bootstrap servers [KAFKA_BOOTSTRAP_SERVERS]."
    )(command)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


@click.command()
@click.option("--database-url", default=None, help=_DSN_HELP)
@click.option("--table", default=DEFAULT_TABLE, show_default=True, help="Runs table.")
@click.option(
    "--report-seconds", default=30.0, show_default=True, help="Log counters this often (0: never)."
)
@_kafka_options
def projector(
    database_url: str | None,
    table: str,
    report_seconds: float,
    bootstrap: str | None,
    prefix: str | None,
) -> None:
    """Project <prefix>.history into PostgreSQL until SIGTERM or Ctrl-C.

    One projector per table is active at a time; extra ones wait as standbys.
    """
    from orchestrator.visibility.projector import Projector

    settings, dsn, layout = _settings(database_url, bootstrap, prefix)
    log.info("settings: %s", settings.redacted())
    runner = Projector(dsn, settings.kafka_config(), layout, table=table)
    stop = _stop_on_signals()
    runner.start()
    click.echo("ready", err=True)
    while runner.error is None and not stop.wait(report_seconds or 3600):
        if report_seconds:
            m = runner.metrics
            log.info(
                "projector: active=%s records=%d events=%d batches=%d rows_upserted=%d "
                "rows_deleted=%d undecodable=%d pg_errors=%d",
                m.active,
                m.records,
                m.events,
                m.batches,
                m.rows_upserted,
                m.rows_deleted,
                m.undecodable,
                m.pg_errors,
            )
    runner.stop()
    if runner.error is not None:
        log.error("projector failed: %s", runner.error)
        sys.exit(1)


def _search_terms(terms: tuple[str, ...]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for term in terms:
        key, sep, raw = term.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {term!r}", param_hint="--search")
        try:
            found[key] = json.loads(raw)
        except ValueError:
            found[key] = raw  # a bare word is a string
    return found


@click.command("list")
@click.option("--status", default=None, help="RUNNING, COMPLETED, FAILED, ... (any case).")
@click.option("--type", "workflow_type", default=None, help="Workflow type.")
@click.option(
    "--search",
    "terms",
    multiple=True,
    help="key=value on search attributes (repeatable); the value is JSON if it parses, "
    "else a string: customer=acme, priority=3, vip=true, code='\"007\"'.",
)
@click.option(
    "--build-id", default=None, help="Runs a worker of this build made decisions for."
)
@click.option("--limit", default=50, show_default=True)
@click.option("--after", default=None, help="Cursor printed by the previous page.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--database-url", default=None, help=_DSN_HELP)
@click.option("--table", default=DEFAULT_TABLE, show_default=True)
def list_runs(
    *,
    status: str | None,
    workflow_type: str | None,
    terms: tuple[str, ...],
    build_id: str | None,
    limit: int,
    after: str | None,
    as_json: bool,
    database_url: str | None,
    table: str,
) -> None:
    """List runs, newest first, from the visibility store."""
    from orchestrator.visibility.store import RunRow, VisibilityStore

    _, dsn, _ = _settings(database_url)
    search = _search_terms(terms)

    async def fetch() -> tuple[list[RunRow], str | None]:
        async with VisibilityStore(dsn, table=table) as store:
            return await store.list_runs(
                status=status,
                workflow_type=workflow_type,
                search=search,
                build_id=build_id,
                limit=limit,
                after=after,
            )

    try:
        found, cursor = asyncio.run(fetch())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if as_json:
        for row in found:
            click.echo(json.dumps(row.to_json(), sort_keys=True))
    else:
        _print_table(found)
    if cursor is not None:
        click.echo(f"next page: --after {cursor}", err=True)


@click.command("count")
@click.option("--status", default=None, help="RUNNING, COMPLETED, FAILED, ... (any case).")
@click.option("--type", "workflow_type", default=None, help="Workflow type.")
@click.option("--search", "terms", multiple=True, help="key=value, as for `saga list`.")
@click.option(
    "--build-id", default=None, help="Runs a worker of this build made decisions for."
)
@click.option("--database-url", default=None, help=_DSN_HELP)
@click.option("--table", default=DEFAULT_TABLE, show_default=True)
def count_runs(
    *,
    status: str | None,
    workflow_type: str | None,
    terms: tuple[str, ...],
    build_id: str | None,
    database_url: str | None,
    table: str,
) -> None:
    """How many runs `saga list` would list with these filters (every page)."""
    from orchestrator.visibility.store import VisibilityStore

    _, dsn, _ = _settings(database_url)
    search = _search_terms(terms)

    async def fetch() -> int:
        async with VisibilityStore(dsn, table=table) as store:
            return await store.count_runs(
                status=status, workflow_type=workflow_type, search=search, build_id=build_id
            )

    click.echo(str(asyncio.run(fetch())))


@click.command("stats")
@click.option("--minutes", default=15, show_default=True, help="How many minutes back (1-1440).")
@click.option("--type", "workflow_type", default=None, help="One workflow type.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per type and minute.")
@click.option("--database-url", default=None, help=_DSN_HELP)
@click.option("--table", default=DEFAULT_TABLE, show_default=True)
def stats_command(
    *, minutes: int, workflow_type: str | None, as_json: bool, database_url: str | None, table: str
) -> None:
    """Per workflow type and minute: starts, closes by status, start-to-close percentiles."""
    from orchestrator.visibility.store import VisibilityStore
    from orchestrator.visibility.windows import MAX_MINUTES, MinuteStats, last_minutes

    if not 1 <= minutes <= MAX_MINUTES:
        raise click.UsageError(f"--minutes must be from 1 to {MAX_MINUTES}")
    _, dsn, _ = _settings(database_url)
    since, until = last_minutes(minutes)

    async def fetch() -> list[MinuteStats]:
        async with VisibilityStore(dsn, table=table) as store:
            return await store.minute_stats(since, until, workflow_type)

    found = asyncio.run(fetch())
    if as_json:
        for row in found:
            click.echo(json.dumps(row.to_json(), sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    out = Table(show_lines=False)
    for name in ("minute (UTC)", "type", "started", "closed", "by status", "p50", "p90", "p99"):
        out.add_column(name, overflow="fold")
    for row in found:
        out.add_row(
            row.minute.strftime("%Y-%m-%d %H:%M"),
            row.workflow_type,
            str(row.started),
            str(row.closed),
            ", ".join(f"{k} {n}" for k, n in sorted(row.by_status.items())),
            *(f"{p:.0f} ms" if p is not None else "" for p in (row.p50_ms, row.p90_ms, row.p99_ms)),
        )
    Console().print(out)


def _print_table(found: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    for name in ("workflow id", "run", "type", "status", "started", "closed", "step", "search"):
        table.add_column(name, overflow="fold")
    for row in found:
        table.add_row(
            row.workflow_id,
            row.run_id[:8],
            f"{row.workflow_type} v{row.workflow_version}",
            row.status + (" (parked)" if row.parked else "") + (" (paused)" if row.paused else ""),
            row.start_time.isoformat(timespec="seconds"),
            row.close_time.isoformat(timespec="seconds") if row.close_time else "",
            row.current_step or "",
            json.dumps(row.search_attributes, sort_keys=True) if row.search_attributes else "",
        )
    Console().print(table)
    click.echo(f"{len(found)} run(s)")


@click.group()
def visibility() -> None:
    """Rebuild and check the visibility projection."""


@visibility.command("rebuild")
@click.option("--into", required=True, help="Table to (re)create and fill from offset 0.")
@click.option("--database-url", default=None, help=_DSN_HELP)
@click.option(
    "--table", default=DEFAULT_TABLE, show_default=True, help="The live table (never the target)."
)
@_kafka_options
def rebuild_command(
    into: str, database_url: str | None, table: str, bootstrap: str | None, prefix: str | None
) -> None:
    """Project the whole history topic into a new table (the live one is untouched)."""
    from orchestrator.visibility.rebuild import rebuild
    from orchestrator.visibility.schema import validate_table

    if validate_table(into) == validate_table(table):
        raise click.UsageError(f"--into must differ from the live table {table!r}")
    settings, dsn, layout = _settings(database_url, bootstrap, prefix)
    stats = rebuild(dsn, settings.kafka_config(), layout, into=into)
    click.echo(
        f"rebuilt {into}: {stats.rows} runs from {stats.records} records "
        f"({stats.events} events, {stats.undecodable} undecodable) in {stats.seconds:.2f}s"
    )


@visibility.command("check")
@click.option("--database-url", default=None, help=_DSN_HELP)
@click.option("--table", default=DEFAULT_TABLE, show_default=True)
@click.option("--scratch", default=None, help="Scratch table prefix (default <table>_check).")
@click.option("--keep", is_flag=True, help="Keep the scratch tables for inspection.")
@_kafka_options
def check_command(
    *,
    database_url: str | None,
    table: str,
    scratch: str | None,
    keep: bool,
    bootstrap: str | None,
    prefix: str | None,
) -> None:
    """Compare the live projection with a rebuild from the log (exit 1 on a difference)."""
    from orchestrator.visibility.compare import check

    settings, dsn, layout = _settings(database_url, bootstrap, prefix)
    result = check(dsn, settings.kafka_config(), layout, table=table, scratch=scratch, keep=keep)
    for difference in result.differences:
        click.echo(f"DIFF {difference}")
    lag = sum(result.behind.values())
    click.echo(
        f"{table}: {result.live_rows} runs, {len(result.differences)} difference(s) with a "
        f"rebuild of the same {result.rebuild.records} records; projection "
        + (f"{lag} offsets behind the log end" if lag else "at the log end")
    )
    if result.differences:
        sys.exit(1)


def register(main: click.Group) -> None:
    """Add the visibility commands to the ``saga`` CLI."""
    main.add_command(projector)
    main.add_command(list_runs)
    main.add_command(count_runs)
    main.add_command(stats_command)
    main.add_command(visibility)
