"""``saga activity ...``: complete, fail or heartbeat an activity attempt by its task
token (an activity that raised ``activity.CompleteAsync``; docs/concepts.md), and
pause, unpause or list paused activity types of a task queue (docs/operations.md).
Settings come from the environment like every ``saga`` command."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from orchestrator.cli_client import env_client
from orchestrator.config import Settings
from orchestrator.exceptions import ApplicationError
from orchestrator.serde.records import ActivityPause
from orchestrator.task_token import InvalidTaskTokenError, TaskToken, attempt_signature

__all__ = ["register"]


_client = env_client  # shared by the saga subcommands' modules


def _token(token: str) -> TaskToken:
    try:
        return TaskToken.decode(token)
    except InvalidTaskTokenError as exc:
        raise click.BadParameter(str(exc), param_hint="TOKEN") from None


def _json(text: str | None, option: str, *, as_list: bool = False) -> Any:
    if text is None:
        return [] if as_list else None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None
    if as_list and not isinstance(value, list):
        raise click.BadParameter("must be a JSON list", param_hint=option)
    return value


def _send(t: TaskToken, what: str, call: Callable[[], None], *, answered: bool = True) -> None:
    """Send an outcome and print the engine's answer; a refusal exits with status 1.
    ``answered`` False (``--wait 0``): only sent, so say that much."""
    try:
        call()
    except ApplicationError as exc:  # a refusal: not running, closed, bad signature
        raise click.ClickException(
            f"{' '.join(str(exc).split())} (workflow {t.workflow_id} run {t.run_id})\n"
            f"hint: `saga history {t.workflow_id}` shows how the attempt ended"
        ) from exc
    click.echo(
        f"{what if answered else 'sent, not waited for'}: workflow {t.workflow_id} "
        f"run {t.run_id} activity {t.activity_seq} attempt {t.attempt}"
    )


_WAIT = click.option(
    "--wait", type=click.FloatRange(min=0), default=10.0, show_default=True,
    help="Seconds to wait for the engine's answer (no answer: exit status 1; "
    "0: send and return).",
)


@click.group()
def activity() -> None:
    """Finish an attempt by its task token; pause or unpause an activity type."""


@activity.command()
@click.argument("token")
@click.option("--result", "result_json", default=None, help="The activity's result, as JSON.")
@_WAIT
def complete(token: str, result_json: str | None, wait: float) -> None:
    """Complete the attempt TOKEN names with --result. Refused (status 1, nothing
    changes) if that attempt is not running: it ended, timed out or was completed."""
    t = _token(token)
    result = _json(result_json, "--result")
    with _client() as client:
        _send(t, "completed", lambda: client.complete_activity(token, result, wait=wait or None),
              answered=bool(wait))


@activity.command()
@click.argument("token")
@click.option("--message", required=True, help="What went wrong.")
@click.option("--type", "error_type", default="ApplicationError", show_default=True,
              help="The error type (retry policies match non_retryable_errors on it).")
@click.option("--non-retryable", is_flag=True, help="Fail the activity for good (no retry).")
@click.option("--details", "details_json", default=None, help="Error details, a JSON list.")
@_WAIT
def fail(
    token: str, message: str, *, error_type: str, non_retryable: bool,
    details_json: str | None, wait: float,
) -> None:
    """Fail the attempt TOKEN names; the workflow's retry policy decides what follows.
    Refused like `complete` if that attempt is not running."""
    t = _token(token)
    details = _json(details_json, "--details", as_list=True)
    with _client() as client:
        _send(t, "failed", lambda: client.fail_activity(
            token, message, error_type=error_type, non_retryable=non_retryable,
            details=details, wait=wait or None,
        ), answered=bool(wait))


@activity.command()
@click.argument("token")
@click.option("--details", "details_json", default=None, help="Progress details, a JSON list.")
@_WAIT
def heartbeat(token: str, details_json: str | None, wait: float) -> None:
    """Heartbeat the attempt TOKEN names (keeps its heartbeat timeout from passing).
    Refused like `complete` if that attempt is not running."""
    t = _token(token)
    details = _json(details_json, "--details", as_list=True)
    with _client() as client:
        _send(t, "heartbeat sent", lambda: client.heartbeat_activity(
            token, *details, wait=wait or None
        ), answered=bool(wait))


@activity.command()
@click.argument("token")
def decode(token: str) -> None:
    """Print what TOKEN names, as JSON (no Kafka needed)."""
    t = _token(token)
    click.echo(json.dumps({"workflow_id": t.workflow_id, "run_id": t.run_id,
                           "activity_seq": t.activity_seq, "attempt": t.attempt}))


@activity.command()
@click.argument("workflow_id")
@click.argument("run_id")
@click.argument("activity_seq", type=int)
@click.argument("attempt", type=int)
def token(workflow_id: str, run_id: str, activity_seq: int, attempt: int) -> None:
    """Print the token of an attempt read from `saga history` (no Kafka needed), signed
    with $SAGA_TASK_TOKEN_KEY when it is set, as the engine workers that have the key
    require."""
    key = Settings.from_env().task_token_key.encode()
    try:
        signature = (
            attempt_signature(key, workflow_id, run_id, activity_seq, attempt) if key else ""
        )
        click.echo(TaskToken(workflow_id, run_id, activity_seq, attempt, signature).encode())
    except InvalidTaskTokenError as exc:
        raise click.BadParameter(str(exc)) from None


def _pause_text(p: ActivityPause) -> str:
    state = "paused" if p.paused else "unpaused"
    when = datetime.fromtimestamp(p.time / 1000, tz=UTC).isoformat(timespec="seconds")
    who = f" by {p.operator}" if p.operator else ""
    why = f": {p.reason}" if p.reason else ""
    return f"{p.task_queue}  {p.activity_type}  {state} {when}{who}{why}"


def _pause_dict(p: ActivityPause) -> dict[str, Any]:
    return {
        "task_queue": p.task_queue, "activity_type": p.activity_type, "paused": p.paused,
        "reason": p.reason, "operator": p.operator, "time": p.time,
    }


@activity.command()
@click.argument("activity_type")
@click.option("--task-queue", "-q", required=True, help="The task queue the type runs on.")
@click.option("--reason", default="", help="Why (recorded with the pause).")
@click.option("--operator", default=None, help="Who (default: the login name).")
def pause(activity_type: str, task_queue: str, reason: str, operator: str | None) -> None:
    """Pause ACTIVITY_TYPE on --task-queue: its tasks wait at the workers, unstarted;
    nothing fails and no retry is spent. Other types keep running."""
    with _client() as client:
        try:
            record = client.pause_activity_type(
                task_queue, activity_type, reason=reason, operator=operator
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    click.echo(_pause_text(record))


@activity.command()
@click.argument("activity_type")
@click.option("--task-queue", "-q", required=True, help="The task queue the type runs on.")
@click.option("--reason", default="", help="Why (recorded with the unpause).")
@click.option("--operator", default=None, help="Who (default: the login name).")
def unpause(activity_type: str, task_queue: str, reason: str, operator: str | None) -> None:
    """Unpause ACTIVITY_TYPE on --task-queue: the held tasks start."""
    with _client() as client:
        try:
            record = client.unpause_activity_type(
                task_queue, activity_type, reason=reason, operator=operator
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    click.echo(_pause_text(record))


@activity.command()
@click.option("--task-queue", "-q", default=None, help="Only this queue (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def paused(task_queue: str | None, *, as_json: bool) -> None:
    """List the paused activity types (who paused them, when and why)."""
    with _client() as client:
        found = client.paused_activity_types(task_queue)
    if as_json:
        click.echo(json.dumps([_pause_dict(p) for p in found], sort_keys=True))
        return
    if not found:
        click.echo("no activity type is paused")
    for p in found:
        click.echo(_pause_text(p))


def register(main: click.Group) -> None:
    """Add ``saga activity`` to the CLI."""
    main.add_command(activity)
