"""SIGTERM while ``saga dev`` is still starting stops what it started and exits 0.
Nothing answers at the given Kafka and PostgreSQL addresses (closed loopback ports),
so the start waits for the HTTP API to reach Kafka until the signal comes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from orchestrator.devstack.processes import free_port, wait_until
from tests.unit.http_api.test_http_unavailable import closed_port


def processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_text(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue  # exited meanwhile
    return found


def test_sigterm_during_the_start_stops_everything(tmp_path: Path) -> None:
    state = tmp_path / "dev-state"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}",
        "DATABASE_URL": f"postgresql://nobody@127.0.0.1:{closed_port()}/none",
    }
    argv = [sys.executable, "-m", "orchestrator.cli", "dev", "--sagas"]
    argv += ["tests.integration.console_sagas", "--state-dir", str(state)]
    argv += ["--http-port", str(free_port()), "--no-reload"]
    out = tmp_path / "out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        # saga dev, its worker and its HTTP server run; the start is still waiting
        wait_until(lambda: len(processes_naming(str(state))) == 3, 60, "the children")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.read_text().rstrip().endswith("saga dev: stopped")
    assert processes_naming(str(state)) == []
