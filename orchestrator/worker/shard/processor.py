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
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

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
from orchestrator.log.dlq_tools import REASON_HEADER
from orchestrator.log.partitioner import shard_for
from orchestrator.log.retrying import retried
from orchestrator.log.topics import TopicLayout
from orchestrator.serde.wire import EncodedRecord
from orchestrator.worker.fencing import (
    FenceLimit,
    close_in_background,
    fences_the_consumer,
    fencing_error,
    finish_within,
)
from orchestrator.worker.group_watch import GroupWatch
from orchestrator.worker.membership import (
    LEAVE_TIMEOUT_S,
    GroupConsumer,
    instance_id,
    member_config,
)
from orchestrator.worker.shard.commit_thread import CommitThread
from orchestrator.worker.shard.contract import HandlerFactory, ShardHandler
from orchestrator.worker.shard.dispatch import EarlyBatch, EarlyDispatch
from orchestrator.worker.shard.dlq import dead_letter
from orchestrator.worker.shard.handoff_batches import HandoffBatches
from orchestrator.worker.shard.processor_options import (
    MetricsExporter,
    ProcessorMetrics,
    ProcessorOptions,
    default_worker_id,
)
from orchestrator.worker.shard.records import InRecord, OutRecord, ShardStateLost
from orchestrator.worker.shard.restore import HistoryReader, RestoreStats
from orchestrator.worker.shard.sent_ahead import SentAhead
from orchestrator.worker.shard.trim import release_free_memory
from orchestrator.worker.task_handoff import TaskHandoff

#: how long a cycle may spend reading history for shards being restored
_RESTORE_SLICE_S = 0.2

log = logging.getLogger(__name__)

__all__ = [  # the options and counters live in processor_options.py; imported from here too
    "CommitStuckError",
    "MetricsExporter",
    "ProcessorMetrics",
    "ProcessorOptions",
    "ShardProcessor",
    "default_worker_id",
]

#: how long a stopping processor waits for its consumer to leave the group and close
_CLOSE_TIMEOUT_S = LEAVE_TIMEOUT_S + 5.0
#: how long a fetch waits while a commit is in flight, so that the batch gathered
#: meanwhile is handed over within about this long of the commit's end
_GATHER_POLL_S = 0.002
#: the longest a cached copy of the consumer's group metadata is used (see
#: ShardProcessor._group_metadata)
_GROUP_METADATA_TTL_S = 1.0
#: while a task handed to a worker of this process has not given its outcome back, the
#: engine waits for commands at most this long at a time: the outcome comes back in
#: memory, which does not wake a wait inside the Kafka client
_HANDOFF_POLL_S = 0.001  # the Kafka client waits in whole milliseconds


#: how often the processor tells its group watch the member id its consumer has
_MEMBER_NOTE_S = 1.0


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Restoring:
    """A shard whose history is being read (its commands partition is paused)."""

    handler: ShardHandler
    position: int  # next history offset to read
    end: int  # the partition's true end when last looked at
    began: float = field(default_factory=time.monotonic)
    records: int = 0
    bytes: int = 0


