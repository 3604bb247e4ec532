"""What the shard processor asks of the per-shard logic it drives.

The processor owns everything Kafka-specific (the consumer group, transactions,
restore reads, standby tailing); a :class:`ShardHandler` owns one shard's state and
decisions. The engine's :class:`~orchestrator.worker.shard.engine_shard.EngineShard`
implements it; so does a small counter in the processor's own tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from orchestrator.worker.shard.records import HistoryEntry, InRecord, OutRecord

__all__ = ["HandlerFactory", "ShardHandler"]


class ShardHandler(Protocol):
    """The per-shard logic the processor drives (the engine's runtime implements it).

    Restore: the processor reads the shard's history from :attr:`checkpoint` to the
    log's end in slices, hands each to :meth:`ingest`, then calls :meth:`restored`.
    Commits: :meth:`seal` is called as a batch is handed to Kafka, and
    :meth:`committed` with what it returned once that transaction committed.
    """

    @property
    def checkpoint(self) -> int:
        """The history offset to restore from (what the handler's state has read)."""
        ...

    def reset_store(self) -> None:
        """The checkpoint is past the log's end: forget everything, restore from 0."""
        ...

    def ingest(self, entries: Sequence[HistoryEntry]) -> None:
        """History records read by the restore, oldest first."""
        ...

    def restored(self, now_ms: int) -> list[OutRecord]:
        """The restore reached the log's end; may return records to write."""
        ...

    def seal(self) -> object:
        """What the records handed over since the last seal changed, for :meth:`committed`."""
        ...

    def committed(self, sealed: object, checkpoint: int | None) -> None:
        """The transaction of ``sealed`` committed; ``checkpoint``: the history offset
        after its records on this shard's partition (None: it wrote none there)."""
        ...

    def close(self, *, discard: bool = False, wipe: bool = False) -> None:
        """The shard is gone (revoked, or ``discard``: rebuilt after a failure;
        ``wipe``: its local state failed and must be rebuilt from the log)."""
        ...

    def keep_warm(self, now_ms: int) -> bool:
        """Standing by (another worker owns the shard): prepare for a promotion, a
        slice at a time; True while there is more to do."""
        ...

    def handle(self, msg: InRecord, now_ms: int) -> list[OutRecord]:
        """Apply one command record of this shard; return what to write."""
        ...

    def fire_due(self, now_ms: int, until: float) -> list[OutRecord]:
        """Fire timers due at ``now_ms``; return what to write. Work that can wait (a
        wake-up storm) stops at ``until`` (a ``time.monotonic()`` instant): the
        processor shares one budget per cycle between its shards."""
        ...

    def next_due_ms(self) -> int | None:
        """When the earliest pending timer is due (epoch ms), if any."""
        ...


HandlerFactory = Callable[[int], ShardHandler]
