"""The core install works without the extras, and a part that needs one says which.

``pip install saga-orchestrator`` leaves out psycopg, aiohttp and aiokafka (the
``postgres``, ``http`` and ``asyncio`` extras). A child interpreter with an import hook
that refuses those modules stands for such an install: the SDK, the workers, the
blocking client and every ``saga ... --help`` must load; the asyncio client, ``saga
list`` and ``saga http`` must fail naming the module, and the CLI must name the extra.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest

from orchestrator.cli import EXTRA_OF_MODULE, main

ROOT = Path(__file__).resolve().parents[2]

BLOCK = textwrap.dedent(
    """
    import importlib.abc, sys

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in {"psycopg", "psycopg_pool", "aiohttp", "aiokafka"}:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Refuse())
    """
)


def without_extras(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=100, check=False,
    )


def test_the_extras_named_by_the_cli_are_those_pyproject_declares() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for module, extra in EXTRA_OF_MODULE.items():
        dist = {"psycopg_pool": "psycopg"}.get(module, module)
        assert any(req.startswith(dist) for req in extras[extra]), (module, extra)
        assert any(req.startswith(dist) for req in extras["all"]), module
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [req for req in core if req.startswith(("psycopg", "aiohttp", "aiokafka"))]


def test_the_core_loads_without_the_extras() -> None:
    run = without_extras(
        """
        import orchestrator.workflow, orchestrator.activity, orchestrator.testing
        import orchestrator.worker.engine_worker, orchestrator.worker.activity_worker
        import orchestrator.connectors.http, orchestrator.connectors.kafka
        from orchestrator.client import Client, WorkflowHandle
        import orchestrator.visibility, orchestrator.migration
        try:
            from orchestrator.client import AsyncClient
        except ModuleNotFoundError as exc:
            print("asyncio client:", exc.name)
        try:
            import orchestrator.connectors.postgres
        except ModuleNotFoundError as exc:
            print("ledger:", exc.name)
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ["asyncio client: aiokafka", "ledger: psycopg"]


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        out.append((*prefix, name))
        if isinstance(command, click.Group):
            out.extend(_commands(command, (*prefix, name)))
    return out


def test_every_saga_command_shows_its_help_without_the_extras() -> None:
    commands = _commands(main)
    assert ("list",) in commands and ("http",) in commands and ("dev",) in commands
    run = without_extras(
        """
        import sys
        from click.testing import CliRunner
        from orchestrator.cli import main
        for line in sys.argv[1:]:
            result = CliRunner().invoke(main, [*line.split(), "--help"])
            print(line, result.exit_code, repr(result.exception))
        """,
        *(" ".join(c) for c in commands),
    )
    assert run.returncode == 0, run.stderr
    failed = [line for line in run.stdout.splitlines() if not line.endswith(" 0 None")]
    assert failed == []
    assert len(run.stdout.splitlines()) == len(commands)


def test_a_command_that_needs_an_extra_says_which() -> None:
    run = without_extras(
        """
        from orchestrator.cli import main
        main(["list", "--database-url", "postgresql://nowhere/x"])
        """
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "pip install 'saga-orchestrator[postgres]'" in run.stderr
    assert "Traceback" not in run.stderr


def test_saga_finds_a_sagas_module_in_the_current_folder(tmp_path: Path) -> None:
    # as an installed `saga` script runs: sys.path[0] is its bin folder, not the cwd
    (tmp_path / "my_project_sagas.py").write_text(
        "from orchestrator import workflow\n\n"
        "@workflow.defn(name='mine.hello')\n"
        "async def hello(ctx: workflow.WorkflowContext) -> str:\n"
        "    return 'hi'\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(
            """
            import sys
            sys.path = [p for p in sys.path if p not in ("", ".")]
            from orchestrator.cli import main
            from orchestrator.worker.discovery import discover
            try:
                main(["topics", "--help"])
            except SystemExit:
                pass
            print(sorted(discover(["my_project_sagas"]).workflows))
            """
        )],
        cwd=tmp_path, capture_output=True, text=True, timeout=100, check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "['mine.hello']"


def test_saga_dev_demo_bank_outside_a_checkout_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import importlib.util

    from click.testing import CliRunner

    real = importlib.util.find_spec

    def wheel_install(name: str, package: str | None = None) -> Any:
        return None if name == "orchestrator.devstack.bank" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", wheel_install)
    result = CliRunner().invoke(
        main, ["dev", "--sagas", "sagas.payments", "--demo-bank", "--state-dir", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert "demo bank of a checkout" in result.output
    assert list(tmp_path.iterdir()) == []  # refused before anything started
