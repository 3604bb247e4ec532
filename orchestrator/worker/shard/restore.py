"""Read a history partition to its true end, for a shard's new owner.

The owner's store says where to start (its checkpoint: only the tail since is read
after a restart on the same disk); the processor reads in slices between its cycles.

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
    """Reads history partitions from given offsets towards their true end, a slice at a
    time, so a processor restoring shards goes on serving the others meanwhile."""

    def __init__(
        self, kafka_config: dict[str, Any], topic: str, group_suffix: str = "restore"
    ) -> None:
        base = {
            k: v for k, v in kafka_config.items() if not k.startswith(("group.", "transactional"))
        }
        self._topic = topic
        self._committed = Consumer(
            {
                **base,
                "group.id": f"{topic}.{group_suffix}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 10,
                "fetch.max.bytes": 16 * 1024 * 1024,
                "max.partition.fetch.bytes": 4 * 1024 * 1024,
                # librdkafka prefetches up to 64 MiB per consumer by default: memory a
                # worker keeps for good once a big restore filled it
                "queued.max.messages.kbytes": 16 * 1024,
            }
        )
        self._uncommitted = Consumer(
            {
                **base,
                "group.id": f"{topic}.{group_suffix}-hw",
                "isolation.level": "read_uncommitted",
            }
        )
        self._assigned: dict[int, int] = {}

    def true_end(self, partition: int) -> int:
        """The partition's end, open transactions included (see the module docstring)."""
        return watermarks(self._uncommitted, self._topic, partition)[1]

    def assign(self, starts: dict[int, int]) -> None:
        """Read these partitions from these offsets (replacing the previous set)."""
        self._committed.unassign()
        self._assigned = dict(starts)
        if starts:
            self._committed.assign(
                [
                    TopicPartition(self._topic, p, offset if offset > 0 else OFFSET_BEGINNING)
                    for p, offset in starts.items()
                ]
            )

    def positions(self) -> dict[int, int]:
        """The next offset to read of each assigned partition (past markers and gaps)."""
        out = dict(self._assigned)
        if self._assigned:
            for tp in self._committed.position(
                [TopicPartition(self._topic, p) for p in self._assigned]
            ):
                if tp.offset >= 0:
                    out[tp.partition] = max(out[tp.partition], tp.offset)
        self._assigned = out
        return out

    def poll(self, max_records: int, timeout_s: float) -> dict[int, list[HistoryEntry]]:
        """Committed records read within ``timeout_s``, by partition, oldest first."""
        out: dict[int, list[HistoryEntry]] = {}
        for msg in consume_available(self._committed, max_records, timeout_s):
            if msg.error():
                raise KafkaException(msg.error())
            partition, key, offset = msg.partition(), msg.key(), msg.offset()
            assert partition is not None and offset is not None  # set on fetched records
            if partition not in self._assigned:
                continue
            self._assigned[partition] = max(self._assigned[partition], offset + 1)
            if key is not None:  # history records always have keys; skip strays
                entry = HistoryEntry(key, msg.value(), offset, headers_of(msg))
                out.setdefault(partition, []).append(entry)
        return out

    def close(self) -> None:
        self._committed.close()
        self._uncommitted.close()
