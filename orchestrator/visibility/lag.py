"""How far the projection is behind the history topic, and waiting until it caught up."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

import psycopg

from orchestrator.log.topics import TopicLayout
from orchestrator.visibility.rebuild import history_ends
from orchestrator.visibility.schema import DEFAULT_TABLE
from orchestrator.visibility.sink import RunsSink

__all__ = ["projection_lag", "wait_caught_up"]


def projection_lag(
    dsn: str,
    kafka_config: Mapping[str, Any],
    layout: TopicLayout,
    *,
    table: str = DEFAULT_TABLE,
) -> dict[int, int]:
    """Offsets left to project per partition (partitions that are caught up are absent).

    Compares the offsets stored with the projection to the topic's true end; an
    idle projector stores its position past transaction markers within a second, so
    a caught-up projection has no lag at all.
    """
    ends = history_ends(kafka_config, layout.history)
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        stored = RunsSink(table).read_offsets(conn, layout.history)
    return {p: end - stored.get(p, 0) for p, end in ends.items() if stored.get(p, 0) < end}


def wait_caught_up(
    dsn: str,
    kafka_config: Mapping[str, Any],
    layout: TopicLayout,
    *,
    table: str = DEFAULT_TABLE,
    timeout_s: float = 60.0,
) -> dict[int, int]:
    """Wait until :func:`projection_lag` is empty; returns the lag left at the timeout
    (empty when caught up). PostgreSQL errors while waiting count as "not yet"."""
    deadline = time.monotonic() + timeout_s
    lag: dict[int, int] = {-1: -1}
    while True:
        with contextlib.suppress(psycopg.Error):  # down, or no tables yet: keep waiting
            lag = projection_lag(dsn, kafka_config, layout, table=table)
        if not lag or time.monotonic() > deadline:
            return lag
        time.sleep(0.2)
