"""Expected failures of ``saga`` commands as one clear line and a hint, no traceback.

The ``saga`` group is an :class:`ExpectedErrors` group: an error of the
orchestrator's own taxonomy (:mod:`orchestrator.exceptions`) that a command lets
escape (an unknown workflow id, a closed run, no reply in time, a run that did not
complete), or a bad setting in the environment (:class:`~orchestrator.config.
SettingsError`), is printed as ``Error: <what>`` and ``hint: <what to do>``, exit
status 1.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
from typing import Any

import click

from orchestrator.cli_text import failed_run_text
from orchestrator.config import SettingsError
from orchestrator.exceptions import (
    OrchestratorError,
    QueryError,
    ReplyTimeoutError,
    UpdateRejectedError,
    WorkflowClosedError,
    WorkflowFailedError,
    WorkflowNotFoundError,
)

__all__ = ["ExpectedErrors", "expected_error_text"]


def _hint(exc: OrchestratorError) -> str:  # noqa: PLR0911 - one hint per kind
    if isinstance(exc, WorkflowNotFoundError) or "WorkflowNotFound" in str(exc):
        return ("check the id (`saga list`), and that KAFKA_BOOTSTRAP_SERVERS and "
                "SAGA_TOPIC_PREFIX name the cluster and topics it runs on")
    if isinstance(exc, ReplyTimeoutError):
        return ("is an engine worker running for these topics (`saga worker`)? "
                "a command sent may still take effect")
    if isinstance(exc, WorkflowFailedError):
        return "`saga history ID` shows what happened, event by event"
    if isinstance(exc, WorkflowClosedError) or "WorkflowClosed" in str(exc):
        return "the run is closed: `saga describe ID` shows how it ended"
    if isinstance(exc, QueryError):
        return "the run's code defines the queries it answers; `saga stack ID` shows where it is"
    if isinstance(exc, UpdateRejectedError):
        return "the run refused the update; nothing was recorded"
    return "`saga describe ID` and `saga history ID` show the run's state"


def expected_error_text(exc: OrchestratorError, workflow_id: str | None = None) -> str:
    """``exc`` as one line (a failed run: its status and causes), then a hint."""
    text = (
        failed_run_text(workflow_id or "?", exc)
        if isinstance(exc, WorkflowFailedError) and workflow_id is not None
        else " ".join(str(exc).split())
    )
    hint = _hint(exc)
    if workflow_id is not None:
        hint = hint.replace("ID", workflow_id)
    return f"{text}\nhint: {hint}"


class ExpectedErrors(click.Group):
    """A group whose commands report the orchestrator's errors without a traceback."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGS] = list(args)  # to name the workflow in an error, below
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OrchestratorError as exc:
            text = expected_error_text(exc, self._workflow_id(ctx))
            raise click.ClickException(text) from exc
        except SettingsError as exc:  # read from the environment by most commands
            hint = "set it to a valid value, or unset it for the default (docs/operations.md)"
            raise click.ClickException(f"{exc}\nhint: {hint}") from exc

    def _workflow_id(self, ctx: click.Context) -> str | None:
        """The WORKFLOW_ID argument of the subcommand that ran, if it has one."""
        args: list[str] = ctx.meta.get(_ARGS, [])
        for at, token in enumerate(args):
            command = self.get_command(ctx, token)
            if command is None:
                continue
            with contextlib.suppress(click.ClickException):
                sub = command.make_context(token, args[at + 1:], parent=ctx,
                                           resilient_parsing=True)
                value = sub.params.get("workflow_id")
                return str(value) if value else None
            return None
        return None


_ARGS = "orchestrator.cli.args"
