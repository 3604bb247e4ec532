"""Hand memory that the process freed back to the system (glibc's ``malloc_trim``).

A restore reads the history partition in big fetches; librdkafka's threads allocate
and free those buffers, and glibc keeps what they freed in per-thread arenas, in use
by nothing but still resident. After a rebuild of a million sleeping runs that was
about a third of the worker's RSS (see docs/benchmarks.md). ``malloc_trim(0)`` gives
the free pages of every arena back; on another C library it is a no-op.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Give freed heap memory back to the system; True if some was given back."""
    if _TRIM is None:
        return False
    try:
        return bool(_TRIM(0))
    except Exception:  # an optimisation: it must never stop the worker
        log.debug("malloc_trim failed", exc_info=True)
        return False
