"""The README's five-minute tour, run as written.

The shell blocks of the tour (fenced without a language) are read from README.md and
run with bash from the repository's root, as a new user pastes them: the first block
in one shell (``make bootstrap``, then ``saga dev`` in the foreground), the others in a
second shell, where the line ``export ...  # as printed`` stands for the ``export``
lines ``saga dev`` printed. Nothing else is added to the commands: no address, no
topic, no account. ``make test`` bootstraps before the suite, so ``make bootstrap``
here finds everything in place.

The test's own environment sets one thing: ``SAGA_CACHE_DIR`` to a temporary folder
(holding a link to the machine's Kafka jars), so the dev stack's state and the second
worker's stores are the test's alone and no user's ``~/.cache`` is touched. ``saga
dev`` serves on its default port (8080), as the README says.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.devstack.paths import kafka_libs_dir

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PRINTED = "# as printed"


def tour_blocks() -> list[list[str]]:
    """The tour's shell blocks, one command per item (``\\`` continuations joined)."""
    text = (ROOT / "README.md").read_text()
    tour = text[text.index("## Five-minute tour") : text.index("\n## ", text.index("## Five"))]
    blocks: list[list[str]] = []
    fence: str | None = None  # the info string of the open block, "" for a shell block
    for line in tour.splitlines():
        if line.startswith("```"):
            if fence is None:
                fence = line[3:].strip()
                if fence == "":
                    blocks.append([])
            else:
                fence = None
        elif fence == "":
            blocks[-1].append(line)
    return [[c.strip() for c in "\n".join(b).replace("\\\n", " ").splitlines() if c.strip()]
            for b in blocks]


def test_the_tour_has_the_blocks_this_test_knows_how_to_run() -> None:
    first, second, *rest = tour_blocks()
    assert first[0] == "make bootstrap"
    assert first[1].startswith(".venv/bin/saga dev ")
    assert len(first) == 2
    assert second[0].startswith("export ") and second[0].endswith(PRINTED)
    assert len(rest) == 1  # step 4, in the second shell too
    assert rest[0][0].startswith(". .venv/bin/activate ")


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    """A SAGA_CACHE_DIR of the test's own, with the machine's Kafka jars linked in."""
    folder = tmp_path / "cache"
    folder.mkdir()
    jars = kafka_libs_dir().parent
    (folder / jars.name).symlink_to(jars)
    yield folder
    # as root, PostgreSQL's data lives outside the state folder (see persistent.py)
    shutil.rmtree((folder / "dev" / "postgres").resolve(), ignore_errors=True)


def run_first_shell(first: list[str], env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    """``make bootstrap`` then ``saga dev`` (kept running); returns once it is up."""
    boot = subprocess.run(["bash", "-c", first[0]], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert boot.returncode == 0, boot.stdout + boot.stderr
    with out.open("wb") as sink:
        dev = subprocess.Popen(["bash", "-c", f"exec {first[1]}"], cwd=ROOT, env=env,
                               stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while "\nexport " not in out.read_text() or "Ctrl-C stops" not in out.read_text():
        assert dev.poll() is None, f"saga dev exited with {dev.returncode}:\n{out.read_text()}"
        assert time.monotonic() < deadline, f"saga dev did not come up:\n{out.read_text()}"
        time.sleep(0.5)
    return dev


def second_shell_script(commands: list[str], exports: list[str]) -> str:
    """The second shell's commands, each after a marker line naming its index."""
    lines = ["set -eu"]
    for i, command in enumerate(commands):
        lines.append(f"printf '\\n### {i}\\n'")  # on its own line: curl ends with none
        lines.extend(exports if command.endswith(PRINTED) else [command])
    lines.append("printf '\\n### end\\n'")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(600)  # a whole stack on a shared 2-core machine, then two transfers
def test_the_readme_tour_runs_as_written(tmp_path: Path, cache: Path) -> None:
    first, second, fourth = tour_blocks()
    env = {k: v for k, v in os.environ.items()
           if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "BANK_URL", "VIRTUAL_ENV")}
    env["SAGA_CACHE_DIR"] = str(cache)
    dev_out = tmp_path / "saga-dev.out"
    dev = run_first_shell(first, env, dev_out)
    try:
        printed = dev_out.read_text()
        assert "console:  http://127.0.0.1:8080/console/" in printed
        exports = re.findall(r"^export \w+=\S+$", printed, re.M)
        assert {e.split("=")[0] for e in exports} == {
            "export KAFKA_BOOTSTRAP_SERVERS", "export DATABASE_URL", "export BANK_URL"
        }
        commands = second + fourth
        shell = subprocess.run(
            ["bash", "-c", second_shell_script(commands, exports)], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=400, check=False,
        )
        report = f"stdout:\n{shell.stdout}\nstderr:\n{shell.stderr[-4000:]}"
        assert shell.returncode == 0, report
        parts = re.split(r"^### (\d+|end)$", shell.stdout, flags=re.M)
        out = {commands[int(k)]: v for k, v in zip(parts[1::2], parts[2::2], strict=True)
               if k != "end"}

        def said(prefix: str) -> str:
            matching = [text for command, text in out.items() if command.startswith(prefix)]
            assert len(matching) == 1, (prefix, report)
            return matching[0]

        assert said("curl -s -X POST $BANK_URL/accounts -d '{\"account_id\": \"a\"").strip()
        for run in ("t-1", "t-2"):
            started = said(f".venv/bin/saga start payments.transfer --id {run}" if run == "t-1"
                           else f"saga start payments.transfer --id {run}")
            assert f"started {run}" in started, report
            assert '"status": "completed"' in started, report
        assert "COMPLETED" in said("saga describe t-2"), report
        history = said("saga history t-2")
        assert "WorkflowStarted" in history and "WorkflowCompleted" in history, report
        assert "payments.withdraw" in history, report
        assert "replayed" in said("saga replay t-2") and "COMPLETED" in said("saga replay t-2")
        said("saga dlq show")
        assert "t-1" in said("saga list --status completed"), report
    finally:
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=120) == 0, dev_out.read_text()
    assert "saga dev: stopped" in dev_out.read_text()
