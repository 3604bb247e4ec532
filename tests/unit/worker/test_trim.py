"""release_free_memory: what another thread freed leaves the process's RSS."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from orchestrator.worker.shard import trim

CHUNK = 1024  # small blocks (a fetched message's): their frees never trim the arena
CHUNKS = 100 * 1024  # 100 MiB


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def freed_by_another_thread_mib() -> float:
    """In this process: what another thread freed, then trimmed; the MiB RSS fell by."""
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    pinned: list[int] = []

    def churn() -> None:
        # what a fetch thread does: many blocks, freed, a few kept between them (so the
        # arena cannot simply shrink from its top)
        buffers = []
        for i in range(CHUNKS):
            buffers.append(libc.malloc(CHUNK))
            ctypes.memset(buffers[-1], 1, CHUNK)
            if i % 256 == 0:  # every 256 KiB: no free run at the top for free() to trim
                pinned.append(libc.malloc(64))
        for buffer in buffers:
            libc.free(buffer)

    thread = threading.Thread(target=churn)
    thread.start()
    thread.join()
    try:
        before = _rss_mib()
        assert trim.release_free_memory()
        return before - _rss_mib()
    finally:
        for block in pinned:
            libc.free(block)


@pytest.mark.skipif(trim._TRIM is None, reason="not glibc on Linux")
def test_memory_freed_by_another_thread_is_given_back() -> None:
    # in a fresh interpreter: the test run's own heap (whatever earlier tests freed)
    # would otherwise serve the allocations and blur the measure
    code = "from tests.unit.worker.test_trim import freed_by_another_thread_mib as f; print(f())"
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) > 80  # of 100 MiB freed


def test_no_c_library_no_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trim, "_TRIM", None)
    assert trim.release_free_memory() is False
