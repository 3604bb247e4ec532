"""Operator verbs of the ``saga`` CLI kept apart from :mod:`orchestrator.cli`:
``saga repair`` (a run that ended COMPENSATION_FAILED) and ``saga stack`` (where a
running workflow waits).

Registered on the ``saga`` group by :mod:`orchestrator.cli`, which passes the two
helpers the commands share (the client and the operator's name).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import click

from orchestrator.cli_errors import expected_error_text
from orchestrator.cli_text import jsonable
from orchestrator.exceptions import OrchestratorError, WorkflowFailedError
from orchestrator.retry import RetryPolicy

__all__ = ["json_list", "key_values", "register", "retry_policy"]


def json_list(text: str) -> list[Any]:
    """A ``--args`` option: a JSON list."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--args") from exc
    if not isinstance(value, list):
        raise click.BadParameter("must be a JSON list, e.g. '[1, \"a\"]'", param_hint="--args")
    return value


def key_values(terms: tuple[str, ...], option: str) -> dict[str, Any]:
    """Repeated ``key=value`` options; the value is JSON if it parses, else a string."""
    found: dict[str, Any] = {}
    for term in terms:
        key, sep, raw = term.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {term!r}", param_hint=option)
        try:
            found[key] = json.loads(raw)
        except ValueError:
            found[key] = raw  # a bare word is a string
    return found


def retry_policy(
    max_attempts: int | None,
    initial: float | None,
    maximum: float | None,
    backoff: float | None,
    expire_after: float | None,
) -> RetryPolicy | None:
    """The policy the options describe (defaults for those not given), or None when
    no option is given: the failed compensations keep their own policy."""
    given = (max_attempts, initial, maximum, backoff, expire_after)
    if all(v is None for v in given):
        return None
    base = RetryPolicy()
    return RetryPolicy(
        initial=timedelta(seconds=initial) if initial is not None else base.initial,
        backoff=backoff if backoff is not None else base.backoff,
        maximum=timedelta(seconds=maximum) if maximum is not None else base.maximum,
        max_attempts=max_attempts if max_attempts is not None else base.max_attempts,
        expire_after=timedelta(seconds=expire_after) if expire_after is not None else None,
    )


def register(
    main: click.Group, client: Callable[[], Any], operator_of: Callable[[str | None], str]
) -> None:
    """Add ``saga repair``, ``stack``, ``query``, ``update`` and ``result`` to ``main``."""
    _register_run_reads(main, client)
    _register_operator(main, client, operator_of)


