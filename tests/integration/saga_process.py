"""Run the ``saga`` CLI as a separate process, as a deployment does (tests kill it)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def saga_env(bootstrap: str, prefix: str, shards: int, **extra: str) -> dict[str, str]:
    """This process's environment plus the settings every ``saga`` command reads; the
    engine's shard stores go under the system's temporary folder, not the user's cache
    (one folder per topic prefix: workers restarted in a test find their stores)."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SAGA_TOPIC_PREFIX": prefix,
        "SAGA_SHARDS": str(shards),
        "SAGA_STATE_DIR": str(Path(tempfile.gettempdir()) / "saga-test-state" / prefix),
        **extra,
    }


def spawn_saga(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m orchestrator.cli *args``, its output appended to ``log_path``."""
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
