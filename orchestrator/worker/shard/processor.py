"""The shard processor: consume commands, decide, and commit everything in one transaction.

Ownership of partition p of ``<prefix>.commands`` (through the consumer group) is
ownership of execution shard p. Each cycle takes what is waiting (up to
``max_batch`` records), hands each record to the handler of its shard, fires due
timers, and writes every resulting record (history events, activity tasks, replies,
DLQ records, forwards) plus the consumed offsets in ONE Kafka transaction. A crash
anywhere in a cycle therefore either commits all of it or none of it.

Idle, a cycle is one small transaction per burst of records; under load, batches
grow to ``max_batch`` and the transaction cost is shared. When a transaction fails,
in-memory state may be ahead of the log, so every owned shard is rebuilt from
history and the consumer rewinds to its committed offsets: the log is the truth.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from orchestrator.log.consuming import consume_available
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout
from orchestrator.worker.shard.dlq import dead_letter
from orchestrator.worker.shard.records import HistoryEntry, OutRecord, headers_of
from orchestrator.worker.shard.restore import HistoryReader, RestoreStats

log = logging.getLogger(__name__)


class ShardHandler(Protocol):
    """The per-shard logic the processor drives (the engine's runtime implements it)."""

    def restore(self, entries: list[HistoryEntry], now_ms: int) -> list[OutRecord]:
        """Rebuild state from the shard's history; may return records (e.g. overdue timers)."""
        ...

    def handle(self, msg: Message, now_ms: int) -> list[OutRecord]:
        """Apply one command record of this shard; return what to write."""
        ...

    def fire_due(self, now_ms: int) -> list[OutRecord]:
        """Fire every timer due at ``now_ms``; return what to write."""
        ...

    def next_due_ms(self) -> int | None:
        """When the earliest pending timer is due (epoch ms), if any."""
        ...


HandlerFactory = Callable[[int], ShardHandler]


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True)
class ProcessorOptions:
    """Tuning knobs; the defaults suit a small cluster and low latency."""

    worker_id: str = field(default_factory=default_worker_id)
    max_batch: int = 2000
    idle_poll_s: float = 0.02
    # A hanging transaction pins the last stable offset (read_committed readers stall,
    # compaction cannot pass it), and a crashed owner's open transaction delays the
    # next owner's restore until it expires: keep it short.
    transaction_timeout_ms: int = 10_000
    session_timeout_ms: int = 6_000
    heartbeat_interval_ms: int = 1_500
    metrics_interval_s: float = 10.0
    #: timeout of each transactional call (send offsets, commit, abort); a watchdog
    #: above the sum of these catches calls that overrun it (a known librdkafka hang)
    call_timeout_s: float = 15.0
    #: how long a restore keeps retrying through broker failovers before giving up
    restore_retry_s: float = 120.0
    #: consecutive failed transactions before the processor gives up (raises), so a
    #: record that can never be written stops the worker loudly instead of silently
    max_failed_transactions: int = 20


@dataclass
class ProcessorMetrics:
    """Counters a metrics endpoint or a test can read."""

    cycles: int = 0
    transactions: int = 0
    records_in: int = 0
    records_out: int = 0
    forwarded: int = 0
    dead_lettered: int = 0
    aborted: int = 0
    restores: list[RestoreStats] = field(default_factory=list)
    commit_ms_total: float = 0.0
    commit_ms_max: float = 0.0
    #: of commit_ms_total: time in send_offsets_to_transaction and in commit_transaction
    offsets_ms_total: float = 0.0
    end_ms_total: float = 0.0
    decide_ms_total: float = 0.0
    cycle_ms_max: float = 0.0

    def summary(self) -> str:
        n = self.transactions or 1
        return (
            f"cycles={self.cycles} transactions={self.transactions} in={self.records_in} "
            f"out={self.records_out} forwarded={self.forwarded} dlq={self.dead_lettered} "
            f"aborted={self.aborted} decide_ms_avg={self.decide_ms_total / n:.1f} "
            f"commit_ms_avg={self.commit_ms_total / n:.1f} "
            f"(offsets {self.offsets_ms_total / n:.1f}, end {self.end_ms_total / n:.1f}) "
            f"commit_ms_max={self.commit_ms_max:.1f} "
            f"cycle_ms_max={self.cycle_ms_max:.1f}"
        )


def now_ms() -> int:
    return int(time.time() * 1000)


