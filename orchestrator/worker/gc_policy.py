"""The worker process's garbage-collector settings.

A worker allocates many short-lived objects per record (decoded records, events,
payloads) and keeps a large, stable heap (modules, schemas, the executions it
caches). CPython's defaults collect the young generation every 700 net allocations
and, from time to time, walk the whole heap. Measured on the three-step saga at the
maximum rate (docs/benchmarks.md, "Garbage collection"), the engine spent about 14%
of its CPU in the collector, mostly in full collections over objects that never die.

:func:`settle_heap` moves everything allocated during start-up into the permanent
generation (``gc.freeze``), which full collections skip, and collects the young
generation less often. Cycles are still collected; they are only found later.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle_heap"]

#: net allocations between two collections of the youngest generation (CPython: 700)
YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Freeze the start-up heap and collect the young generation less often.

    Call once, when the worker has loaded its code and built its components."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
