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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

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

    def read(
        self, partition: int, progress: Callable[[int, int], None] | None = None
    ) -> tuple[list[HistoryEntry], RestoreStats]:
        """All committed records of ``partition``, oldest first, and how long it took."""
        began = time.monotonic()
        entries = list(self._iterate(partition, progress))
        stats = RestoreStats(
            partition,
            len(entries),
            sum(len(e.key) + len(e.value or b"") for e in entries),
            time.monotonic() - began,
        )
        log.info(
            "restored shard %d: %d records in %.2fs (%.0f records/s)",
            partition,
            stats.records,
            stats.seconds,
            stats.records_per_s,
        )
        return entries, stats

    def _true_end(self, partition: int) -> int:
        _, high = self._uncommitted.get_watermark_offsets(
            TopicPartition(self._topic, partition), timeout=10, cached=False
        )
        return int(high)

    def _iterate(
        self, partition: int, progress: Callable[[int, int], None] | None
    ) -> Iterator[HistoryEntry]:
        tp = TopicPartition(self._topic, partition, OFFSET_BEGINNING)
        self._committed.assign([tp])
        deadline = time.monotonic() + self._timeout_s
        end = self._true_end(partition)
        position = 0
        try:
            while True:
                current = self._committed.position([TopicPartition(self._topic, partition)])[
                    0
                ].offset
                position = max(position, current)
                if position >= end:
                    end = self._true_end(partition)  # a decided transaction adds its marker
                    if position >= end:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"restore of {self._topic}[{partition}] stuck at {position} < {end}: "
                        "a transaction stays open longer than the restore timeout"
                    )
                for msg in self._committed.consume(num_messages=10000, timeout=0.05):
                    if msg.error():
                        raise KafkaException(msg.error())
                    key, offset = msg.key(), msg.offset()
                    assert offset is not None  # set on fetched records
                    position = offset + 1
                    if key is not None:  # history records always have keys; skip strays
                        yield HistoryEntry(key, msg.value(), offset, headers_of(msg))
                if progress is not None:
                    progress(position, end)
        finally:
            self._committed.unassign()

    def close(self) -> None:
        self._committed.close()
        self._uncommitted.close()
