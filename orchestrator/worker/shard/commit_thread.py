"""The engine's commit thread: runs one transaction at a time, in order, as a daemon.

A ``ThreadPoolExecutor`` would do the same, but the interpreter joins its threads at
exit: a commit stuck inside librdkafka (``send_offsets_to_transaction`` ignores its
timeout while the group coordinator is down, librdkafka #5456 and #5511) would then
keep a stopped worker alive until it is killed. A daemon thread does not.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class CommitThread:
    """One daemon thread running submitted calls in the order they came."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` after the calls before it; its outcome goes to the future."""
        future: Future[T] = Future()
        self._calls.put((future, fn, args))
        return future

    def shutdown(self, timeout_s: float) -> bool:
        """Let the calls submitted so far run, then end; True if it ended within
        ``timeout_s`` (else it is stuck in one and left behind)."""
        self._calls.put(None)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while (call := self._calls.get()) is not None:
            future, fn, args = call
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the future
                future.set_exception(exc)
