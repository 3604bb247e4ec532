"""ContiguousOffsetTracker: commits never pass an unfinished record."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.worker.offsets import ContiguousOffsetTracker, PartitionOffsets


def test_nothing_started_has_nothing_to_commit() -> None:
    assert PartitionOffsets().committable() is None
    assert ContiguousOffsetTracker[int]().committable() == {}


def test_out_of_order_completion_commits_only_the_prefix() -> None:
    offsets = PartitionOffsets()
    for o in (10, 11, 12, 13):
        offsets.start(o)
    assert offsets.committable() == 10
    assert offsets.finish(12)
    assert offsets.finish(11)
    assert offsets.committable() == 10
    assert offsets.in_flight == 2
    assert offsets.finish(10)
    assert offsets.committable() == 13
    assert offsets.finish(13)
    assert offsets.committable() == 14
    assert offsets.in_flight == 0


def test_gaps_in_offsets_do_not_block_commits() -> None:
    # transaction markers leave offsets that are never delivered
    offsets = PartitionOffsets()
    offsets.start(0)
    offsets.start(2)
    offsets.start(5)
    offsets.finish(5)
    offsets.finish(0)
    assert offsets.committable() == 2
    assert not offsets.finish(3)  # never started: ignored
    offsets.finish(2)
    assert offsets.committable() == 6


def test_unknown_or_repeated_finish_is_ignored() -> None:
    offsets = PartitionOffsets()
    offsets.start(3)
    assert not offsets.finish(2)
    assert offsets.finish(3)
    assert not offsets.finish(3)
    assert offsets.committable() == 4


def test_start_must_increase() -> None:
    offsets = PartitionOffsets()
    offsets.start(5)
    with pytest.raises(ValueError, match="must increase"):
        offsets.start(5)


def test_tracker_keeps_partitions_apart_and_drop_forgets() -> None:
    tracker = ContiguousOffsetTracker[tuple[str, int]]()
    tracker.start(("t", 0), 0)
    tracker.start(("t", 1), 7)
    tracker.finish(("t", 1), 7)
    assert tracker.committable() == {("t", 0): 0, ("t", 1): 8}
    assert tracker.in_flight() == 1
    tracker.drop(("t", 0))
    assert not tracker.finish(("t", 0), 0)
    assert tracker.partitions() == [("t", 1)]


@st.composite
def runs(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Increasing offsets with gaps, and a random order in which some of them finish."""
    gaps = draw(st.lists(st.integers(1, 3), min_size=1, max_size=60))
    offsets, o = [], draw(st.integers(0, 1000))
    for g in gaps:
        offsets.append(o)
        o += g
    finished = draw(st.permutations(offsets))
    cut = draw(st.integers(0, len(finished)))
    return offsets, list(finished[:cut])


@settings(max_examples=300, deadline=None)
@given(runs())
def test_random_completion_order_never_commits_past_an_unfinished_offset(
    run: tuple[list[int], list[int]],
) -> None:
    offsets, finish_order = run
    tracker = ContiguousOffsetTracker[int]()
    for o in offsets:
        tracker.start(0, o)
    done: set[int] = set()
    previous = offsets[0]
    for o in finish_order:
        assert tracker.finish(0, o)
        done.add(o)
        committed = tracker.committable()[0]
        # every started record below the commit point is finished ...
        assert all(x in done for x in offsets if x < committed)
        # ... the commit point is the first unfinished record (or one past the last)
        unfinished = [x for x in offsets if x not in done]
        assert committed == (unfinished[0] if unfinished else offsets[-1] + 1)
        assert committed >= previous  # and it never moves back
        previous = committed
    assert tracker.in_flight() == len(offsets) - len(done)
