"""A minimal shard handler for testing the processor's transactions (run as a script).

Each command appends history event ``<key>/<n>`` (n = 1, 2, ... per key) whose value is
the command's value, and a reply; restore recounts from history. If a cycle were
ever applied twice or lost, a key's history would show a duplicate or a gap.

    python tests/integration/counter_shard_app.py BOOTSTRAP PREFIX SHARDS
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence

from orchestrator.log.topics import TopicLayout
from orchestrator.worker.shard.processor import ProcessorOptions, ShardProcessor
from orchestrator.worker.shard.records import HistoryEntry, InRecord, OutRecord


class CounterShard:
    def __init__(self, layout: TopicLayout, partition: int) -> None:
        self.layout = layout
        self.partition = partition
        self.counts: dict[bytes, int] = {}

    @property
    def checkpoint(self) -> int:
        return 0  # no store: restore always reads the whole partition

    def reset_store(self) -> None:
        self.counts.clear()

    def ingest(self, entries: Sequence[HistoryEntry]) -> None:
        for entry in entries:
            key, _, n = entry.key.rpartition(b"/")
            self.counts[key] = max(self.counts.get(key, 0), int(n))

    def restored(self, now_ms: int) -> list[OutRecord]:
        return []

    def seal(self) -> object:
        return None

    def committed(self, sealed: object, checkpoint: int | None) -> None:
        pass

    def close(self, *, discard: bool = False, wipe: bool = False) -> None:
        pass

    def keep_warm(self, now_ms: int) -> bool:
        return False

    def handle(self, msg: InRecord, now_ms: int) -> list[OutRecord]:
        key = msg.key or b""
        if msg.value == b"poison":
            raise ValueError("poison command")
        n = self.counts.get(key, 0) + 1
        self.counts[key] = n
        return [
            OutRecord(
                self.layout.history, key + b"/" + str(n).encode(), msg.value, self.partition
            ),
            OutRecord(self.layout.replies, key, str(n).encode()),
        ]

    def fire_due(self, now_ms: int, until: float) -> list[OutRecord]:
        return []

    def next_due_ms(self) -> int | None:
        return None


def main() -> None:
    bootstrap, prefix, shards = sys.argv[1], sys.argv[2], int(sys.argv[3])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    layout = TopicLayout(prefix=prefix, shards=shards)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    processor = ShardProcessor(
        {"bootstrap.servers": bootstrap},
        layout,
        lambda p: CounterShard(layout, p),
        ProcessorOptions(transaction_timeout_ms=5000, max_batch=200),
    )
    print("ready", flush=True)
    processor.run(stop)


if __name__ == "__main__":
    main()
