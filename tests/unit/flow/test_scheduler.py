"""The flow scheduler with an injected clock: priority, weighted fairness, buckets, window."""

from __future__ import annotations

import collections

import pytest

from orchestrator.flow.dispatcher import PendingOffsets
from orchestrator.flow.scheduler import FlowConfig, FlowScheduler, Pending

_offset = iter(range(1_000_000))


def _task(priority: int = 0, key: str = "") -> Pending[str]:
    n = next(_offset)
    return Pending(offset=n, priority=priority, key=key, item=f"{key}/{priority}/{n}", enqueued=0)


def test_higher_priority_first_whatever_the_arrival_order() -> None:
    s: FlowScheduler[str] = FlowScheduler(FlowConfig(queue="q"), 0.0)
    for _ in range(100):
        s.add(_task(0, "a"))
    s.add(_task(5, "b"))
    out = s.next_batch(0.0, 1)
    assert [p.priority for p in out] == [5]
    assert len(s) == 100


def test_keys_share_by_weight() -> None:
    s: FlowScheduler[str] = FlowScheduler(FlowConfig(queue="q", weights={"a": 3.0}), 0.0)
    for _ in range(1000):
        s.add(_task(0, "a"))
        s.add(_task(0, "b"))
    out = s.next_batch(0.0, 400)
    counts = collections.Counter(p.key for p in out)
    assert counts["a"] == 300
    assert counts["b"] == 100


def test_a_late_key_is_not_starved_by_a_backlog_and_earns_no_credit_while_idle() -> None:
    s: FlowScheduler[str] = FlowScheduler(FlowConfig(queue="q"), 0.0)
    for _ in range(10_000):
        s.add(_task(0, "a"))
    assert {p.key for p in s.next_batch(0.0, 500)} == {"a"}  # b idle all along
    s.add(_task(0, "b"))
    s.add(_task(0, "b"))
    out = [p.key for p in s.next_batch(0.0, 4)]
    assert out.count("b") == 2  # b's two tasks within four releases, not after a's 9,500
    assert out.count("a") == 2  # and b did not earn 500 releases of credit by idling


def test_queue_rate_limit_and_burst() -> None:
    s: FlowScheduler[str] = FlowScheduler(FlowConfig(queue="q", rate=10.0, burst=5), 0.0)
    for _ in range(100):
        s.add(_task())
    assert len(s.next_batch(0.0, None)) == 5  # the burst
    assert len(s.next_batch(0.05, None)) == 0
    assert s.counters.throttled_queue == 2
    released = 0
    t = 0.0
    while t < 2.0:
        t += 0.01
        released += len(s.next_batch(t, None))
    assert released == 20  # 10/s for 2 s
    assert s.wait_s(t) == pytest.approx(0.1, abs=0.011)


def test_restored_tokens_do_not_burst() -> None:
    s: FlowScheduler[str] = FlowScheduler(
        FlowConfig(queue="q", rate=10.0, burst=10), 100.0, queue_tokens=0.0
    )
    for _ in range(100):
        s.add(_task())
    assert len(s.next_batch(100.35, None)) == 3  # earned since the state, not a full bucket


def test_key_rate_limit_lets_other_keys_and_lower_priorities_go() -> None:
    config = FlowConfig(queue="q", key_rate=1.0, key_burst=1)
    s: FlowScheduler[str] = FlowScheduler(config, 0.0)
    for _ in range(10):
        s.add(_task(9, "hot"))
        s.add(_task(0, "cold"))
    out = s.next_batch(0.0, None)
    assert [(p.key, p.priority) for p in out] == [("hot", 9), ("cold", 0)]
    assert s.counters.throttled_keys == {"hot": 1, "cold": 1}
    assert [p.key for p in s.next_batch(1.0, None)] == ["hot", "cold"]


def test_wait_is_until_a_waiting_key_has_a_token_when_every_key_is_throttled() -> None:
    config = FlowConfig(queue="q", rate=100.0, burst=5, key_rate=2.0, key_burst=1)
    s: FlowScheduler[str] = FlowScheduler(config, 0.0)
    for _ in range(3):
        s.add(_task(0, "a"))
    assert s.wait_s(0.0) == 0.0
    assert len(s.next_batch(0.0, None)) == 1
    # the queue's bucket has tokens, the only waiting key has none until 0.5 s
    assert s.wait_s(0.1) == pytest.approx(0.4)
    s.add(_task(0, "b"))  # a key with a token: something can go now
    assert s.wait_s(0.1) == 0.0
    assert [p.key for p in s.next_batch(0.1, None)] == ["b"]
    assert s.wait_s(0.3) == pytest.approx(0.2)  # only a waits: its token comes at 0.5 s
    assert [p.key for p in s.next_batch(0.5, None)] == ["a"]


