"""Histogram bucket bounds, in seconds.

Decisions and commits take milliseconds; activity calls and queueing take from
milliseconds to days (a retry policy may wait out a three-day outage before an
attempt starts), so their buckets run on a roughly logarithmic scale to a week.
"""

from __future__ import annotations

from typing import Final

__all__ = ["FAST", "LONG"]

FAST: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Engine work: one decision, one transaction commit, one restore of a small shard."""

LONG: Final = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, 4 * 3600.0, 86_400.0, 3 * 86_400.0, 7 * 86_400.0,
)  # fmt: skip
"""Activity queueing and run time: a millisecond to a week."""
