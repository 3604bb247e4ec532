"""Matching outcome times against samples of the projection's closed-row count."""

from __future__ import annotations

import pytest

from orchestrator.visibility.freshness import visibility_delays


def test_kth_outcome_is_visible_when_k_closed_rows_are() -> None:
    samples = [(10.0, 0), (10.1, 1), (10.2, 1), (10.3, 3), (10.4, 4)]
    # outcomes at 9.95, 10.0, 10.05 and 10.35 (given out of order)
    delays = visibility_delays([10.05, 9.95, 10.35, 10.0], samples)
    assert delays == pytest.approx([0.15, 0.3, 0.25, 0.05])


def test_outcomes_never_seen_are_left_out() -> None:
    assert visibility_delays([1.0, 2.0], [(1.5, 1)]) == pytest.approx([0.5])
    assert visibility_delays([1.0], []) == []
