"""The part of the gathered batch already produced into its transaction.

A batch that waits for the outcomes of tasks handed over in process (handoff_batches.py)
is gathered for a few milliseconds while the commit thread has nothing to do. Its
transaction can begin then, and its records go into it as they are decided: librdkafka
registers their partitions with the transaction coordinator (a round trip it starts
1 ms after a partition's first record) while the outcomes are still coming, instead of
after ``send_offsets_to_transaction`` at the commit; the records then leave at the
commit's flush (or once ``linger.ms`` has passed), to partitions already registered.
Nothing is visible earlier: readers read committed, and the transaction still commits
or aborts as a whole (docs/architecture.md, "A waiting batch's records go into its
transaction early").
"""

from __future__ import annotations

from confluent_kafka import KafkaError, Message

__all__ = ["SentAhead"]


class SentAhead:
    """How much of one batch is in its transaction already. The deciding thread writes
    it while no commit is in flight; the commit thread takes it over with the batch."""

    __slots__ = ("begun", "count", "ends")

    def __init__(self) -> None:
        #: whether the batch's transaction has begun
        self.begun = False
        #: the batch's first ``count`` records are produced
        self.count = 0
        #: per history partition, the offset after the last record delivered
        self.ends: dict[int, int] = {}

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        """Delivery report of a history record: the partition's end moves past it."""
        partition, offset = msg.partition(), msg.offset()
        if err is None and partition is not None and offset is not None:
            self.ends[partition] = max(self.ends.get(partition, 0), offset + 1)
