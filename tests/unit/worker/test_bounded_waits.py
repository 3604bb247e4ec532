"""Waits on librdkafka calls that can block past their timeouts are bounded: a worker's
thread goes on, and what is stuck is left on a daemon thread that cannot keep the
process alive (tests/integration/test_worker_fencing.py shows it on Kafka)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import Future

import pytest

from orchestrator.worker.fencing import finish_within
from orchestrator.worker.shard.commit_thread import CommitThread


def test_the_commit_thread_runs_calls_in_order_and_hands_back_outcomes() -> None:
    ran: list[int] = []
    committer = CommitThread("test-commit")
    first = committer.submit(ran.append, 1)
    second = committer.submit(ran.append, 2)
    failing: Future[None] = committer.submit(_fail)
    assert first.result(5) is None
    assert second.result(5) is None
    with pytest.raises(ValueError, match="no"):
        failing.result(5)
    assert ran == [1, 2]
    assert committer.shutdown(5)


def test_a_stuck_commit_thread_is_left_behind() -> None:
    release = threading.Event()
    committer = CommitThread("test-commit")
    committer.submit(release.wait)
    began = time.monotonic()
    assert not committer.shutdown(0.1)
    assert time.monotonic() - began < 1
    release.set()


def test_finish_within_gives_up_on_a_blocked_call() -> None:
    release = threading.Event()
    began = time.monotonic()
    assert not finish_within(release.wait, "test-close", 0.1)
    assert time.monotonic() - began < 1
    release.set()
    assert finish_within(lambda: None, "test-close", 5)


def test_a_stuck_commit_does_not_keep_the_process_alive() -> None:
    # a ThreadPoolExecutor's thread would: the interpreter joins those at exit
    code = (
        "import threading\n"
        "from orchestrator.worker.shard.commit_thread import CommitThread\n"
        "CommitThread('stuck').submit(threading.Event().wait)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=30, check=False)
    assert done.returncode == 0


def _fail() -> None:
    raise ValueError("no")
