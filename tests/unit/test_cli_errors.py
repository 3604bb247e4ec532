"""Expected failures of ``saga`` commands: one line, a hint, exit 1, no traceback."""

from __future__ import annotations

import click
from click.testing import CliRunner

from orchestrator.cli_errors import ExpectedErrors, expected_error_text
from orchestrator.exceptions import (
    QueryError,
    ReplyTimeoutError,
    WorkflowFailedError,
    WorkflowNotFoundError,
)


@click.group(cls=ExpectedErrors)
def group() -> None:
    """A group like ``saga``."""


@group.command()
@click.argument("workflow_id")
@click.option("--kind", default="missing")
def poke(workflow_id: str, kind: str) -> None:
    if kind == "missing":
        raise WorkflowNotFoundError(f"no snapshot of workflow {workflow_id!r}")
    if kind == "slow":
        raise ReplyTimeoutError("no reply within 10 s on topic t.replies")
    raise RuntimeError("a bug keeps its traceback")


def test_an_unknown_id_is_one_line_and_a_hint_naming_it() -> None:
    result = CliRunner().invoke(group, ["poke", "--kind", "missing", "o-9"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: no snapshot of workflow 'o-9'",
        "hint: check the id (`saga list`), and that KAFKA_BOOTSTRAP_SERVERS and "
        "SAGA_TOPIC_PREFIX name the cluster and topics it runs on",
    ]


def test_no_reply_in_time_hints_at_the_worker_and_bugs_keep_their_traceback() -> None:
    slow = CliRunner().invoke(group, ["poke", "o-1", "--kind", "slow"])
    assert slow.exit_code == 1 and "hint: is an engine worker running" in slow.stderr
    bug = CliRunner().invoke(group, ["poke", "o-1", "--kind", "bug"])
    assert isinstance(bug.exception, RuntimeError)


def test_wording_of_a_failed_run_and_a_refused_query() -> None:
    failed = WorkflowFailedError("workflow 'o-1' is FAILED: X: boom", status="FAILED")
    text = expected_error_text(failed, "o-1")
    assert text.splitlines()[0] == "workflow 'o-1' ended FAILED."
    assert text.splitlines()[-1] == "hint: `saga history o-1` shows what happened, event by event"
    refused = expected_error_text(QueryError("query on 'o-1': WorkflowClosed: it is FAILED"))
    assert refused.endswith("hint: the run is closed: `saga describe ID` shows how it ended")
