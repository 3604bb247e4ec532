"""A loop that runs in a daemon thread until stopped (engine worker, outbox relay, bridge)."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

log = logging.getLogger(__name__)


class BackgroundRunner(ABC):
    """``run(stop)`` in a daemon thread: ``start``/``stop`` or ``with``; a failure is kept
    in :attr:`error` (and logged) for the owner to see."""

    thread_name = "background"

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_thread, name=self.thread_name, daemon=True)

    @abstractmethod
    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set."""

    def _run_thread(self) -> None:
        try:
            self.run(self._stop)
        except Exception as exc:  # surfaced to the owner through .error
            log.exception("%s stopped by an error", self.thread_name)
            self.error = exc

    def start(self) -> Self:
        """Run in the background thread."""
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the loop to stop and wait for it."""
        self._stop.set()
        self._thread.join(timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