def test_window_bounds_a_batch_and_pending_counts() -> None:
    s: FlowScheduler[str] = FlowScheduler(FlowConfig(queue="q"), 0.0)
    for _ in range(10):
        s.add(_task(1, "a"))
    s.add(_task(0, "b"))
    assert len(s.next_batch(0.0, 4)) == 4
    assert s.counters.window_full == 1
    assert s.pending() == {(1, "a"): 6, (0, "b"): 1}


def test_reconfigure_keeps_the_bucket_level() -> None:
    s: FlowScheduler[str] = FlowScheduler(FlowConfig(queue="q", rate=1.0, burst=5), 0.0)
    for _ in range(20):
        s.add(_task())
    assert len(s.next_batch(0.0, None)) == 5
    s.reconfigure(FlowConfig(queue="q", rate=100.0, burst=50), 0.0)
    assert len(s.next_batch(0.0, None)) == 0  # empty stays empty: no burst from a change
    assert len(s.next_batch(0.1, None)) == 10


def test_reconfigure_keeps_the_tokens_an_idle_queue_earned() -> None:
    s: FlowScheduler[str] = FlowScheduler(FlowConfig(queue="q", rate=1.0, burst=10), 0.0)
    for _ in range(10):
        s.add(_task())
    assert len(s.next_batch(0.0, None)) == 10  # the bucket is empty
    # idle for 100 s: the bucket is full again, then the config changes
    s.reconfigure(FlowConfig(queue="q", rate=1.0, burst=10, window=8), 100.0)
    for _ in range(20):
        s.add(_task())
    assert len(s.next_batch(100.0, None)) == 10


def test_restored_key_levels_refill_for_the_downtime() -> None:
    config = FlowConfig(queue="q", key_rate=1.0, key_burst=10)
    # the state was written at 100 s with key a's bucket empty; the first task of a
    # comes 5 s after
    s: FlowScheduler[str] = FlowScheduler(config, 100.0, key_tokens={"a": 0.0})
    for _ in range(20):
        s.add(_task(0, "a"))
    assert len(s.next_batch(105.0, None)) == 5  # earned since the state, not 0 nor 10
    # and a state written before the key is used keeps its level
    s2: FlowScheduler[str] = FlowScheduler(config, 100.0, key_tokens={"a": 0.0})
    assert s2.bucket_state(103.0)[1] == {"a": 3.0}


def test_config_rejects_nonsense_with_every_problem() -> None:
    with pytest.raises(ValueError, match=r"rate must be > 0.*bursts must be >= 1"):
        FlowConfig(queue="q", rate=0.0, burst=0)


def test_pending_offsets_runs() -> None:
    p = PendingOffsets()
    for o in [0, 1, 2, 4, 5]:  # 3 is a transaction marker: not pending
        p.add(o)
    assert p.runs == [0, 3, 4, 6]
    assert 3 not in p
    p.remove(2)
    assert p.runs == [0, 2, 4, 6]
    p.remove(0)
    p.remove(5)
    assert p.runs == [1, 2, 4, 5]
    assert 4 in p and 2 not in p and 1 in p
    assert p.low(99) == 1
    p.remove(1)
    p.remove(4)
    assert p.runs == []
    assert p.low(6) == 6


def test_pending_offsets_leave_no_transaction_marker_behind() -> None:
    # every task in its own transaction: task, marker, task, marker, ...; five wait
    # unreleased at a time, released out of order
    p = PendingOffsets()
    waiting: list[int] = []
    longest = 0
    for n in range(1_000):
        offset = 2 * n
        p.add(offset)
        waiting.append(offset)
        if len(waiting) > 5:
            p.remove(waiting.pop(len(waiting) // 2))
        longest = max(longest, len(p.runs))
    for offset in waiting:
        p.remove(offset)
    assert p.runs == []  # nothing pending once every task is released
    assert p.low(2_000) == 2_000  # a restore starts after the last task
    assert longest <= 2 * 6  # the state holds the waiting tasks, not every marker seen


def test_state_maps_are_bounded() -> None:
    from orchestrator.flow.dispatcher import _top

    counts = {f"k{i}": i for i in range(10)}
    assert _top(counts, 20) == counts
    assert _top(counts, 3) == {"k9": 9, "k8": 8, "k7": 7}
    assert _top({"a": 0.5, "b": 0.0, "c": 0.9}, 1, lowest=True) == {"b": 0.0}
