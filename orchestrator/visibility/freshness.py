"""How fresh the projection is: when closed runs show up, compared with when they closed.

:class:`ClosedRunsSampler` counts the closed rows of a runs table every few
milliseconds; :func:`visibility_delays` matches those samples against the times at
which outcomes were seen elsewhere (say, RESULT replies): the k-th outcome became
visible when the count first reached k. Used by the demo and the benchmarks.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Sequence

import psycopg
from psycopg import sql

from orchestrator.background import BackgroundRunner
from orchestrator.visibility.fold import OPEN_STATUSES
from orchestrator.visibility.schema import DEFAULT_TABLE, validate_table

__all__ = ["ClosedRunsSampler", "visibility_delays"]


class ClosedRunsSampler(BackgroundRunner):
    """Samples ``(monotonic time, closed rows)`` of ``table`` every ``interval_s``."""

    thread_name = "visibility-sampler"

    def __init__(self, dsn: str, table: str = DEFAULT_TABLE, interval_s: float = 0.02) -> None:
        super().__init__()
        self.dsn = dsn
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self._query = sql.SQL("SELECT count(*) FROM {} WHERE NOT (status = ANY(%s))").format(
            sql.Identifier(validate_table(table))
        )

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    while not stop.wait(self.interval_s):
                        row = conn.execute(self._query, [sorted(OPEN_STATUSES)]).fetchone()
                        self.samples.append((time.monotonic(), int(row[0]) if row else 0))
            except psycopg.Error:
                stop.wait(0.5)  # the table does not exist yet, or the database is away


def visibility_delays(
    outcome_times: Sequence[float], samples: Sequence[tuple[float, int]]
) -> list[float]:
    """Seconds from each outcome (monotonic times, any order) until as many closed rows
    were visible; outcomes never matched by a sample are left out."""
    times = [t for t, _ in samples]
    delays = []
    for k, at in enumerate(sorted(outcome_times), start=1):
        i = bisect.bisect_left(times, at)
        seen = next((t for t, n in samples[i:] if n >= k), None)
        if seen is not None:
            delays.append(seen - at)
    return delays