def _register_operator(
    main: click.Group, client: Callable[[], Any], operator_of: Callable[[str | None], str]
) -> None:
    """``saga stack`` and ``saga repair``."""
    @main.command()
    @click.argument("workflow_id")
    @click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
    @click.option("--timeout", default=10.0, show_default=True,
                  help="Seconds to wait for the shard.")
    def stack(workflow_id: str, as_json: bool, timeout: float) -> None:
        """Where each task of a running workflow waits: the file:line and function of
        its innermost workflow-code frame, and what it awaits."""
        c = client()
        try:
            tasks = c.get_handle(workflow_id).stack(timeout=timeout)
        except OrchestratorError as exc:  # closed, parked, unknown, or no answer in time
            hint = "a stack exists only while the run is open; see `saga describe`"
            raise click.ClickException(f"stack {workflow_id}: {exc}\nhint: {hint}") from exc
        finally:
            c.close()
        if as_json:
            click.echo(json.dumps([t.to_json() for t in tasks], indent=2))
            return
        for task in tasks:
            click.echo(f"{task.task}: awaiting {task.awaiting}")
            for frame in reversed(task.frames):  # innermost first, as a traceback's end
                click.echo(f"    {frame}")

    @main.command()
    @click.argument("workflow_id")
    @click.option("--retry", "retry_flag", is_flag=True,
                  help="Run the failed compensations again.")
    @click.option("--skip", default=None, metavar="STEP",
                  help="Count this failed compensation (its activity type) as done.")
    @click.option("--max-attempts", type=click.IntRange(min=0), default=None,
                  help="With --retry: attempts under the new policy (0 = unlimited).")
    @click.option("--initial", type=click.FloatRange(min=0), default=None,
                  help="With --retry: first retry delay, seconds.")
    @click.option("--maximum", type=click.FloatRange(min=0), default=None,
                  help="With --retry: cap on the retry delay, seconds.")
    @click.option("--backoff", type=click.FloatRange(min=1), default=None,
                  help="With --retry: delay multiplier per attempt.")
    @click.option("--expire-after", type=click.FloatRange(min=0), default=None,
                  help="With --retry: give up this many seconds after the first attempt.")
    @click.option("--reason", required=True, help="Why, recorded in the run's history.")
    @click.option("--operator", default=None, help="Who asks (default: user@host).")
    @click.option("--wait", default=30.0, show_default=True,
                  help="Seconds to wait for the shard.")
    def repair(  # noqa: PLR0917 - click passes the options by position
        workflow_id: str,
        retry_flag: bool,
        skip: str | None,
        max_attempts: int | None,
        initial: float | None,
        maximum: float | None,
        backoff: float | None,
        expire_after: float | None,
        reason: str,
        operator: str | None,
        wait: float,
    ) -> None:
        """Repair a run that ended COMPENSATION_FAILED: --retry its failed compensations
        (optionally under a new policy) or --skip one; compensation then goes on in the
        saga's order and the run ends again (`saga describe` lists the repairs)."""
        if retry_flag == (skip is not None):
            raise click.UsageError("give either --retry or --skip STEP")
        try:
            policy = retry_policy(max_attempts, initial, maximum, backoff, expire_after)
        except ValueError as exc:  # RetryPolicy lists every problem
            raise click.UsageError(str(exc)) from exc
        if skip is not None and policy is not None:
            raise click.UsageError("retry policy options go with --retry, not --skip")
        c = client()
        try:
            c.get_handle(workflow_id).repair(
                reason, skip=skip, retry=policy, operator=operator_of(operator), timeout=wait
            )
        except OrchestratorError as exc:  # refused (status, unknown step, no run) or no answer
            hint = "see `saga describe` and `saga history` for its status and failed step"
            raise click.ClickException(f"repair {workflow_id}: {exc}\nhint: {hint}") from exc
        finally:
            c.close()
        click.echo(f"repaired {workflow_id}: " + (f"skipped {skip}" if skip else "retrying"))


def _register_run_reads(main: click.Group, client: Callable[[], Any]) -> None:
    """``saga query``, ``saga update`` and ``saga result``."""

    @main.command("query")
    @click.argument("workflow_id")
    @click.argument("name")
    @click.option("--args", "args_json", default="[]", help="Query arguments, a JSON list.")
    @click.option("--run-id", default=None, help="A run of the workflow (default: the latest).")
    @click.option("--timeout", default=10.0, show_default=True,
                  help="Seconds to wait for the answer.")
    def query_command(
        workflow_id: str, name: str, args_json: str, run_id: str | None, timeout: float
    ) -> None:
        """Ask a running workflow's query handler; print its answer as JSON."""
        c = client()
        try:
            answer = c.get_handle(workflow_id, run_id).query(
                name, *json_list(args_json), timeout=timeout
            )
        finally:
            c.close()
        click.echo(json.dumps(answer, default=jsonable))

    @main.command("update")
    @click.argument("workflow_id")
    @click.argument("name")
    @click.option("--args", "args_json", default="[]", help="Update arguments, a JSON list.")
    @click.option("--timeout", default=30.0, show_default=True,
                  help="Seconds to wait for the result.")
    def update_command(workflow_id: str, name: str, args_json: str, timeout: float) -> None:
        """Run a running workflow's update handler; print its result as JSON."""
        c = client()
        try:
            result = c.get_handle(workflow_id).update(name, *json_list(args_json),
                                                      timeout=timeout)
        finally:
            c.close()
        click.echo(json.dumps(result, default=jsonable))

    @main.command("result")
    @click.argument("workflow_id")
    @click.option("--timeout", default=None, type=float,
                  help="Seconds to wait for a running workflow (default: no limit).")
    def result_command(workflow_id: str, timeout: float | None) -> None:
        """Wait for a workflow's outcome: print its result as JSON (exit 0), or how it
        ended (exit 1)."""
        c = client()
        try:
            result = c.get_handle(workflow_id).result(timeout=timeout)
        except WorkflowFailedError as exc:
            raise click.ClickException(expected_error_text(exc, workflow_id)) from exc
        finally:
            c.close()
        click.echo(json.dumps(result, default=jsonable))
