"""``saga dev``'s dispatchers without Kafka: one per configured queue, started once,
started again a while after one exits, kept when its flow control is removed, and
stopped with the stack. Child processes stand in for ``saga dispatcher``."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from orchestrator.dev.dispatchers import DevDispatchers


class Configs:
    """What a FlowConfigWatcher shows: the queues configured now."""

    def __init__(self, *queues: str) -> None:
        self.configs: dict[str, Any] = dict.fromkeys(queues)
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_a_dispatcher_per_configured_queue_restarted_after_an_exit_and_stopped() -> None:
    spawned: list[tuple[str, list[str]]] = []

    def spawn(name: str, args: list[str]) -> subprocess.Popen[bytes]:
        spawned.append((name, args))
        code = "raise SystemExit(3)" if args[1] == "dies" else "import time; time.sleep(60)"
        return subprocess.Popen([sys.executable, "-c", code])

    source = Configs("a")
    dispatchers = DevDispatchers(spawn, source, restart_after_s=0.5)
    try:
        assert dispatchers.check() == (["a"], {})
        assert dispatchers.check() == ([], {})  # running: not started twice
        assert spawned == [("dispatcher-a", ["dispatcher", "a"])]

        source.configs["dies"] = None  # configured while the stack runs
        assert dispatchers.check() == (["dies"], {})
        dispatchers.running["dies"].wait(10)
        assert dispatchers.check() == ([], {"dies": 3})  # reported once, not restarted yet
        assert dispatchers.check() == ([], {})
        time.sleep(0.6)
        assert dispatchers.check() == (["dies"], {})

        dispatchers.running["dies"].wait(10)
        source.configs.clear()  # flow control removed: no restart, "a" keeps running
        assert dispatchers.check() == ([], {"dies": 3})
        time.sleep(0.6)
        assert dispatchers.check() == ([], {})
        assert dispatchers.running["a"].poll() is None
    finally:
        dispatchers.stop()
    assert source.closed
    assert dispatchers.running["a"].poll() is not None
    assert len(spawned) == 3
