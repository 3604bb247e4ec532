"""Run ``saga dev`` as a user does, read what it prints, and stop it with SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestrator.devstack.processes import free_port


@dataclass
class DevServer:
    """A running ``saga dev``: its process, the console's URL, the admin token and the
    ``export`` lines it printed."""

    proc: subprocess.Popen[bytes]
    output: Path
    console_url: str
    token: str
    exports: dict[str, str]

    @property
    def api_url(self) -> str:
        return self.console_url.removesuffix("/console/")

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C or a service manager would; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)


def start_dev(
    args: list[str], env: dict[str, str], output: Path, timeout_s: float = 240
) -> DevServer:
    """Start ``saga dev *args`` and wait until it prints the console's URL."""
    offset = output.stat().st_size if output.exists() else 0
    with output.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "dev", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout_s
    while True:
        text = output.read_text(errors="replace")[offset:]
        found = re.search(r"^console:\s+(\S+)$", text, re.M)
        if found and "export DATABASE_URL=" in text:
            break
        if proc.poll() is not None:
            raise AssertionError(f"saga dev exited with {proc.returncode}:\n{text}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"saga dev printed no console URL:\n{text}")
        time.sleep(0.2)
    token_file = re.search(r"^token:.* in (\S+)$", text, re.M)
    assert token_file is not None, text
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", text, re.M))
    return DevServer(
        proc, output, found.group(1), Path(token_file.group(1)).read_text().strip(), exports
    )


@contextmanager
def console_dev(
    bootstrap_servers: str,
    database: str,
    topic_prefix: str,
    state: Path,
    *,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> Iterator[DevServer]:
    """``saga dev`` on the console tests' sagas (two shards, no reload), stopped with
    SIGTERM at the end, which must exit 0. ``env`` and ``args`` add to its own."""
    full_env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "DATABASE_URL": database,
        "SAGA_TOPIC_PREFIX": topic_prefix,
        "SAGA_SHARDS": "2",
        **(env or {}),
    }
    argv = ["--sagas", "tests.integration.console_sagas", "--state-dir", str(state / "dev")]
    argv += ["--http-port", str(free_port()), "--no-reload", *args]
    server = start_dev(argv, full_env, state / "dev.out")
    try:
        yield server
    finally:
        assert server.stop() == 0, server.text()
