"""The activity worker's buffer of fetched tasks: the order they start in, when fetching
must pause and may resume, and what a lost partition takes away."""

from __future__ import annotations

from confluent_kafka import Message

from orchestrator.worker.activity_buffer import TaskBuffer


def record(partition: int, offset: int, size: int = 10) -> Message:
    return Message(topic="t", partition=partition, offset=offset, value=b"x" * size)


def where(msg: Message) -> tuple[int | None, int | None]:
    return msg.partition(), msg.offset()


def test_tasks_start_in_the_order_they_came_and_their_bytes_are_counted() -> None:
    buffer = TaskBuffer(pause_at=10, pause_bytes=1000, max_held=5)
    for offset in range(3):
        buffer.add(record(0, offset, size=100))
    assert (len(buffer), buffer.bytes) == (3, 300)
    assert [where(buffer.next()) for _ in range(2)] == [(0, 0), (0, 1)]
    assert (len(buffer), buffer.bytes) == (1, 100)


def test_fetching_pauses_at_the_count_and_resumes_at_half_of_it() -> None:
    buffer = TaskBuffer(pause_at=4, pause_bytes=10_000, max_held=5)
    for offset in range(3):
        buffer.add(record(0, offset))
    assert not buffer.full()
    buffer.add(record(0, 3))
    assert buffer.full()
    assert not buffer.low()
    buffer.next()
    assert not buffer.full()
    assert not buffer.low()  # 3 still wait: more than half
    buffer.next()
    assert buffer.low()


def test_fetching_pauses_on_bytes_too() -> None:
    buffer = TaskBuffer(pause_at=1000, pause_bytes=250, max_held=5)
    buffer.add(record(0, 0, size=200))
    assert not buffer.full()
    assert not buffer.low()  # 200 bytes: over half of 250
    buffer.add(record(0, 1, size=50))
    assert buffer.full()


def test_a_full_held_buffer_stops_fetching_until_released() -> None:
    buffer = TaskBuffer(pause_at=1000, pause_bytes=10_000, max_held=2)
    buffer.held.hold("pay", record(0, 0))
    assert not buffer.full()
    buffer.held.hold("pay", record(0, 1))
    assert buffer.full()
    assert not buffer.low()
    assert [where(m) for m in buffer.release("pay")] == [(0, 0), (0, 1)]
    assert buffer.low()


def test_released_tasks_start_ahead_of_those_fetched_after_them() -> None:
    buffer = TaskBuffer(pause_at=100, pause_bytes=10_000, max_held=10)
    buffer.held.hold("pay", record(0, 0))
    buffer.held.hold("pay", record(0, 2))
    buffer.add(record(0, 1))
    buffer.add(record(0, 3))
    buffer.release("pay")
    assert [where(buffer.next()) for _ in range(4)] == [(0, 0), (0, 2), (0, 1), (0, 3)]
    assert buffer.bytes == 0


def test_dropping_partitions_forgets_their_waiting_and_held_tasks() -> None:
    buffer = TaskBuffer(pause_at=100, pause_bytes=10_000, max_held=10)
    buffer.add(record(0, 0, size=5))
    buffer.add(record(1, 0, size=7))
    buffer.add(record(2, 0, size=11))
    buffer.held.hold("pay", record(1, 1))
    buffer.held.hold("pay", record(2, 1))
    buffer.drop({1, 2})
    assert (len(buffer), buffer.bytes) == (1, 5)
    assert where(buffer.next()) == (0, 0)
    assert buffer.held.counts() == {}
