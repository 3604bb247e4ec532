"""The shard processor: consume commands, decide, and commit everything in one transaction.

Ownership of partition p of ``<prefix>.commands`` (through the consumer group) is
ownership of execution shard p. Each cycle takes what is waiting (up to
``max_batch`` records), hands each record to the handler of its shard, fires due
timers, and writes every resulting record (history events, activity tasks, replies,
DLQ records, forwards) plus the consumed offsets in ONE Kafka transaction. A crash
anywhere in a cycle therefore either commits all of it or none of it.

Idle, a cycle is one small transaction per burst of records; under load, batches
grow to ``max_batch`` and the transaction cost is shared. Commits are pipelined: a
background thread commits batch N while this thread fetches and decides batch N+1,
whose records are written once N is committed (one transaction at a time, in
order). When a transaction fails, in-memory state may be ahead of the log (by the
batch decided meanwhile too), so every owned shard is rebuilt from history and the
consumer rewinds to its committed offsets: the log is the truth.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
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
from orchestrator.worker.membership import GroupConsumer, instance_id, member_config
from orchestrator.worker.shard.dlq import dead_letter
from orchestrator.worker.shard.records import HistoryEntry, OutRecord, headers_of
from orchestrator.worker.shard.restore import HistoryReader, RestoreStats

log = logging.getLogger(__name__)

#: how long a fetch waits while a commit is in flight, so that the batch gathered
#: meanwhile is handed over within about this long of the commit's end
_GATHER_POLL_S = 0.002


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
    #: the interpreter's thread switch interval while the processor runs (None: leave
    #: it). The commit thread blocks in librdkafka and then needs the GIL back, which
    #: the deciding thread holds for up to this long: Python's default of 5 ms made
    #: each commit wait for it (engine commit mean 48 -> 38 ms at 250 sagas/s, one run each)
    switch_interval_s: float | None = 0.0005


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
        # the batch for the next transaction: records to write (decided, or produced by
        # a restore) and the commands' offsets consumed (per partition), and how many
        self._pending: list[OutRecord] = []
        self._offsets: dict[int, int] = {}
        self._batch_in = 0
        self._rebuild: set[int] = set()  # handler raised: its state may be ahead of the log
        self._reader = HistoryReader(kafka_config, layout.history)
        self._consumer = GroupConsumer(  # leaves the group on close, static member or not
            {
                **kafka_config,
                "group.id": f"{layout.prefix}.engine",
                # a stable worker id makes a static member: a restart takes its shards back
                **member_config(instance_id(self.options.worker_id, "engine")),
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
        # the transaction being committed in the background, and when it started
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="engine-commit")
        self._in_flight: Future[None] | None = None
        self._commit_started = 0.0
        self._failure: KafkaException | None = None  # a background commit failed
        #: monotonic time the current cycle started; a watchdog reads it (see stalled_for)
        self.cycle_started = time.monotonic()

    def stalled_for(self) -> float:
        """Seconds the current cycle, or the commit in flight, has been running (each
        normally takes milliseconds)."""
        now = time.monotonic()
        stalled = now - self.cycle_started
        if self._in_flight is not None and not self._in_flight.done():
            stalled = max(stalled, now - self._commit_started)
        return stalled

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
        # Callbacks run inside consume(), possibly while a commit is in flight and a
        # batch is gathered: commit both before the shards go (their next owner must
        # find it all committed, or aborted: a failure is recovered from in the next
        # cycle, as Kafka Streams commits revoked tasks), then drop their state.
        self._commit_now()
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
        if self.options.switch_interval_s is not None:
            sys.setswitchinterval(self.options.switch_interval_s)
        try:
            while not stop.is_set():
                self.cycle()
                if time.monotonic() >= report_at:
                    log.info("shards %s: %s", self.owned_shards, self.metrics.summary())
                    self.metrics.commit_ms_max = self.metrics.cycle_ms_max = 0.0
                    report_at = time.monotonic() + self.options.metrics_interval_s
        finally:
            self._commit_now()
            self._consumer.close()  # (its revocation commits nothing more: all is done)
            if self._failure is not None and self._in_transaction:
                # abort now rather than leave readers of these partitions stalled until
                # the transaction times out
                with contextlib.suppress(KafkaException):
                    self._producer.abort_transaction(self.options.call_timeout_s)
            self._reader.close()
            self._committer.shutdown()
            self._producer.flush(10)

    def _poll_timeout(self) -> float:
        wait = self.options.idle_poll_s
        if self._committing():
            wait = _GATHER_POLL_S
        elif self._pending or self._offsets:
            return 0.0  # a batch is ready and nothing is being committed: go
        due = [d for d in (h.next_due_ms() for h in self._shards.values()) if d is not None]
        if not due:
            return wait
        return max(0.0, min(wait, (min(due) - now_ms()) / 1000))

    def _committing(self) -> bool:
        return self._in_flight is not None and not self._in_flight.done()

    def _fetch(self) -> list[Message]:
        """What is waiting, up to ``max_batch`` a transaction; when nothing is, wait for
        the first record (briefly while a commit is in flight, to hand over at once)."""
        room = self.options.max_batch - self._batch_in
        if room <= 0:
            if self._in_flight is not None:
                futures.wait([self._in_flight], self.options.idle_poll_s)
            return []
        return consume_available(self._consumer, room, self._poll_timeout())

    def cycle(self) -> int:
        """One consume-decide round. Its output joins the batch gathered while the
        previous transaction commits; once that one is done, the batch is handed to
        the commit thread. Returns how many records were handed over (0 if none)."""
        self.cycle_started = time.monotonic()
        msgs = self._fetch()
        if self._in_flight is not None and self._in_flight.done():
            self._settle()
        if self._failure is not None:
            self._recover(self._failure)  # what was just fetched is read again after the rewind
            return 0
        began = time.monotonic()
        self.metrics.cycles += 1
        now = now_ms()
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
                self._offsets[partition] = offset + 1
                self._batch_in += 1
                self.metrics.records_in += 1
                self._pending += self._route(msg, partition, now)
            for handler in self._shards.values():
                self._pending += handler.fire_due(now)
            self.metrics.decide_ms_total += (time.monotonic() - began) * 1000
            if self._committing() and not self._rebuild:
                return 0  # keep gathering: the batch goes as soon as this commit is done
            self._settle()
            if self._failure is not None:
                raise self._failure  # the batch was decided on state that is now undone
            handed = self._hand_over()
        except KafkaException as exc:
            self._recover(exc)
            return 0
        self.metrics.cycle_ms_max = max(
            self.metrics.cycle_ms_max, (time.monotonic() - began) * 1000
        )
        if self._rebuild:
            # the handler may have changed state for a command whose output was never
            # written: replace it with one rebuilt from what the log holds once the
            # transaction with its dead letter is committed
            self._settle()
            rebuild, self._rebuild = sorted(self._rebuild & set(self._shards)), set()
            if rebuild and self._failure is None:
                self._restore(rebuild)
        return handed

    def _take_batch(self) -> tuple[list[OutRecord], dict[int, int]]:
        out, offsets = self._pending, self._offsets
        self._pending, self._offsets, self._batch_in = [], {}, 0
        return out, offsets

    def _hand_over(self) -> int:
        """Start committing the gathered batch in the background (none may be in flight)."""
        if not self._pending and not self._offsets:
            return 0
        group = self._consumer.consumer_group_metadata() if self._offsets else None
        out, offsets = self._take_batch()
        self._commit_started = time.monotonic()
        self._in_flight = self._committer.submit(self._commit, out, offsets, group)
        return len(out)

    def _commit_now(self) -> None:
        """Finish the commit in flight, then commit the gathered batch in this thread
        (a revocation: the shards' next owner must find all of it committed)."""
        self._settle()
        if self._failure is not None or (not self._pending and not self._offsets):
            return
        group = self._consumer.consumer_group_metadata() if self._offsets else None
        out, offsets = self._take_batch()
        try:
            self._commit(out, offsets, group)
        except KafkaException as exc:
            self._failure = exc  # recovered from in the next cycle

    def _settle(self) -> None:
        """Wait for the transaction in flight; keep its failure for :meth:`_recover`."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return
        try:
            in_flight.result()
        except KafkaException as exc:
            self._failure = exc

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

    def _commit(self, out: list[OutRecord], offsets: dict[int, int], group: Any) -> None:
        """Write one batch and its consumed offsets in one transaction (commit thread)."""
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
                group,
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
        self._settle()  # nothing may use the producer while it is aborted or replaced
        self._failure = None
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
        self._take_batch()  # decided on state that is gone; the rewind reads it again
        self._rebuild.clear()
        committed = self._consumer.committed(
            [TopicPartition(self.layout.commands, p) for p in owned], timeout=30
        )
        for tp in committed:
            tp.offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self._consumer.seek(tp)
        if owned:
            self._restore(owned)
