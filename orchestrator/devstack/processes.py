"""Child-process helpers shared by the local Kafka and PostgreSQL launchers."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask Linux to SIGKILL this child when the process that started it dies.

    A test run killed with SIGKILL cannot run its cleanup; without this the
    broker and database it started would keep running and hold their ports.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: list[str], log_path: Path, env: dict[str, str] | None = None, user: str | None = None
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session with output appended to ``log_path``.

    ``user`` switches to that account first (the switch happens before the
    parent-death signal is armed, because changing credentials clears it).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only calls prctl, safe before exec
            env={**os.environ, **(env or {})},
            user=user,
            group=user,
        )


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL. Safe to call twice."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=10)


def free_port() -> int:
    """A TCP port free on loopback right now (callers retry on a bind race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    interval_s: float = 0.1,
    on_timeout: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` until true; raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    detail = on_timeout() if on_timeout else ""
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}{detail}")


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n--- last lines of " + str(path) + " ---\n" + "\n".join(text[-lines:])
