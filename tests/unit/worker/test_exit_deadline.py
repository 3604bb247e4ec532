"""A stopping worker ends within its deadline even when a thread is stuck for good."""

from __future__ import annotations

import subprocess
import sys
import time


def _run(code: str) -> tuple[int, float, str]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", code], timeout=30, check=False, capture_output=True, text=True
    )
    return done.returncode, time.monotonic() - began, done.stderr


def test_a_process_stuck_in_a_thread_ends_at_the_deadline_with_stacks() -> None:
    # the interpreter's exit joins a non-daemon thread forever: only the deadline ends it
    code = (
        "import threading\n"
        "from orchestrator.worker.exit_deadline import exit_after\n"
        "threading.Thread(target=threading.Event().wait, name='stuck-in-librdkafka').start()\n"
        "exit_after(0.5, 70)\n"
    )
    status, took, stderr = _run(code)
    assert status == 70
    assert took < 15
    assert "Thread 0x" in stderr  # where each thread was


def test_a_process_that_stops_in_time_keeps_its_own_status() -> None:
    code = "import sys\nfrom orchestrator.worker.exit_deadline import exit_after\n"
    code += "exit_after(30, 70)\nsys.exit(3)\n"
    status, took, _ = _run(code)
    assert status == 3
    assert took < 15
