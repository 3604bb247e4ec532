"""Every command line in compose/docker-compose.yml is one the real ``saga`` CLI accepts.

Each command is parsed by the CLI's own click definitions (subcommands, option
names, required options, value types) without running it: a renamed or removed
option or command fails here rather than in a user's ``docker compose up``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from orchestrator.cli import main
from orchestrator.devstack.paths import REPO_ROOT


def app_commands() -> dict[str, list[str]]:
    loaded = yaml.safe_load(Path(REPO_ROOT / "compose" / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    services: dict[str, Any] = loaded["services"]
    return {
        name: [str(part) for part in service["command"]]
        for name, service in services.items()
        if "command" in service
    }


def parse(argv: list[str]) -> click.Context:
    """Parse ``saga <argv>`` down to its leaf command, as click does before invoking it."""
    ctx = click.Context(main, info_name="saga")
    rest = list(argv)
    while isinstance(ctx.command, click.Group):
        if not rest:
            raise click.UsageError(f"{ctx.command_path!r} needs a subcommand")
        name = rest.pop(0)
        sub = ctx.command.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"no command {name!r} under {ctx.command_path!r}")
        if isinstance(sub, click.Group):
            ctx = click.Context(sub, info_name=name, parent=ctx)
        else:
            ctx = sub.make_context(name, rest, parent=ctx)  # parses, checks, runs nothing
    return ctx


def test_the_app_services_run_saga_commands() -> None:
    commands = app_commands()
    assert {"engine-worker", "activity-worker", "projector", "http-api"} <= set(commands)
    for name, command in commands.items():
        assert command[0] == "saga", f"service {name} runs {command[0]!r}, not the saga CLI"


@pytest.mark.parametrize("service", sorted(app_commands()))
def test_each_service_command_parses_with_the_real_cli(service: str) -> None:
    command = app_commands()[service]
    ctx = parse(command[1:])
    assert ctx.command_path == f"saga {command[1]}"


def test_the_parse_refuses_what_the_cli_refuses() -> None:
    with pytest.raises(click.NoSuchOption):
        parse(["worker", "--task-queues", "payments", "--sagas", "sagas.payments"])
    with pytest.raises(click.UsageError, match="no command 'serve'"):
        parse(["serve", "--port", "8080"])
    with pytest.raises(click.MissingParameter):
        parse(["worker", "--task-queue", "payments"])
