"""``saga`` commands check what they are given before they send anything: a bad option
is a usage error (exit 2) or a clear error (exit 1), never a traceback and never a
command sent with a meaning the user did not ask for. The client is replaced by a
recorder: these tests need no Kafka."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner, Result

from orchestrator import cli
from orchestrator.task_token import TaskToken, signature_matches


class _Handle:
    def __init__(self, calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((name, args, kwargs))
            return "run-2"

        return call


class _Client:
    """Records what a command asks of the client."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def start(self, *args: Any, **kwargs: Any) -> _Handle:
        self.calls.append(("start", args, kwargs))
        return _Handle(self.calls)

    def get_handle(self, workflow_id: str) -> _Handle:
        return _Handle(self.calls)

    def close(self) -> None:
        pass


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> _Client:
    recorder = _Client()
    monkeypatch.setattr(cli, "_client", lambda: recorder)
    return recorder


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), env=env)


def test_a_start_without_input_starts_the_workflow_with_no_argument(client: _Client) -> None:
    assert _run("start", "greet", "--id", "g-1", "--task-queue", "q").exit_code == 0
    assert _run("start", "greet", "--id", "g-2", "--task-queue", "q", "--input", "5").exit_code == 0
    assert (
        _run("start", "greet", "--id", "g-3", "--task-queue", "q", "--args", "[1, 2]").exit_code
        == 0
    )
    (_, none, no_input), (_, five, one_input), (_, _, two_args) = client.calls
    assert none == ("greet",) and "input" not in no_input and "args" not in no_input
    assert five == ("greet",) and one_input["input"] == 5
    assert two_args["args"] == [1, 2]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["start", "w", "--id", "a", "--task-queue", "q", "--args", "5"], "must be a JSON list"),
        (
            ["start", "w", "--id", "a", "--task-queue", "q", "--args", "[1]", "--input", "2"],
            "not both",
        ),
        (["signal", "a", "go", "--args", '{"a": 1}'], "must be a JSON list"),
        (["signal", "a", "go", "--args", '"ab"'], "must be a JSON list"),
        (["reset", "a", "--bad-build", "b1", "--dry-run", "--reason", "x"], "--dry-run cannot"),
        (["reset", "a", "--rate", "5", "--reason", "x"], "--rate cannot"),
        (["dlq", "show", "--limit", "0"], "--limit"),
        (["dlq", "redrive", "--reason", "["], "not a regular expression"),
        (["worker", "--sagas", "no_such_module_here"], "cannot import it"),
        (["worker", "--sagas", "bench.bench_sagas", "--no-engine"], "runs nothing"),
    ],
)
def test_bad_options_are_usage_errors_and_send_nothing(
    client: _Client, args: list[str], says: str
) -> None:
    result = _run(*args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert client.calls == []


def test_a_reset_of_one_workflow_resets_it(client: _Client) -> None:
    result = _run("reset", "a", "--bad-build", "b1", "--reason", "x", "--wait", "5")
    assert result.exit_code == 0, result.output
    assert client.calls == [
        (
            "reset",
            ("x",),
            {
                "event_seq": None,
                "before_build": "b1",
                "exclude_signals": False,
                "operator": client.calls[0][2]["operator"],
                "timeout": 5.0,
            },
        ),
    ]


def test_a_bad_setting_in_the_environment_is_one_clear_error() -> None:
    result = _run("topics", env={"SAGA_SHARDS": "abc"})
    assert result.exit_code == 1
    assert "Error: SAGA_SHARDS" in result.output and "hint:" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("verb", ["pause", "unpause"])
def test_wait_0_sends_and_returns(client: _Client, verb: str) -> None:
    result = _run(verb, "a", "--wait", "0")
    assert result.exit_code == 0, result.output
    assert client.calls[0][0] == verb and client.calls[0][2]["wait"] is None
    assert f"{verb} of a sent" in result.output


def test_an_attempt_token_is_signed_when_the_key_is_set() -> None:
    key = "k" * 40
    signed = _run("activity", "token", "w", "r", "1", "2", env={"SAGA_TASK_TOKEN_KEY": key})
    token = TaskToken.decode(signed.output.strip())
    assert token.signature and signature_matches(key.encode(), token)
    plain = _run("activity", "token", "w", "r", "1", "2", env={"SAGA_TASK_TOKEN_KEY": ""})
    assert TaskToken.decode(plain.output.strip()).signature == ""
