"""``saga batch ...``: start, follow, list and cancel batch jobs from the shell
(docs/batch.md); ``saga reset --bad-build`` starts one too. Settings come from the
environment like every ``saga`` command; the dry run and ``list`` read the
visibility store (``DATABASE_URL``)."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from orchestrator.batch.spec import (
    BATCH_WORKFLOW,
    BatchDescription,
    BatchFilter,
    BatchOp,
    BatchOperation,
    BatchStatus,
    parked_filter,
)
from orchestrator.cli_client import env_client
from orchestrator.config import Settings
from orchestrator.schedules.forms import parse_time
from orchestrator.visibility import DEFAULT_TABLE

if TYPE_CHECKING:
    from orchestrator.client import Client
    from orchestrator.visibility.store import RunRow

__all__ = ["dry_run_rows", "progress_line", "register", "start_and_report"]

_BAR = 30


def progress_line(d: BatchDescription) -> str:
    """One line: a bar over the total estimate, the counts, and the status."""
    t = d.totals
    total = d.total or 0
    done = min(t.processed, total) if total else 0
    filled = round(_BAR * done / total) if total else _BAR
    bar = "#" * filled + "." * (_BAR - filled)
    doubt = f" in-doubt={t.in_doubt}" if t.in_doubt else ""
    return (f"[{bar}] {t.processed}/{total} done={t.done} skipped={t.skipped} "
            f"failed={t.failed}{doubt} {d.status.value}")


def dry_run_rows(
    dsn: str, filter: BatchFilter, table: str = DEFAULT_TABLE, *, op: BatchOp = BatchOp.RESET
) -> list[RunRow]:
    """Every run a batch of ``op`` with ``filter`` started now would deal with, in its
    order (parked runs only for a reset, as the batch lists them)."""
    from orchestrator.visibility.store import VisibilityStore

    now = datetime.now(UTC)
    if filter.started_before is None or filter.started_before > now:
        filter = dataclasses.replace(filter, started_before=now)

    async def fetch() -> list[RunRow]:
        rows: list[RunRow] = []
        after: str | None = None
        async with VisibilityStore(dsn, table=table) as store:
            while True:
                page, after = await store.list_runs(
                    **filter.store_args(), parked=parked_filter(op), limit=1000, after=after
                )
                rows += page
                if after is None:
                    return rows

    return asyncio.run(fetch())


def _follow(client: Client, batch_id: str, every_s: float = 1.0) -> BatchDescription:
    """Print progress until the batch ends: one updating line on a terminal, else a
    line each time it changes. A shard that does not answer for a while (its engine
    restarting) is waited for."""
    from orchestrator.exceptions import ReplyTimeoutError

    handle = client.batch_handle(batch_id)
    tty = sys.stdout.isatty()
    shown = ""
    while True:
        try:
            d = handle.describe()
        except ReplyTimeoutError:
            time.sleep(every_s)
            continue
        line = progress_line(d)
        done = d.status is not BatchStatus.RUNNING
        if tty:
            click.echo("\r" + line, nl=done)
        elif line != shown:
            click.echo(line)
        shown = line
        if done:
            return d
        time.sleep(every_s)


def start_and_report(
    batch_id: str,
    operation: BatchOperation,
    filter: BatchFilter,
    *,
    rate: float,
    page_size: int,
    follow: bool,
    allow_all: bool = False,
) -> BatchDescription | None:
    """Start the batch; with ``follow``, print its progress until it ends."""
    with env_client() as client:
        client.start_batch(
            batch_id, operation, filter, rate=rate, page_size=page_size, allow_all=allow_all
        )
        click.echo(f"started batch {batch_id} ({operation.op.value})")
        return _follow(client, batch_id) if follow else None


def _search_terms(terms: tuple[str, ...]) -> dict[str, Any]:
    from orchestrator.visibility.cli import _search_terms as parse

    return parse(terms)


def _time(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from exc


def _filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The run filters, as ``saga list`` takes them."""
    options = [
        click.option("--type", "workflow_type", default=None, help="Workflow type."),
        click.option("--status", default=None, help="RUNNING, COMPLETED, FAILED, ... (any case)."),
        click.option("--build-id", default=None,
                     help="Runs a worker of this build made decisions for."),
        click.option("--search", "terms", multiple=True,
                     help="key=value on search attributes (repeatable), as for `saga list`."),
        click.option("--started-after", default=None, help="ISO time with offset (inclusive)."),
        click.option("--started-before", default=None, help="ISO time with offset (exclusive)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _new_id(op: str) -> str:
    return f"{op}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"


def register(main: click.Group, operator_of: Callable[[str | None], str]) -> None:  # noqa: PLR0915 - one nested command per verb
    """Add ``saga batch ...`` to the ``saga`` group."""

    @main.group()
    def batch() -> None:
        """Batch jobs: one operation on every run a visibility filter matches."""

    @batch.command("start")
    @click.argument("op", type=click.Choice([o.value for o in BatchOp]))
    @_filter_options
    @click.option("--id", "batch_id", default=None, help="Batch id (default: <op>-<time>).")
    @click.option("--rate", default=10.0, show_default=True, type=click.FloatRange(min=0),
                  help="Operations per second at most (0: as fast as the shards answer).")
    @click.option("--page-size", default=100, show_default=True, type=click.IntRange(1, 1000))
    @click.option("--reason", default="", help="Recorded with every operation.")
    @click.option("--operator", default=None, help="Who asks (default: user@host).")
    @click.option("--signal", "signal_name", default=None, help="signal: the signal's name.")
    @click.option("--args", "args_json", default="[]", help="signal: arguments, a JSON list.")
    @click.option("--bad-build", default=None, help="reset: to just before this build's "
                  "first decision.")
    @click.option("--to-event", "event_seq", type=int, default=None, help="reset: to event N.")
    @click.option("--exclude-signals", is_flag=True, help="reset: drop later signals.")
    @click.option("--all", "allow_all", is_flag=True, help="Allow a filter that matches all.")
    @click.option("--dry-run", is_flag=True, help="List the runs it would touch; start nothing.")
    @click.option("--follow", is_flag=True, help="Show progress until the batch ends.")
    @click.option("--database-url", default=None, help="PostgreSQL DSN (dry run).")
    def start(  # noqa: PLR0917 - click passes the options by position
        op: str, workflow_type: str | None, status: str | None, build_id: str | None,
        terms: tuple[str, ...], started_after: str | None, started_before: str | None,
        batch_id: str | None, rate: float, page_size: int, reason: str, operator: str | None,
        signal_name: str | None, args_json: str, bad_build: str | None, event_seq: int | None,
        exclude_signals: bool, allow_all: bool, dry_run: bool, follow: bool,
        database_url: str | None,
    ) -> None:
        """Apply OP (reset, signal, cancel, terminate, pause, unpause) to every run the
        filters match, as a durable job of the engine workers."""
        try:
            args = json.loads(args_json)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--args") from exc
        if not isinstance(args, list):
            raise click.BadParameter("expected a JSON list", param_hint="--args")
        operation = BatchOperation(
            BatchOp(op), reason=reason, operator=operator_of(operator), bad_build=bad_build,
            event_seq=event_seq, exclude_signals=exclude_signals, signal_name=signal_name,
            signal_args=args if op == BatchOp.SIGNAL else [],
        )
        filter_ = BatchFilter(
            workflow_type=workflow_type, status=status, build_id=build_id,
            search=_search_terms(terms), started_after=_time(started_after, "--started-after"),
            started_before=_time(started_before, "--started-before"),
        )
        problems = operation.problems()
        if filter_.is_empty() and not allow_all:
            problems.append("the filters match every run; add --all if that is meant")
        if problems:
            raise click.UsageError("; ".join(problems))
        if dry_run:
            dsn = database_url or Settings.from_env().database_url
            rows = dry_run_rows(dsn, filter_, op=operation.op)
            for row in rows:
                click.echo(f"would {op} {row.workflow_id} run {row.run_id} ({row.status})")
            click.echo(f"{len(rows)} run(s) would be touched")
            return
        start_and_report(batch_id or _new_id(op), operation, filter_, rate=rate,
                         page_size=page_size, follow=follow, allow_all=allow_all)

    @batch.command("describe")
    @click.argument("batch_id")
    @click.option("--follow", is_flag=True, help="Show progress until the batch ends.")
    @click.option("--json", "as_json", is_flag=True, help="As one JSON object.")
    def describe(batch_id: str, follow: bool, as_json: bool) -> None:
        """Status, counts (done, skipped, failed) and samples of why."""
        with env_client() as client:
            d = _follow(client, batch_id) if follow else client.batch_handle(batch_id).describe()
        if as_json:
            click.echo(json.dumps(description_json(d), sort_keys=True))
            return
        if not follow:
            click.echo(progress_line(d))
        click.echo(f"batch {d.batch_id}: {d.operation.op.value}, {d.status.value}, "
                   f"{d.pages} page(s), {d.listed} listed, total estimate {d.total}")
        for key, why in d.totals.skipped_sample.items():
            click.echo(f"  skipped {key}: {why}")
        for key, why in d.totals.failed_sample.items():
            click.echo(f"  failed {key}: {why}")

    @batch.command("cancel")
    @click.argument("batch_id")
    @click.option("--reason", default="", help="Why.")
    def cancel(batch_id: str, reason: str) -> None:
        """Stop a batch after the page under way."""
        with env_client() as client:
            d = client.batch_handle(batch_id).cancel(reason)
        click.echo(f"cancelling batch {batch_id}: {progress_line(d)}")

    @batch.command("list")
    @click.option("--limit", default=50, show_default=True)
    @click.option("--database-url", default=None, help="PostgreSQL DSN.")
    def list_batches(limit: int, database_url: str | None) -> None:
        """Batch jobs, newest first, from the visibility store."""
        from orchestrator.visibility.store import VisibilityStore

        dsn = database_url or Settings.from_env().database_url

        async def fetch() -> list[RunRow]:
            async with VisibilityStore(dsn) as store:
                rows, _ = await store.list_runs(workflow_type=BATCH_WORKFLOW, limit=limit)
                return rows

        seen: set[str] = set()
        for row in asyncio.run(fetch()):
            if row.workflow_id in seen:  # one line per batch: its latest run
                continue
            seen.add(row.workflow_id)
            batch_id = row.workflow_id.removeprefix("batch:")
            click.echo(f"{batch_id}  {row.status}  started {row.start_time.isoformat()}")


def description_json(d: BatchDescription) -> dict[str, Any]:
    """A JSON-safe dict of a description (times ISO 8601, enums by value)."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    out: dict[str, Any] = plain(dataclasses.asdict(d))
    return out


def bad_build_batch_id(build_id: str) -> str:
    """The id ``saga reset --bad-build`` gives its batch (build id made id-safe, and time)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", build_id)[:120]
    return f"reset-bad-build-{safe}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}"
