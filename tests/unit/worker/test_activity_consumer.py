"""What the task queue's consumer commits: each partition's contiguous finished prefix,
only once it moved, and nothing of a partition it no longer holds. (Its group behaviour
runs on Kafka: test_activity_worker.py, test_worker_fencing.py.)"""

from __future__ import annotations

from confluent_kafka import TopicPartition

from orchestrator.worker.activity_consumer import TaskOffsets


def due(offsets: TaskOffsets, only: list[int] | None = None) -> dict[int, int]:
    return {tp.partition: tp.offset for tp in offsets.due(only)}


def test_the_commit_never_passes_a_running_task() -> None:
    offsets = TaskOffsets("t")
    for offset in (10, 11, 12):
        offsets.start(0, offset)
    offsets.finish(0, 11)
    assert due(offsets) == {0: 10}  # 10 is still running: read again from it
    offsets.finish(0, 10)
    assert due(offsets) == {0: 12}
    offsets.finish(0, 12)
    assert due(offsets) == {0: 13}  # the next record to read
    assert all(tp.topic == "t" for tp in offsets.due())


def test_what_was_committed_is_not_due_again() -> None:
    offsets = TaskOffsets("t")
    offsets.start(0, 5)
    offsets.finish(0, 5)
    offsets.committed(offsets.due())
    assert due(offsets) == {}  # 6 was committed
    offsets.start(0, 6)
    offsets.finish(0, 6)
    assert due(offsets) == {0: 7}


def test_a_commit_can_be_limited_to_some_partitions() -> None:
    offsets = TaskOffsets("t")
    for partition in (0, 1):
        offsets.start(partition, 0)
        offsets.finish(partition, 0)
    assert due(offsets, only=[1]) == {1: 1}


def test_a_dropped_partition_is_forgotten() -> None:
    offsets = TaskOffsets("t")
    offsets.assigned.update({0, 1})
    offsets.start(1, 3)
    offsets.finish(1, 3)
    offsets.committed([TopicPartition("t", 1, 2)])
    offsets.drop([1])
    assert offsets.assigned == {0}
    assert due(offsets) == {}
    offsets.finish(1, 3)  # an outcome acknowledged after the partition went: ignored
    assert due(offsets) == {}
    offsets.start(1, 3)  # given back later: committed again, though 2 was committed once
    offsets.finish(1, 3)
    assert due(offsets) == {1: 4}
