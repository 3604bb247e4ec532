"""When a group watch concludes that the worker's own consumer is gone from its group
(orchestrator/worker/group_watch.py): only in a settled group, only for the same member
id, and only after the grace."""

from __future__ import annotations

import pytest
from confluent_kafka import ConsumerGroupState

from orchestrator.worker import group_watch
from orchestrator.worker.group_watch import GroupWatch

STABLE, EMPTY = ConsumerGroupState.STABLE, ConsumerGroupState.EMPTY
REBALANCING = ConsumerGroupState.PREPARING_REBALANCING


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(group_watch.time, "monotonic", clock)
    return clock


def _watch(grace_s: float | None = 12.0) -> GroupWatch:
    return GroupWatch({}, "g.engine", "g.commands", interval_s=1.0, member_grace_s=grace_s)


def _looks(
    watch: GroupWatch, clock: _Clock, looks: list[tuple[ConsumerGroupState, set[str]]]
) -> None:
    for state, members in looks:
        watch._look_for_member(state, members)
        clock.now += 5.0


def test_a_consumer_missing_from_a_settled_group_past_the_grace_is_lost(clock: _Clock) -> None:
    watch = _watch()
    watch.note_member("m-1")
    _looks(watch, clock, [(STABLE, {"other"}), (STABLE, {"other"})])
    assert not watch.member_lost.is_set()  # 5 s missing: within the grace
    _looks(watch, clock, [(STABLE, {"other"}), (STABLE, {"other"})])
    assert watch.member_lost.is_set()  # 10 s then 15 s missing


def test_an_empty_group_without_the_consumer_counts_too(clock: _Clock) -> None:
    watch = _watch()
    watch.note_member(None)  # unsubscribed, or never joined
    _looks(watch, clock, [(EMPTY, set())] * 4)
    assert watch.member_lost.is_set()


def test_a_member_present_or_a_rebalance_restarts_the_clock(clock: _Clock) -> None:
    watch = _watch()
    watch.note_member("m-1")
    _looks(watch, clock, [(STABLE, set()), (STABLE, set()), (REBALANCING, set())])
    _looks(watch, clock, [(STABLE, set()), (STABLE, set())])
    assert not watch.member_lost.is_set()  # 5 s since the rebalance
    _looks(watch, clock, [(STABLE, {"m-1"}), (STABLE, set()), (STABLE, set())])
    assert not watch.member_lost.is_set()  # 5 s since it was seen


def test_a_new_member_id_is_judged_from_its_first_look(clock: _Clock) -> None:
    watch = _watch()
    watch.note_member("m-1")
    _looks(watch, clock, [(STABLE, set()), (STABLE, set())])
    watch.note_member("m-2")  # the consumer rejoined under a new id (not seen yet)
    _looks(watch, clock, [(STABLE, set()), (STABLE, set())])
    assert not watch.member_lost.is_set()
    _looks(watch, clock, [(STABLE, set()), (STABLE, set())])
    assert watch.member_lost.is_set()


def test_a_watch_without_a_grace_never_concludes(clock: _Clock) -> None:
    watch = _watch(grace_s=None)
    watch.note_member("m-1")
    _looks(watch, clock, [(STABLE, set())] * 10)
    assert not watch.member_lost.is_set()