class ShardProcessor:
    """Drives shard handlers from ``<prefix>.commands`` under exactly-once transactions."""

    def __init__(
        self,
        kafka_config: dict[str, Any],
        layout: TopicLayout,
        factory: HandlerFactory,
        options: ProcessorOptions | None = None,
        *,
        exporter: MetricsExporter | None = None,
        handoff: TaskHandoff | None = None,
    ) -> None:
        """``exporter``: Prometheus metrics to update (None: only :attr:`metrics`);
        ``handoff``: the activity workers of this process that may take tasks decided
        here without the queue (orchestrator/worker/task_handoff.py; early dispatch
        only)."""
        self.layout = layout
        self.options = options or ProcessorOptions()
        self.metrics = ProcessorMetrics()
        self._exporter = exporter
        #: per shard that has consumed nothing yet: where it starts (for its lag)
        self._lag_base: dict[int, int] = {}
        if exporter is not None:
            exporter.metrics.watch_processor(self.metrics)
        self._factory = factory
        self._config = kafka_config
        self._shards: dict[int, ShardHandler] = {}
        self._restoring: dict[int, _Restoring] = {}
        self._standby: dict[int, ShardHandler] = {}  # warm copies of shards owned elsewhere
        self._standby_reader = (
            HistoryReader(kafka_config, layout.history, group_suffix="standby")
            if self.options.standby
            else None
        )
        self._standby_refresh_at = 0.0
        self._standby_warm_at = 0.0
        self._warming: set[int] = set()  # standbys in a timer-recompute pass
        self._in_flight_seals: dict[int, object] = {}  # of the transaction in flight
        # the batch for the next transaction: records to write (decided, or produced by
        # a restore) and the commands' offsets consumed (per partition), and how many
        self._pending: list[OutRecord] = []
        self._group_meta: Any = None
        self._group_meta_at = 0.0
        self._offsets: dict[int, int] = {}
        self._batch_in = 0
        self._due_turn = 0  # which shard fires due work first in the next cycle
        self._rebuild: set[int] = set()  # handler raised: its state may be ahead of the log
        self._lost: set[int] = set()  # a handler's local store failed: wipe and rebuild
        self._reader = HistoryReader(kafka_config, layout.history)
        self._consumer = self._new_consumer()
        self._fences = FenceLimit(
            "the engine's consumer", instance_id(self.options.worker_id, "engine")
        )
        self._stopping: threading.Event | None = None  # run()'s stop, once running
        self._watch: GroupWatch | None = None  # run()'s watch on the group, once running
        self._abandoned = False  # a stopping processor gave up waiting for its consumer
        self._producer = self._new_producer()
        self._dispatch = (
            EarlyDispatch(kafka_config, layout.task_prefix)
            if self.options.early_dispatch
            else None
        )
        self._handoff = handoff
        #: outcomes given back in memory per batch, and the wait for outcomes on their way
        self._handed = HandoffBatches()
        if handoff is not None:
            handoff.serve(self._takes_outcomes_of)
        self._in_transaction = False
        self._ahead = SentAhead()  # the gathered batch's records already in its transaction
        self._failed_in_a_row = 0
        # the transaction being committed in the background, and when it started
        self._committer = CommitThread("engine-commit")
        self._in_flight: Future[dict[int, int]] | None = None
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
        """Shards this processor serves (restored and taking commands)."""
        return sorted(self._shards)

    @property
    def standby_shards(self) -> list[int]:
        """Shards owned elsewhere of which this processor keeps a warm copy."""
        return sorted(self._standby)

    def _new_consumer(self) -> GroupConsumer:
        """The commands consumer (leaves the group on close, static member or not)."""
        return GroupConsumer(
            {
                **self._config,
                "group.id": f"{self.layout.prefix}.engine",
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

    def _subscribe(self) -> None:
        self._consumer.subscribe(
            [self.layout.commands],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )

    def _replace_consumer(self, fence: KafkaError | None) -> None:
        """Join the group again with a new consumer: the group fenced our static member
        (``fence``: orchestrator/worker/fencing.py), which is dead for good, or the
        group watch found our consumer gone from the group (group_watch.py). Fenced
        over and over means another live worker has this worker id: stop rather than
        fence it back."""
        if fence is not None:
            self._fences.fenced(fence)
        self.metrics.consumers_replaced += 1
        self._group_meta = None
        old = self._consumer
        self._consumer = self._new_consumer()  # from now on, old's callbacks are ignored
        # Closed on a daemon thread, not waited for: a close of a consumer in a fatal state
        # has returned at once in every test, but librdkafka's close can block on a broker
        # that is down, and this thread has shards to serve. Not closing it at all would
        # leak its threads and sockets for good.
        close_in_background(old, "replaced-consumer-close")
        self._subscribe()

    def _new_producer(self, init_timeout_s: float = 30.0) -> Producer:
        """A transactional producer under this worker's id, initialised: the broker
        aborts whatever transaction an older producer with the id left open, and
        fences that producer."""
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
        try:
            producer.init_transactions(init_timeout_s)
        except KafkaException:
            finish_within(producer.close, "engine-producer-close", _CLOSE_TIMEOUT_S)
            raise
        return producer

    # --- rebalancing ------------------------------------------------------------

    def _group_metadata(self) -> Any:
        """The consumer's group metadata for ``send_offsets_to_transaction``, cached:
        librdkafka answers the call from its main thread while the caller holds the GIL
        (about 0.2 ms in a busy worker, once per transaction). It changes with the
        group's generation, so the copy is dropped on every rebalance callback,
        consumer replacement and recovery, and is at most a second old. A copy older
        than the consumer's own generation cannot weaken the zombie fence: the broker
        refuses an old generation either way (the transaction aborts and recovery
        takes a fresh copy)."""
        now = time.monotonic()
        if self._group_meta is None or now - self._group_meta_at > _GROUP_METADATA_TTL_S:
            self._group_meta = self._consumer.consumer_group_metadata()
            self._group_meta_at = now
        return self._group_meta

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Restore happens in the cycles, a slice at a time, while the processor goes on
        # serving its other shards: a new shard's commands wait (paused) until then.
        self._group_meta = None  # a new generation
        if not partitions or not self._serves(consumer):
            return
        consumer.incremental_assign(partitions)
        consumer.pause(partitions)
        self._begin_restore([tp.partition for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Callbacks run inside consume(), possibly while a commit is in flight and a
        # batch is gathered: commit both before the shards go (their next owner must
        # find it all committed, or aborted: a failure is recovered from in the next
        # cycle, as Kafka Streams commits revoked tasks), then drop their state.
        self._group_meta = None  # a rebalance: the generation changes
        if not self._serves(consumer):
            return  # a fenced consumer closing: its shards are dropped already
        stuck = False
        try:
            self._commit_now()
        except CommitStuckError as exc:
            # the shards go all the same: their next owner finds that transaction aborted
            # (by the broker, after transaction.timeout.ms); a running processor stops at
            # its next wait for the commit, a stopping one goes on stopping
            log.error("%s; giving shards up without it", exc)  # noqa: TRY400 - no use
            stuck = True
        discard = self._failure is not None or stuck
        for tp in partitions:
            handler = self._shards.pop(tp.partition, None)
            if handler is not None:
                handler.close(discard=discard)
            restoring = self._restoring.pop(tp.partition, None)
            if restoring is not None:
                restoring.handler.close()
        self._reader.assign({p: r.position for p, r in self._restoring.items()})
        self._standby_refresh_at = 0.0  # stand by for them from now on
        log.info(
            "shards revoked: %s; owning %s", [tp.partition for tp in partitions], self.owned_shards
        )

    def _serves(self, consumer: Consumer) -> bool:
        """Whether a rebalance callback comes from the consumer in use (not from a fenced
        one closing on another thread, nor from one a stopping processor gave up on)."""
        return consumer is self._consumer and not self._abandoned

    def _true_end(self, partition: int) -> int:
        """The history partition's true end, retried while the cluster recovers (a
        broker failover surfaces as unknown-partition or timeout errors for a while)."""
        deadline = time.monotonic() + self.options.restore_retry_s
        while True:
            try:
                return self._reader.true_end(partition)
            except (KafkaException, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("end of history %d unknown (%s); retrying", partition, exc)
                time.sleep(1.0)

    def _begin_restore(self, partitions: list[int]) -> None:
        promoted = [p for p in partitions if p in self._standby]
        for partition in partitions:
            handler = self._standby.pop(partition, None) or self._factory(partition)
            end = self._true_end(partition)
            if handler.checkpoint > end:
                log.warning(
                    "shard %d: the store is at offset %d, past the log's end %d (another "
                    "topic or cluster): rebuilding it from the log",
                    partition, handler.checkpoint, end,
                )
                handler.reset_store()
            self._restoring[partition] = _Restoring(handler, handler.checkpoint, end)
            log.info(
                "restoring shard %d from history offset %d (end %d)",
                partition, handler.checkpoint, end,
            )
        self._reader.assign({p: r.position for p, r in self._restoring.items()})
        if promoted:
            log.info("standby copies of shards %s promoted", promoted)
            self._assign_standby()
        self.cycle_started = time.monotonic()  # a restore is progress, however long

    # --- standby copies ---------------------------------------------------------------

    def _tend_standby(self) -> None:
        """Keep warm copies of the shards owned elsewhere: open stores for new ones,
        tail their history a slice at a time, now and then recompute the timers of
        runs their tail touched (so a promotion serves and fires at once)."""
        if self._standby_reader is None:
            return
        now = time.monotonic()
        if now >= self._standby_refresh_at:
            self._standby_refresh_at = now + 5.0
            self._refresh_standby()
        if self._standby:
            self._tail_standby(now)

    def _refresh_standby(self) -> None:
        """Stand by for exactly the shards this processor does not own."""
        wanted = set(range(self.layout.shards)) - {*self._shards, *self._restoring}
        gone, new = set(self._standby) - wanted, wanted - set(self._standby)
        for partition in gone:
            self._standby.pop(partition).close()
        for partition in sorted(new):
            self._standby[partition] = self._factory(partition)
        if gone or new:
            self._assign_standby()

    def _tail_standby(self, now: float) -> None:
        assert self._standby_reader is not None
        try:
            for partition, entries in self._standby_reader.poll(2_000, 0).items():
                handler = self._standby.get(partition)
                if handler is not None:
                    handler.ingest(entries)
            if now >= self._standby_warm_at:
                self._standby_warm_at = now + self.options.standby_warm_interval_s
                self._warming = set(self._standby)
            for partition in list(self._warming):
                handler = self._standby.get(partition)
                if handler is None or not handler.keep_warm(now_ms()):
                    self._warming.discard(partition)
        except ShardStateLost:
            # which store failed matters little: drop every copy, start them afresh
            log.exception("a standby store failed; standby copies are rebuilt")
            for handler in self._standby.values():
                handler.close(wipe=True)
            self._standby.clear()
            self._warming.clear()
            self._standby_refresh_at = 0.0

    def _assign_standby(self) -> None:
        if self._standby_reader is not None:
            self._standby_reader.assign({p: h.checkpoint for p, h in self._standby.items()})

    def _pump_restore(self) -> None:
        """Read a slice of history for the shards being restored; finish those at the end."""
        deadline = time.monotonic() + _RESTORE_SLICE_S
        while self._restoring:
            try:
                batch = self._reader.poll(10_000, 0.01)
            except KafkaException as exc:
                log.warning("restore read failed (%s); retrying in the next cycle", exc)
                return
            for partition, entries in batch.items():
                restoring = self._restoring.get(partition)
                if restoring is None:
                    continue
                try:
                    restoring.handler.ingest(entries)
                except ShardStateLost as exc:
                    self._restart_restore(partition, exc)
                    return
                restoring.records += len(entries)
                restoring.bytes += sum(len(e.key) + len(e.value or b"") for e in entries)
            positions = self._reader.positions()
            done: list[int] = []
            for partition, restoring in self._restoring.items():
                restoring.position = positions.get(partition, restoring.position)
                if restoring.position >= restoring.end:
                    # a transaction decided meanwhile adds its marker: check the end again
                    restoring.end = self._true_end(partition)
                    if restoring.position >= restoring.end:
                        done.append(partition)
            for partition in done:
                try:
                    self._finish_restore(partition)
                except ShardStateLost as exc:
                    self._restart_restore(partition, exc)
                    return
            if done:
                self._reader.assign({p: r.position for p, r in self._restoring.items()})
            self.cycle_started = time.monotonic()
            if not batch or time.monotonic() >= deadline:
                return

    def _restart_restore(self, partition: int, exc: ShardStateLost) -> None:
        """The store failed while being restored into: wipe it, read from offset 0."""
        log.error("shard %d: store failed during restore (%s); rebuilding it", partition, exc)
        restoring = self._restoring[partition]
        restoring.handler.reset_store()
        restoring.position, restoring.records, restoring.bytes = 0, 0, 0
        self._reader.assign({p: r.position for p, r in self._restoring.items()})

    def _finish_restore(self, partition: int) -> None:
        restoring = self._restoring[partition]
        self._pending += restoring.handler.restored(now_ms())
        del self._restoring[partition]
        self._shards[partition] = restoring.handler
        stats = RestoreStats(
            partition, restoring.records, restoring.bytes, time.monotonic() - restoring.began
        )
        self.metrics.restores.append(stats)
        if self._exporter is not None:
            self._exporter.metrics.restore_seconds.observe(stats.seconds)
            self._exporter.metrics.restored_records.inc(stats.records)
        log.info(
            "restored shard %d: %d records in %.2fs (%.0f records/s)",
            partition, stats.records, stats.seconds, stats.records_per_s,
        )
        self._consumer.resume([TopicPartition(self.layout.commands, partition)])
        if not self._restoring:
            # the restore's fetch buffers were freed into glibc's arenas, which keep them
            # resident: give them back now rather than hold them for good
            release_free_memory()

    # --- the loop -----------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Process until ``stop`` is set, then leave the group cleanly."""
        self._stopping = stop
        self._subscribe()
        watch = self._watch = self._new_watch()
        if watch is not None:
            watch.start()
        report_at = time.monotonic() + self.options.metrics_interval_s
        sample_at = member_at = time.monotonic()
        if self.options.switch_interval_s is not None:
            sys.setswitchinterval(self.options.switch_interval_s)
        try:
            while not stop.is_set():
                self.cycle()
                if self._exporter is not None and time.monotonic() >= sample_at:
                    self._sample(self._exporter)
                    sample_at = time.monotonic() + self.options.gauge_interval_s
                if watch is not None and time.monotonic() >= member_at:
                    watch.note_member(self._consumer.memberid())  # from this thread only
                    member_at = time.monotonic() + _MEMBER_NOTE_S
                if time.monotonic() >= report_at:
                    log.info("shards %s: %s", self.owned_shards, self.metrics.summary())
                    self.metrics.commit_ms_max = self.metrics.cycle_ms_max = 0.0
                    release_free_memory()  # what a restore or a burst freed meanwhile
                    report_at = time.monotonic() + self.options.metrics_interval_s
        finally:
            if watch is not None:
                watch.stop()
            self._shut_down()

    def _new_watch(self) -> GroupWatch | None:
        """The watch on the engine's group (group_watch.py): shards nobody owns, and
        this processor's consumer gone from the group for two session timeouts."""
        interval = self.options.group_watch_interval_s
        if interval is None:
            return None
        return GroupWatch(
            self._config,
            f"{self.layout.prefix}.engine",
            self.layout.commands,
            interval_s=interval,
            member_grace_s=2 * self.options.session_timeout_ms / 1000,
        )

    def _shut_down(self) -> None:
        """Commit what is gathered, leave the group, close shards, stores and clients;
        every step that waits on the cluster is bounded."""
        try:
            self._take_last_returned()
            self._commit_now()
        except CommitStuckError as exc:
            # its transaction stays open until the broker aborts it (transaction.timeout.ms)
            # or this worker id starts again; the log is the truth, nothing is lost
            log.error("%s; stopping without it", exc)  # noqa: TRY400 - its stack is no use
        stuck = self._committing()
        # (its revocation commits nothing more: all is done; it runs on the closing thread
        # while this one waits, and not at all once this one has given up waiting)
        if not finish_within(self._consumer.close, "engine-consumer-close", _CLOSE_TIMEOUT_S):
            self._abandoned = True
        if self._failure is not None and self._in_transaction and not stuck:
            # abort now rather than leave readers of these partitions stalled until
            # the transaction times out
            with contextlib.suppress(KafkaException):
                self._producer.abort_transaction(self.options.call_timeout_s)
        for handler in self._shards.values():
            handler.close(discard=self._failure is not None)
        for restoring in self._restoring.values():
            restoring.handler.close()
        for standby in self._standby.values():
            standby.close()
        self._shards.clear()
        self._restoring.clear()
        self._standby.clear()
        self._reader.close()
        if self._standby_reader is not None:
            self._standby_reader.close()
        self._committer.shutdown(0.0 if stuck else self.options.call_timeout_s)
        if not stuck:  # else the producer is busy in the stuck call
            self._producer.flush(10)
        if self._dispatch is not None:
            if self._handoff is not None:
                # outcomes given back after the last cycle, or in a transaction that
                # failed: through the commands topic, for the shards' next owner
                left = self._handoff.returned()
                if self._failure is not None:
                    left = self._handed.uncommitted() + left
                self._resend(left)
            self._dispatch.close()

    def _sample(self, exporter: MetricsExporter) -> None:
        """Set the per-shard gauges (this thread owns the consumer and the stores)."""
        lags: dict[int, int] = {}
        for gone in self._lag_base.keys() - self._shards.keys():
            del self._lag_base[gone]
        if self._shards:
            topic = self.layout.commands
            try:
                positions = self._consumer.position(
                    [TopicPartition(topic, p) for p in sorted(self._shards)]
                )
                for tp in positions:
                    _, end = self._consumer.get_watermark_offsets(tp, cached=True)
                    at = tp.offset if tp.offset >= 0 else self._lag_base_of(tp)
                    if at >= 0 and end >= 0:
                        lags[tp.partition] = max(0, end - at)
            except KafkaException as exc:
                log.debug("lag unknown this time: %s", exc)
        try:
            exporter.metrics.sample(
                lags,
                self._shards,
                exporter.gauges_of,
                restoring=len(self._restoring),
                standby=len(self._standby),
            )
        except ShardStateLost as exc:  # the cycle finds the failed store and rebuilds it
            log.debug("shard gauges not sampled: %s", exc)

    def _lag_base_of(self, tp: TopicPartition) -> int:
        """Where consumption of a shard that has consumed nothing yet starts: its
        committed offset, else the log's start. Asked once per ownership (a round trip
        on this thread); when the broker does not answer, the shard's lag stays
        unknown until it consumes a record."""
        base = self._lag_base.get(tp.partition)
        if base is None:
            try:
                base = self._consumer.committed([tp], timeout=2)[0].offset
                if base < 0:
                    base, _ = self._consumer.get_watermark_offsets(tp, timeout=2)
            except KafkaException:
                base = -1
            self._lag_base[tp.partition] = base
        return base

    def _poll_timeout(self) -> float:
        wait = self.options.idle_poll_s
        if self._restoring:
            wait = min(wait, _GATHER_POLL_S)
        if self._committing():
            wait = _GATHER_POLL_S
        if self._handoff is not None and self._handoff.has_returned():
            return 0.0
        if not self._committing() and self._gathered():
            return self._hold_left()  # a batch is ready and nothing is being committed: go
        if len(self._pending) >= self.options.due_backlog_records:
            return wait  # due work waits for the commit in flight (see _fire_due)
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
        timeout = self._poll_timeout()
        handoff = self._handoff
        if handoff is None or timeout <= 0 or not handoff.awaiting_outcomes():
            return consume_available(self._consumer, room, timeout)
        # an outcome given back in memory does not wake a wait inside the Kafka client:
        # wait for one in short slices, looking at the commands between them
        deadline = time.monotonic() + timeout
        while True:
            msgs = consume_available(self._consumer, room, 0)
            left = deadline - time.monotonic()
            if msgs or handoff.has_returned() or left <= 0:
                return msgs
            handoff.wait_returned(min(left, _HANDOFF_POLL_S))

    def cycle(self) -> int:
        """One consume-decide round. Its output joins the batch gathered while the
        previous transaction commits; once that one is done, the batch is handed to
        the commit thread. Returns how many records were handed over (0 if none)."""
        self.cycle_started = time.monotonic()
        try:
            self._check_stores()  # a store failed while a commit was applied to it
            if self._restoring:
                self._pump_restore()
        except (KafkaException, ShardStateLost) as exc:
            self._recover(exc)
            return 0
        self._tend_standby()
        msgs = self._fetch()
        if self._in_flight is not None and (self._in_flight.done() or self._commit_overdue()):
            self._settle()  # an overdue one is fenced: see stuck_commit_s
        failure = self._to_recover_from(msgs)
        if failure is not None:
            self._recover(failure)  # what was just fetched is read again after the rewind
            return 0
        began = time.monotonic()
        self.metrics.cycles += 1
        now = now_ms()
        try:
            self._take_in(msgs, now)
            self._take_returned(now)
            self._fire_due(now)
            self._check_stores()
            self.metrics.decide_ms_total += (time.monotonic() - began) * 1000
            if self._committing() and not self._rebuild:
                return 0  # keep gathering: the batch goes as soon as this commit is done
            self._settle()
            if self._failure is not None:
                raise self._failure  # the batch was decided on state that is now undone
            if self._hold_left() > 0 and not self._rebuild:
                self._send_ahead()
                return 0  # the outcomes of tasks handed over or sent early are coming
            handed = self._hand_over()
        except (KafkaException, ShardStateLost) as exc:
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
                for partition in rebuild:
                    self._shards.pop(partition).close(discard=True)
                self._consumer.pause(
                    [TopicPartition(self.layout.commands, p) for p in rebuild]
                )
                self._begin_restore(rebuild)
        return handed

    def _to_recover_from(self, msgs: list[Message]) -> Exception | None:
        """What this cycle must recover from before it decides anything: a fence among
        what it fetched, the group watch's word that the consumer is gone from the
        group, or a failed commit."""
        # A fence is served once: were it dropped with a batch read again after a failed
        # commit (a revocation can settle that commit inside this very fetch), the worker
        # would keep a dead consumer and own no shard again.
        fenced = fencing_error(msgs)
        if fenced is not None:
            return KafkaException(fenced)
        watch = self._watch
        if watch is not None and watch.member_lost.is_set():
            watch.member_lost.clear()
            return ConsumerLostError("the engine's consumer is no longer in its group")
        return self._failure

    def _check_stores(self) -> None:
        if self._lost:
            raise ShardStateLost(f"the stores of shards {sorted(self._lost)} failed")

    def _fire_due(self, now: int) -> None:
        until = time.monotonic() + self.options.due_budget_ms / 1000
        if len(self._pending) >= self.options.due_backlog_records:
            until = 0.0  # continuations only (chains, local activities)
        shards = list(self._shards.items())
        self._due_turn = (self._due_turn + 1) % max(1, len(shards))
        for partition, handler in shards[self._due_turn :] + shards[: self._due_turn]:
            try:
                self._gather(handler.fire_due(now, until))
            except ShardStateLost:
                log.exception("shard %d: store failed", partition)
                self._lost.add(partition)

    def _take_in(self, msgs: list[Message], now: int) -> None:
        """Decide every fetched command of an owned, restored shard."""
        rewound: set[int] = set()
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(err)
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None  # set on fetched records
            if partition in self._restoring:
                # fetched before the pause: read it again once the shard is restored
                if partition not in rewound:
                    rewound.add(partition)
                    self._consumer.seek(TopicPartition(self.layout.commands, partition, offset))
                continue
            if partition not in self._shards:
                continue  # revoked in this very consume call; the new owner reads it
            self._offsets[partition] = offset + 1
            self._handed.heard_from(msg.key())
            self._batch_in += 1
            self.metrics.records_in += 1
            self._gather(self._route(InRecord.of(msg), partition, now))

    def _hold_left(self) -> float:
        """How much longer the gathered batch waits for the outcomes of the tasks it
        handed to a worker of this process or sent through a queue early (0: commit
        now); a stopping processor does not wait (handoff_batches.py)."""
        if self._stopping is not None and self._stopping.is_set():
            return 0.0
        return self._handed.hold_left()

    def _takes_outcomes_of(self, partition: int) -> bool:
        """Whether an outcome of ``partition`` may come back in memory (called from an
        activity worker's thread): the shard is served here, not being restored."""
        return partition in self._shards and partition not in self._restoring

    def _take_returned(self, now: int) -> None:
        """Decide the outcomes of handed tasks given back in memory as if read from
        their shard's commands (they have no offset); one of a shard no longer served
        here goes through Kafka."""
        if self._handoff is None:
            return
        for partition, outcome in self._handoff.returned():
            if not self._takes_outcomes_of(partition):
                self._resend([(partition, outcome)])
                continue
            self._handed.returned((partition, outcome))
            self._batch_in += 1
            self.metrics.records_in += 1
            self.metrics.outcomes_returned += 1
            record = InRecord(
                self.layout.commands, partition, -1, outcome.key, outcome.value,
                list(outcome.headers),
            )
            self._gather(self._route(record, partition, now))

    def _take_last_returned(self) -> None:
        """Stopping: outcomes of handed tasks go through Kafka from now on; those given
        back already (no cycle will take them) join the last batch."""
        if self._handoff is None:
            return
        self._handoff.stop_serving()
        try:
            self._take_returned(now_ms())
        except KafkaException as exc:  # their attempts' start-to-close timers retry them
            log.warning("outcomes given back at the stop not decided: %s", exc)

    def _resend(self, outcomes: list[tuple[int, EncodedRecord]]) -> None:
        """Send outcomes given back in memory through their shard's commands after all
        (ahead of the next transaction, like an early task)."""
        if not outcomes:
            return
        assert self._dispatch is not None  # tasks are handed only with early dispatch
        for partition, outcome in outcomes:
            self._dispatch.send(
                OutRecord(self.layout.commands, outcome.key, outcome.value, partition,
                          list(outcome.headers))
            )

    def _gather(self, records: list[OutRecord]) -> None:
        """Add decided records to the next transaction's batch. With early dispatch on,
        activity tasks go out at once (they count in the batch all the same) while the
        batch is small; a task a worker of this process takes is handed over whatever
        the batch's size: in memory it costs less than any way through Kafka. The
        batch notes what it may wait for (handoff_batches.py)."""
        dispatch, handoff = self._dispatch, self._handoff
        early = dispatch is not None and len(self._pending) < self.options.early_dispatch_below
        if dispatch is None or (not early and handoff is None):
            if dispatch is not None:
                self._handed.answering = True  # a large batch does not wait
            self._pending += records
            return
        awaited = (self.layout.replies, self.layout.commands)
        for rec in records:
            if dispatch.is_task(rec):
                if rec.handoff and handoff is not None and handoff.offer(rec):
                    self.metrics.tasks_handed += 1
                    self._handed.handed(rec.key)
                    continue
                if early:
                    dispatch.send(rec)
                    self._handed.queued(rec.key)
                    continue
            elif rec.topic in awaited:
                self._handed.answering = True  # a client or another run waits for it
            self._pending.append(rec)

    def _send_ahead(self) -> None:
        """Produce the gathered records into their transaction now (sent_ahead.py): the
        batch waits for handed outcomes and no commit is in flight, so the round trips
        that would follow ``send_offsets_to_transaction`` at the commit overlap the wait.
        A large batch's rest is produced at its commit, in one go."""
        pending, ahead = self._pending, self._ahead
        if (
            self._in_flight is not None
            or ahead.count >= len(pending)
            or len(pending) > self.options.early_dispatch_below
        ):
            return
        producer, history = self._producer, self.layout.history
        if not ahead.begun:
            producer.begin_transaction()
            self._in_transaction = ahead.begun = True
        for rec in pending[ahead.count :]:
            self._produce(producer, rec, ahead.delivered if rec.topic == history else None)
        self.metrics.sent_ahead += len(pending) - ahead.count
        ahead.count = len(pending)

    def _take_batch(
        self,
    ) -> tuple[list[OutRecord], dict[int, int], EarlyBatch | None, SentAhead]:
        out, offsets, ahead = self._pending, self._offsets, self._ahead
        self._pending, self._offsets, self._batch_in = [], {}, 0
        self._ahead = SentAhead()
        early = self._dispatch.take() if self._dispatch is not None else None
        self._handed.hand_over()
        return out, offsets, early, ahead

    def _gathered(self) -> bool:
        """Whether anything waits for the next transaction."""
        early = self._dispatch is not None and len(self._dispatch.gathering) > 0
        return bool(self._pending or self._offsets or early)

    def _hand_over(self) -> int:
        """Start committing the gathered batch in the background (none may be in flight)."""
        if not self._gathered():
            if self._in_flight is None:
                # nothing decided since the last commit: what the shards wrote meanwhile
                # is derived from history already committed (timers indexed by the
                # replays that recover runs), so it goes to the stores now
                self._apply_seals(self._seal(), {})
            return 0
        group = self._group_metadata() if self._offsets else None
        out, offsets, early, ahead = self._take_batch()
        self._commit_started = time.monotonic()
        self._in_flight_seals = self._seal()
        self._in_flight = self._committer.submit(
            partial(self._commit, early=early, ahead=ahead), self._producer, out, offsets, group
        )
        return len(out)

    def _seal(self) -> dict[int, object]:
        """Each shard's state changes that go with the batch being handed over. A shard
        whose handler raised keeps none: it is rebuilt from the log after the commit."""
        seals = {p: h.seal() for p, h in self._shards.items()}
        for partition in self._rebuild:
            seals.pop(partition, None)
        return seals

    def _apply_seals(self, seals: dict[int, object], ends: dict[int, int]) -> None:
        began = time.monotonic()
        try:
            self._apply_each(seals, ends)
        finally:
            self.metrics.store_ms_total += (time.monotonic() - began) * 1000

    def _apply_each(self, seals: dict[int, object], ends: dict[int, int]) -> None:
        for partition, sealed in seals.items():
            handler = self._shards.get(partition)
            if handler is None:
                continue
            try:
                handler.committed(sealed, ends.get(partition))
            except ShardStateLost:
                log.exception("shard %d: store failed", partition)
                self._lost.add(partition)

    def _commit_now(self) -> None:
        """Finish the commit in flight, then commit the gathered batch and wait for it
        (a revocation: the shards' next owner must find all of it committed). The commit
        runs on the commit thread all the same, so that a wait for it is bounded."""
        self._settle()
        if self._failure is not None or not self._gathered():
            return
        self._hand_over()
        self._settle()

    def _settle(self) -> None:
        """Wait for the transaction in flight; keep its failure for :meth:`_recover`. One
        stuck past its calls' timeouts is fenced and counts as failed; raises
        :class:`CommitStuckError` if it cannot be fenced either (see _wait_for)."""
        in_flight = self._in_flight
        if in_flight is None:
            return
        try:
            self._wait_for(in_flight)
        except CommitStuckError as exc:
            self._fence_stuck_commit(exc)
            return
        self._in_flight = None
        seals, self._in_flight_seals = self._in_flight_seals, {}
        try:
            ends = in_flight.result()
        except KafkaException as exc:
            self._failure = exc
            return
        self._handed.committed()
        self._apply_seals(seals, ends)

    def _wait_for(self, in_flight: Future[dict[int, int]]) -> None:
        """Wait for the commit in flight, but not forever: each of its calls has a
        timeout, yet librdkafka has been seen to block in one past it (while the group
        coordinator is down). A processor asked to stop waits ``call_timeout_s`` from
        the commit's start, a running one ``stuck_commit_s``; then it is stuck, and only
        a new producer with our transactional id can end its transaction."""
        while True:
            left = self._commit_limit() - (time.monotonic() - self._commit_started)
            if futures.wait([in_flight], min(0.5, max(0.0, left))).done:
                return
            if left <= 0:
                running = time.monotonic() - self._commit_started
                raise CommitStuckError(
                    f"the transaction in flight has been committing for {running:.0f}s"
                )

    def _commit_limit(self) -> float:
        stopping = self._stopping is not None and self._stopping.is_set()
        return self.options.call_timeout_s if stopping else self.options.stuck_commit_s

    def _commit_overdue(self) -> bool:
        return time.monotonic() - self._commit_started > self._commit_limit()

    def _fence_stuck_commit(self, stuck: CommitStuckError) -> None:
        """End a transaction stuck in librdkafka: a new producer under our transactional
        id makes the broker abort it (or, had it just committed, changes nothing) and
        fences the old producer, whose call is left on its own daemon thread. The commit
        then counts as failed: :meth:`_recover` rebuilds the shards from the log.
        Raises ``stuck`` if no new producer starts within ``call_timeout_s``."""
        log.error("%s; fencing it with a new producer", stuck)
        self.cycle_started = time.monotonic()  # progress, for the watchdog
        try:
            producer = self._new_producer(self.options.call_timeout_s)
        except KafkaException as exc:
            log.error("no new producer to fence the stuck transaction: %s", exc)  # noqa: TRY400
            raise stuck from exc
        self._committer.shutdown(0.0)  # its thread ends once the stuck call returns
        self._committer = CommitThread("engine-commit")
        self._producer = producer
        self._in_flight = None
        self._in_flight_seals = {}
        self._in_transaction = False  # the broker aborted it: nothing left to abort
        self._failure = KafkaException(
            KafkaError(KafkaError._TIMED_OUT, f"{stuck}: fenced and aborted")
        )
        self.metrics.stuck_fenced += 1
        self.cycle_started = time.monotonic()
        log.warning("stuck transaction fenced; rebuilding owned shards from history")

    def _route(self, msg: InRecord, partition: int, now: int) -> list[OutRecord]:
        key = msg.key
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
            return [OutRecord(self.layout.commands, key, msg.value, owner, msg.headers)]
        try:
            return self._decide(self._shards[partition], msg, now)
        except ShardStateLost:  # not the command's fault: rebuild, then read it again
            log.exception("shard %d: store failed", partition)
            self._lost.add(partition)
            return []
        except Exception as exc:  # a bad record must not stop the shard
            log.exception("shard %d: command for %r failed; dead-lettered", partition, workflow_id)
            self.metrics.dead_lettered += 1
            self._rebuild.add(partition)
            return [
                dead_letter(self.layout.dlq, msg, f"handler error: {type(exc).__name__}: {exc}")
            ]

    def _decide(self, handler: ShardHandler, msg: InRecord, now: int) -> list[OutRecord]:
        if self._exporter is None:
            return handler.handle(msg, now)
        began = time.perf_counter()
        out = handler.handle(msg, now)
        self._exporter.metrics.decision_seconds.observe(time.perf_counter() - began)
        return out

    def _commit(
        self,
        producer: Producer,
        out: list[OutRecord],
        offsets: dict[int, int],
        group: Any,
        *,
        early: EarlyBatch | None = None,
        ahead: SentAhead | None = None,
    ) -> dict[int, int]:
        """Write one batch and its consumed offsets in one transaction (commit thread).
        The tasks of ``early``, sent ahead, must be acknowledged first; those that are
        not go in the transaction. ``ahead``: the batch's transaction may have begun,
        with its first records in it. Returns, per history partition written, the
        offset after its last record. ``producer``: the one current when the batch was
        handed over (a stuck commit keeps its own after it is fenced)."""
        began = time.monotonic()
        ahead = ahead if ahead is not None else SentAhead()
        if not ahead.begun:
            producer.begin_transaction()
        self._in_transaction = True

        # one delivery report per history partition, for its last record: a transactional
        # producer delivers a partition's records in order, so that offset is the end
        # (a callback per record cost ~150 ms of GIL time per commit at full load)
        history, dlq = self.layout.history, self.layout.dlq
        last: dict[int, int] = {}
        dead: list[OutRecord] = []
        for i, rec in enumerate(out):
            if rec.topic == history:
                if rec.partition is not None and i >= ahead.count:
                    last[rec.partition] = i
            elif rec.topic == dlq:
                dead.append(rec)
        reported = set(last.values())
        for i in range(ahead.count, len(out)):
            self._produce(producer, out[i], ahead.delivered if i in reported else None)
        if early is not None and self._dispatch is not None and len(early):
            self.metrics.early_tasks += len(early)
            missing = self._dispatch.settle(early, self.options.call_timeout_s / 2)
            self.metrics.early_fallbacks += len(missing)
            for rec in missing:
                self._produce(producer, rec)
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
        if self._exporter is not None:
            self._exporter.metrics.commit_seconds.observe(spent / 1000)
            if dead:
                self._exporter.metrics.dead_lettered(_reasons(dead))
        return ahead.ends

    @staticmethod
    def _produce(
        producer: Producer, rec: OutRecord, on_delivery: Callable[..., None] | None = None
    ) -> None:
        kwargs: dict[str, Any] = {"key": rec.key, "value": rec.value, "headers": rec.headers}
        if rec.partition is not None:
            kwargs["partition"] = rec.partition
        if on_delivery is not None:
            kwargs["on_delivery"] = on_delivery
        while True:
            try:
                producer.produce(rec.topic, **kwargs)
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain
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

    def _recover(self, exc: Exception) -> None:
        """A transaction failed (or a shard's store did): abort it, then rebuild every
        shard from the log, wiping the stores that failed."""
        self._settle()  # nothing may use the producer while it is aborted or replaced
        self._failure = None
        self._group_meta = None
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        log.warning("%s; rebuilding owned shards from history", exc)
        gone = isinstance(exc, ConsumerLostError)  # not a failed transaction
        if not gone:
            self.metrics.aborted += 1
            self._failed_in_a_row += 1
        if self._failed_in_a_row > self.options.max_failed_transactions:
            raise RuntimeError(
                f"{self._failed_in_a_row} transactions failed in a row, the last with: {exc}"
            ) from exc
        if self._in_transaction:
            self._end_failed_transaction(err)
        self._in_transaction = False
        owned = sorted([*self._shards, *self._restoring])
        lost, self._lost = self._lost, set()
        for partition, handler in self._shards.items():
            # its state may be ahead of the log; a store that failed is wiped
            handler.close(discard=True, wipe=partition in lost)
        for restoring in self._restoring.values():
            restoring.handler.close()
        self._shards.clear()
        self._restoring.clear()
        self._in_flight_seals = {}
        returned = self._handed.uncommitted()
        self._take_batch()  # decided on state that is gone; the rewind reads it again
        self._handed.drop()
        self._resend(returned)  # read again after the rewind, as the commands are
        self._rebuild.clear()
        if gone or (err is not None and fences_the_consumer(err)):
            self._replace_consumer(None if gone else err)  # its assignment restores the shards
            return
        committed = self._committed_offsets(owned)
        # A failed transaction often comes with a rebalance (ILLEGAL_GENERATION), and
        # librdkafka may serve its revocation while the offsets are read: a partition
        # no longer assigned cannot be sought (_STATE) and is not ours to restore; its
        # next assignment starts from the committed offset all the same.
        # (one assigned again meanwhile is being restored by its assignment already)
        assigned = self._assigned()
        owned = [p for p in owned if p in assigned and p not in self._restoring]
        committed = [tp for tp in committed if tp.partition in owned]
        if owned:
            self._consumer.pause([TopicPartition(self.layout.commands, p) for p in owned])
        for tp in committed:
            tp.offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            try:
                self._consumer.seek(tp)
            except KafkaException:
                if tp.partition in self._assigned():
                    raise  # still ours and not rewound: reading on would skip commands
                log.info("shard %d revoked during the rewind; not restored", tp.partition)
                owned.remove(tp.partition)
        if owned:
            self._begin_restore(owned)

    def _committed_offsets(self, partitions: list[int]) -> list[TopicPartition]:
        """The group's committed offsets of ``partitions``, retried while the group
        coordinator moves (a broker failure is what often fails a transaction)."""

        def read() -> list[TopicPartition]:
            self.cycle_started = time.monotonic()  # each try is bounded: progress
            tps = [TopicPartition(self.layout.commands, p) for p in partitions]
            return self._consumer.committed(tps, timeout=self.options.call_timeout_s)

        return retried("reading the committed offsets", read, self.options.restore_retry_s)

    def _assigned(self) -> set[int]:
        """The command partitions this consumer is assigned now."""
        commands = self.layout.commands
        return {tp.partition for tp in self._consumer.assignment() if tp.topic == commands}


class CommitStuckError(RuntimeError):
    """The transaction in flight overran every timeout of its calls: stuck in librdkafka."""


class ConsumerLostError(RuntimeError):
    """The group watch found the engine's consumer no longer in its group."""


def _reasons(dead: list[OutRecord]) -> list[str]:
    """The reason header of each DLQ record."""
    found = []
    for rec in dead:
        reason = next((v for k, v in rec.headers if k == REASON_HEADER), None)
        found.append(reason.decode(errors="replace") if isinstance(reason, bytes) else "")
    return found
