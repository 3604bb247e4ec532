"""The dispatchers of ``saga dev``: one ``saga dispatcher QUEUE`` child process for
each task queue under flow control, whether it was configured before the stack
started or while it runs (docs/flow-control.md)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from orchestrator.devstack.processes import stop_process

__all__ = ["ConfigSource", "DevDispatchers"]

Spawn = Callable[[str, list[str]], "subprocess.Popen[bytes]"]
"""Starts ``saga *args`` as a child process logging to ``<logs>/<name>.log``."""


class ConfigSource(Protocol):
    """The queues under flow control now, kept current (a
    :class:`~orchestrator.flow.configs.FlowConfigWatcher`)."""

    @property
    def configs(self) -> Mapping[str, Any]: ...

    def close(self) -> None: ...


class DevDispatchers:
    """Keeps a dispatcher running for every queue ``source`` says is configured. A
    queue whose flow control is removed keeps its dispatcher until the stack stops:
    it still releases what the backlog holds."""

    def __init__(
        self, spawn: Spawn, source: ConfigSource, *, restart_after_s: float = 5.0
    ) -> None:
        self._spawn = spawn
        self._source = source
        self._restart_after_s = restart_after_s
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self._exited_at: dict[str, float] = {}

    @staticmethod
    def log_name(queue: str) -> str:
        """The name of ``queue``'s dispatcher log (``<logs>/<name>.log``)."""
        return f"dispatcher-{queue}"

    def check(self) -> tuple[list[str], dict[str, int]]:
        """Start a dispatcher for each configured queue that has none running; note
        the dispatchers that exited. A dispatcher that exited starts again
        ``restart_after_s`` later (a queue's dispatcher is fenced by a newer one: one
        run by hand beside the stack makes this one exit). Returns the queues started
        and, once each, the exit status of those that exited."""
        now = time.monotonic()
        exited: dict[str, int] = {}
        for queue, proc in self.running.items():
            status = proc.poll()
            if status is not None and queue not in self._exited_at:
                self._exited_at[queue] = now
                exited[queue] = status
        started = []
        for queue in sorted(self._source.configs):
            if queue in self.running and queue not in self._exited_at:
                continue  # running
            exited_at = self._exited_at.get(queue)
            if exited_at is not None and now - exited_at < self._restart_after_s:
                continue
            self._exited_at.pop(queue, None)
            self.running[queue] = self._spawn(self.log_name(queue), ["dispatcher", queue])
            started.append(queue)
        return started, exited

    def stop(self) -> None:
        """Stop following the configs, then every dispatcher (SIGTERM: each ends after
        its current cycle)."""
        self._source.close()
        for proc in self.running.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.running.values():
            stop_process(proc, grace_s=30)