class ShardProcessor:
    """Drives shard handlers from ``<prefix>.commands`` under exactly-once transactions."""

    def __init__(
        self,
        kafka_config: dict[str, Any],
        layout: TopicLayout,
        factory: HandlerFactory,
        options: ProcessorOptions | None = None,
    ) -> None:
        self.layout = layout
        self.options = options or ProcessorOptions()
        self.metrics = ProcessorMetrics()
        self._factory = factory
        self._config = kafka_config
        self._shards: dict[int, ShardHandler] = {}
        self._pending: list[OutRecord] = []  # produced by restore, written in the next cycle
        self._rebuild: set[int] = set()  # handler raised: its state may be ahead of the log
        self._reader = HistoryReader(kafka_config, layout.history)
        self._consumer = Consumer(
            {
                **kafka_config,
                "group.id": f"{layout.prefix}.engine",
                "partition.assignment.strategy": "cooperative-sticky",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": self.options.session_timeout_ms,
                "heartbeat.interval.ms": self.options.heartbeat_interval_ms,
                "fetch.wait.max.ms": 10,
            }
        )
        self._producer = self._new_producer()
        self._in_transaction = False
        self._failed_in_a_row = 0
        #: monotonic time the current cycle started; a watchdog reads it (see stalled_for)
        self.cycle_started = time.monotonic()

    def stalled_for(self) -> float:
        """Seconds the current cycle has been running (a cycle normally takes milliseconds)."""
        return time.monotonic() - self.cycle_started

    @property
    def owned_shards(self) -> list[int]:
        return sorted(self._shards)

    def _new_producer(self) -> Producer:
        producer = Producer(
            {
                **self._config,
                "transactional.id": f"{self.layout.prefix}.engine.{self.options.worker_id}",
                "transaction.timeout.ms": self.options.transaction_timeout_ms,
                "linger.ms": 5,  # commit flushes at once: linger only makes fewer, larger requests
                # Back-to-back transactions: while the broker still writes the previous
                # commit's markers it answers CONCURRENT_TRANSACTIONS, and librdkafka
                # retries after retry.backoff.ms (default 100 ms) - measured as ~58 ms of
                # every 72 ms commit. Retry after 2 ms, doubling up to 250 ms on repeats.
                "retry.backoff.ms": 2,
                "retry.backoff.max.ms": 250,
                "queue.buffering.max.messages": 1_000_000,
            }
        )
        producer.init_transactions(30)
        return producer

    # --- rebalancing ------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            self._restore([tp.partition for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Callbacks run inside consume(), which is never called with a transaction
        # open, so there is nothing in flight to finish: drop the shard's state.
        for tp in partitions:
            self._shards.pop(tp.partition, None)
        log.info(
            "shards revoked: %s; owning %s", [tp.partition for tp in partitions], self.owned_shards
        )

    def _restore(self, partitions: list[int]) -> None:
        now = now_ms()
        for partition, (entries, stats) in self._read_history(partitions).items():
            handler = self._factory(partition)
            self._pending += handler.restore(entries, now)
            self._shards[partition] = handler
            self.metrics.restores.append(stats)
        self.cycle_started = time.monotonic()  # a restore is progress, however long

    def _read_history(
        self, partitions: list[int]
    ) -> dict[int, tuple[list[HistoryEntry], RestoreStats]]:
        """Read the shards' history, retrying while the cluster recovers (a broker
        failover surfaces as unknown-partition or timeout errors for a while)."""
        deadline = time.monotonic() + self.options.restore_retry_s
        while True:
            try:
                return self._reader.read(partitions)
            except (KafkaException, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("restore of shards %s failed (%s); retrying", partitions, exc)
                time.sleep(1.0)

    # --- the loop -----------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set, then leave the group cleanly."""
        self._consumer.subscribe(
            [self.layout.commands],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        report_at = time.monotonic() + self.options.metrics_interval_s
        try:
            while not stop.is_set():
                self.cycle()
                if time.monotonic() >= report_at:
                    log.info("shards %s: %s", self.owned_shards, self.metrics.summary())
                    self.metrics.commit_ms_max = self.metrics.cycle_ms_max = 0.0
                    report_at = time.monotonic() + self.options.metrics_interval_s
        finally:
            self._consumer.close()
            self._reader.close()
            self._producer.flush(10)

    def _poll_timeout(self) -> float:
        if self._pending:
            return 0.0
        due = [d for d in (h.next_due_ms() for h in self._shards.values()) if d is not None]
        if not due:
            return self.options.idle_poll_s
        return max(0.0, min(self.options.idle_poll_s, (min(due) - now_ms()) / 1000))

    def _fetch(self) -> list[Message]:
        """What is waiting, up to ``max_batch``; when nothing is, wait for the first record."""
        return consume_available(self._consumer, self.options.max_batch, self._poll_timeout())

    def cycle(self) -> int:
        """One consume-decide-commit round; returns how many records it wrote."""
        self.cycle_started = time.monotonic()
        msgs = self._fetch()
        began = time.monotonic()
        self.metrics.cycles += 1
        now = now_ms()
        out, self._pending = self._pending, []
        offsets: dict[int, int] = {}
        try:
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(err)  # noqa: TRY301 - handled by _recover below
                partition, offset = msg.partition(), msg.offset()
                assert partition is not None and offset is not None  # set on fetched records
                if partition not in self._shards:
                    continue  # revoked in this very consume call; the new owner reads it
                offsets[partition] = offset + 1
                self.metrics.records_in += 1
                out += self._route(msg, partition, now)
            for handler in self._shards.values():
                out += handler.fire_due(now)
            if not out and not offsets:
                return 0
            self.metrics.decide_ms_total += (time.monotonic() - began) * 1000
            self._commit(out, offsets)
        except KafkaException as exc:
            self._recover(exc)
            return 0
        self.metrics.cycle_ms_max = max(
            self.metrics.cycle_ms_max, (time.monotonic() - began) * 1000
        )
        if self._rebuild:
            # the handler may have changed state for a command whose output was never
            # written: replace it with one rebuilt from what the log now holds
            rebuild, self._rebuild = sorted(self._rebuild & set(self._shards)), set()
            if rebuild:
                self._restore(rebuild)
        return len(out)

    def _route(self, msg: Message, partition: int, now: int) -> list[OutRecord]:
        key = msg.key()
        if key is None:
            self.metrics.dead_lettered += 1
            return [dead_letter(self.layout.dlq, msg, "command has no key (the workflow id)")]
        try:
            workflow_id = key.decode()
        except UnicodeDecodeError:
            self.metrics.dead_lettered += 1
            return [dead_letter(self.layout.dlq, msg, "command key is not UTF-8")]
        owner = shard_for(workflow_id, self.layout.shards)
        if owner != partition:
            # e.g. a producer using librdkafka's default (CRC32) partitioner
            self.metrics.forwarded += 1
            return [OutRecord(self.layout.commands, key, msg.value(), owner, headers_of(msg))]
        try:
            return self._shards[partition].handle(msg, now)
        except Exception as exc:  # a bad record must not stop the shard
            log.exception("shard %d: command for %r failed; dead-lettered", partition, workflow_id)
            self.metrics.dead_lettered += 1
            self._rebuild.add(partition)
            return [
                dead_letter(self.layout.dlq, msg, f"handler error: {type(exc).__name__}: {exc}")
            ]

    def _commit(self, out: list[OutRecord], offsets: dict[int, int]) -> None:
        began = time.monotonic()
        producer = self._producer
        producer.begin_transaction()
        self._in_transaction = True
        for rec in out:
            self._produce(rec)
        sent = time.monotonic()
        if offsets:
            producer.send_offsets_to_transaction(
                [TopicPartition(self.layout.commands, p, o) for p, o in offsets.items()],
                self._consumer.consumer_group_metadata(),
                self.options.call_timeout_s,
            )
        ending = time.monotonic()
        producer.commit_transaction(self.options.call_timeout_s)
        ended = time.monotonic()
        self.metrics.offsets_ms_total += (ending - sent) * 1000
        self.metrics.end_ms_total += (ended - ending) * 1000
        self._in_transaction = False
        self._failed_in_a_row = 0
        self.metrics.transactions += 1
        self.metrics.records_out += len(out)
        spent = (time.monotonic() - began) * 1000
        self.metrics.commit_ms_total += spent
        self.metrics.commit_ms_max = max(self.metrics.commit_ms_max, spent)

    def _produce(self, rec: OutRecord) -> None:
        kwargs: dict[str, Any] = {"key": rec.key, "value": rec.value, "headers": rec.headers}
        if rec.partition is not None:
            kwargs["partition"] = rec.partition
        while True:
            try:
                self._producer.produce(rec.topic, **kwargs)
            except BufferError:
                self._producer.poll(0.05)  # local queue full: let deliveries drain
            else:
                return

    def _end_failed_transaction(self, err: KafkaError | None) -> None:
        """Abort the open transaction; replace the producer only if it cannot abort.

        Abort first whatever the error says: an abortable failure (say, a sequence
        gap after a cut connection, which needs an epoch bump) can surface on the
        next call as a plain "erroneous state" that is not flagged abortable. A
        fatal or fenced producer is closed before its successor starts: two live
        producers with one transactional id fence each other, and librdkafka has
        been seen to hang in ``send_offsets_to_transaction`` in that state.
        """
        if err is None or not err.fatal():
            try:
                self._producer.abort_transaction(self.options.call_timeout_s)
            except KafkaException as abort_error:
                log.warning("abort failed (%s); replacing the producer", abort_error)
            else:
                return
        old = self._producer
        try:
            old.purge()
            old.close()
        except (KafkaException, RuntimeError) as close_error:
            log.warning("closing the failed producer: %s", close_error)
        self._producer = self._new_producer()

    def _recover(self, exc: KafkaException) -> None:
        """A transaction failed: abort it, then rebuild every shard from the log."""
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        log.warning("transaction failed (%s); rebuilding owned shards from history", exc)
        self.metrics.aborted += 1
        self._failed_in_a_row += 1
        if self._failed_in_a_row > self.options.max_failed_transactions:
            raise RuntimeError(
                f"{self._failed_in_a_row} transactions failed in a row, the last with: {exc}"
            ) from exc
        if self._in_transaction:
            self._end_failed_transaction(err)
        self._in_transaction = False
        owned = self.owned_shards
        self._shards.clear()
        self._pending.clear()
        self._rebuild.clear()
        committed = self._consumer.committed(
            [TopicPartition(self.layout.commands, p) for p in owned], timeout=30
        )
        for tp in committed:
            tp.offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self._consumer.seek(tp)
        if owned:
            self._restore(owned)
