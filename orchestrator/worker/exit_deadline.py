"""A stopping ``saga worker`` process ends within a bound, whatever is stuck.

Each step of a stop is bounded by its own timeout (draining attempts, the last commits,
leaving the groups), but a thread stuck inside librdkafka cannot be interrupted, and
the interpreter's exit would wait for some threads forever. So once a stop begins, a
daemon thread waits :data:`STOP_DEADLINE_S`; if the process is still there, it prints
every thread's stack (where it was stuck) and ends it with the watchdog's exit status.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading

__all__ = ["STOP_DEADLINE_S", "exit_after"]

log = logging.getLogger(__name__)

#: an activity worker drains for up to 30 s (``drain_timeout_s``); its last commit, the
#: engine's and the groups' leaving take a few more seconds, each bounded
STOP_DEADLINE_S = 50.0


def exit_after(seconds: float, code: int) -> threading.Thread:
    """End the process with ``code`` if it is still running ``seconds`` from now."""

    def expire() -> None:
        threading.Event().wait(seconds)
        log.critical("still stopping after %.0fs: exiting with status %d", seconds, code)
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(code)

    thread = threading.Thread(target=expire, name="stop-deadline", daemon=True)
    thread.start()
    return thread
