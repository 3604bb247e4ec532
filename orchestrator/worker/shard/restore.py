"""Read a history partition to its true end, for a shard's new owner.

A ``read_committed`` consumer stops at the last stable offset, and librdkafka
reports that LSO as the "high watermark" on such a handle. Stopping there would
silently skip records of a transaction still open by the previous owner (a zombie
that may yet commit). So the end is taken from a ``read_uncommitted`` handle: the
restore waits until every transaction on the partition is decided (committed, or
aborted by the coordinator when ``transaction.timeout.ms`` expires) and has read
everything that was committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from orchestrator.log.consuming import consume_available
from orchestrator.log.watermarks import watermarks
from orchestrator.worker.shard.records import HistoryEntry, headers_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RestoreStats:
    """How one partition's restore went (also exported as metrics)."""

    partition: int
    records: int
    bytes: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")


class HistoryReader:
    """Reads history partitions from the beginning to their true end."""

    def __init__(self, kafka_config: dict[str, Any], topic: str, timeout_s: float = 120.0) -> None:
        base = {
            k: v for k, v in kafka_config.items() if not k.startswith(("group.", "transactional"))
        }
        self._topic = topic
        self._timeout_s = timeout_s
        self._committed = Consumer(
            {
                **base,
                "group.id": f"{topic}.restore",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 10,
                "fetch.max.bytes": 52428800,
                "max.partition.fetch.bytes": 10485760,
            }
        )
        self._uncommitted = Consumer(
            {**base, "group.id": f"{topic}.restore-hw", "isolation.level": "read_uncommitted"}
        )

    def read(self, partitions: list[int]) -> dict[int, tuple[list[HistoryEntry], RestoreStats]]:
        """All committed records of each partition, oldest first, read in one pass."""
        began = time.monotonic()
        entries: dict[int, list[HistoryEntry]] = {p: [] for p in partitions}
        for partition, entry in self._iterate(partitions):
            entries[partition].append(entry)
        seconds = time.monotonic() - began
        result = {}
        for partition, found in entries.items():
            size = sum(len(e.key) + len(e.value or b"") for e in found)
            stats = RestoreStats(partition, len(found), size, seconds)
            log.info(
                "restored shard %d: %d records in %.2fs (%.0f records/s)",
                partition,
                stats.records,
                stats.seconds,
                stats.records_per_s,
            )
            result[partition] = (found, stats)
        return result

    def _true_end(self, partition: int) -> int:
        return watermarks(self._uncommitted, self._topic, partition)[1]

    def _iterate(self, partitions: list[int]) -> Iterator[tuple[int, HistoryEntry]]:
        self._committed.assign(
            [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in partitions]
        )
        deadline = time.monotonic() + self._timeout_s
        ends = {p: self._true_end(p) for p in partitions}
        positions = dict.fromkeys(partitions, 0)
        try:
            while True:
                for tp in self._committed.position(
                    [TopicPartition(self._topic, p) for p in partitions]
                ):
                    positions[tp.partition] = max(positions[tp.partition], tp.offset)
                if all(positions[p] >= ends[p] for p in partitions):
                    # a transaction decided meanwhile adds its marker: check the true ends again
                    ends = {p: self._true_end(p) for p in partitions}
                    if all(positions[p] >= ends[p] for p in partitions):
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"restore of {self._topic} stuck at {positions} < {ends}: a transaction "
                        "stays open longer than the restore timeout"
                    )
                for msg in consume_available(self._committed, 10_000, 0.05):
                    if msg.error():
                        raise KafkaException(msg.error())
                    partition, key, offset = msg.partition(), msg.key(), msg.offset()
                    assert partition is not None and offset is not None  # set on fetched records
                    positions[partition] = offset + 1
                    if key is not None:  # history records always have keys; skip strays
                        yield partition, HistoryEntry(key, msg.value(), offset, headers_of(msg))
        finally:
            self._committed.unassign()

    def close(self) -> None:
        self._committed.close()
        self._uncommitted.close()
