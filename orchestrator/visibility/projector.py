"""The visibility projector: the history topic folded into PostgreSQL, exactly once.

Each batch of history records becomes row upserts/deletes plus the next offset of
every partition it read, all in ONE PostgreSQL transaction. Offsets therefore live
in PostgreSQL (``<table>_offsets``), never in Kafka: after any crash the projector
seeks to what PostgreSQL says was applied, so a record is applied exactly once.

One projector is active per (database, table, topic): it holds a session advisory
lock, and every other instance (say, one in each ``saga worker --projector``) waits
as a standby. Every batch also checks, under a row lock, that the stored offsets are
still the ones it started from; a projector that lost its lock without noticing
therefore rolls back instead of writing twice.

PostgreSQL down: the batch rolls back, the projector reconnects with bounded
backoff, re-reads its offsets and seeks there. Kafka down: librdkafka reconnects.
Undecodable records are logged, counted and skipped (a rebuild skips them too).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from orchestrator.background import BackgroundRunner
from orchestrator.converter import DataConverter
from orchestrator.log.consuming import consume_available
from orchestrator.log.headers import headers_of
from orchestrator.log.topics import TopicLayout
from orchestrator.serde.wire import WireFormat
from orchestrator.visibility.batch import BatchResult, HistoryMessage, fold_batch, workflow_ids
from orchestrator.visibility.fold import PayloadDecoder, payload_decoder
from orchestrator.visibility.schema import DEFAULT_TABLE, apply_schema
from orchestrator.visibility.sink import RunsSink

__all__ = ["OffsetsMovedError", "Projector", "ProjectorMetrics", "ProjectorOptions", "apply_batch"]

log = logging.getLogger(__name__)

_NOT_STORED: Final = OFFSET_BEGINNING


class OffsetsMovedError(RuntimeError):
    """Another writer changed the stored offsets: this projector must re-seek."""


@dataclass(frozen=True, slots=True)
class ProjectorOptions:
    """Tuning knobs (the defaults suit a few thousand events per second)."""

    max_batch: int = 2000
    """Records folded per PostgreSQL transaction, at most."""
    poll_timeout_s: float = 0.1
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 2.0
    standby_retry_s: float = 2.0
    """How often a standby projector tries to take the lock."""
    idle_offsets_s: float = 0.5
    """When idle, how often to store positions that moved past transaction markers."""
    connect_timeout_s: int = 5
    statement_timeout_ms: int = 30_000


@dataclass(slots=True)
class ProjectorMetrics:
    """Counters of one projector (read from any thread)."""

    records: int = 0
    events: int = 0
    snapshots: int = 0
    tombstones: int = 0
    undecodable: int = 0
    ignored: int = 0
    batches: int = 0
    rows_upserted: int = 0
    rows_deleted: int = 0
    pg_errors: int = 0
    offsets_moved: int = 0
    sessions: int = 0
    active: bool = False
    """Holds the lock and projects (False: standby or reconnecting)."""
    last_batch_records: int = 0
    last_batch_s: float = 0.0
    busy_s: float = 0.0
    """Time spent folding and writing batches (throughput = events / busy_s)."""
    positions: dict[int, int] = field(default_factory=dict)
    """Next offset per partition as stored in PostgreSQL by this projector."""


def apply_batch(
    conn: psycopg.Connection[Any],
    sink: RunsSink,
    topic: str,
    messages: list[HistoryMessage],
    *,
    expected: Mapping[int, int],
    wire: WireFormat,
    decode: PayloadDecoder,
) -> BatchResult:
    """Fold ``messages`` and store rows and next offsets in one transaction.

    ``expected`` is the next offset this writer believes is stored per partition
    (``OFFSET_BEGINNING`` when none is); if PostgreSQL holds something else for a
    partition of the batch, nothing is written and :class:`OffsetsMovedError` is raised.
    """
    with conn.transaction():
        stored = sink.read_offsets(conn, topic, lock=True)
        partitions = {m.partition for m in messages}
        moved = {
            p: (stored.get(p, _NOT_STORED), expected.get(p, _NOT_STORED))
            for p in partitions
            if stored.get(p, _NOT_STORED) != expected.get(p, _NOT_STORED)
        }
        if moved:
            raise OffsetsMovedError(f"stored offsets moved (stored, expected): {moved}")
        loaded = sink.load(conn, workflow_ids(messages))
        result = fold_batch(messages, loaded, wire, decode)
        sink.write(conn, result.upserts, result.deletes)
        sink.write_offsets(conn, topic, result.next_offsets)
    return result


def to_history_messages(raw: list[Any], floor: Mapping[int, int]) -> list[HistoryMessage]:
    """Data records of a consume() call, minus any below ``floor`` (already applied).

    Fatal Kafka errors raise; transient ones (a broker restarting) are logged.
    """
    out = []
    for msg in raw:
        error = msg.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("visibility: consumer error (retried by librdkafka): %s", error)
            continue
        partition, offset = msg.partition(), msg.offset()
        if offset < floor.get(partition, 0):
            continue
        out.append(HistoryMessage(partition, offset, msg.key(), msg.value(), headers_of(msg)))
    return out


class Projector(BackgroundRunner):
    """Projects ``<prefix>.history`` into runs table ``table`` until stopped.

    Run it as a thread (``start()``/``stop()`` or ``with``), or call ``run(stop)``.
    ``converter`` decodes search attributes and memo (give it the codec the workers
    use to read encrypted values; undecodable values are stored as null).
    """

    thread_name = "visibility-projector"

    def __init__(
        self,
        dsn: str,
        kafka_config: Mapping[str, Any],
        layout: TopicLayout,
        *,
        table: str = DEFAULT_TABLE,
        converter: DataConverter | None = None,
        wire: WireFormat | None = None,
        options: ProjectorOptions | None = None,
    ) -> None:
        super().__init__()
        self.dsn = dsn
        self.layout = layout
        self.topic = layout.history
        self.table = table
        self.sink = RunsSink(table)
        self.options = options or ProjectorOptions()
        self.metrics = ProjectorMetrics()
        self._wire = wire or WireFormat()
        self._decode = payload_decoder(converter)
        base = {
            k: v for k, v in kafka_config.items() if not k.startswith(("group.", "transactional"))
        }
        self._kafka_config = {
            **base,
            "group.id": f"{self.topic}.visibility",  # required by the client; never joined
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 50,
        }
        self._lock_key = f"saga-visibility:{table}:{self.topic}"

    # --- the loop ---------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(self._kafka_config)
        backoff = self.options.backoff_initial_s
        try:
            while not stop.is_set():
                try:
                    self._session(consumer, stop)
                except (psycopg.Error, OffsetsMovedError) as exc:
                    self.metrics.active = False
                    if isinstance(exc, OffsetsMovedError):
                        self.metrics.offsets_moved += 1
                    else:
                        self.metrics.pg_errors += 1
                    log.warning(
                        "visibility projector: %s: %s; reconnecting in %.1fs",
                        type(exc).__name__,
                        str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                        backoff,
                    )
                    consumer.unassign()
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.options.backoff_max_s)
                    continue
                backoff = self.options.backoff_initial_s
        finally:
            self.metrics.active = False
            consumer.close()

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=self.options.connect_timeout_s,
            application_name="saga-visibility-projector",
            keepalives=1,  # notice a vanished server (or network) in about 25 s
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false)",
            [str(int(self.options.statement_timeout_ms))],
        )
        return conn

    def _session(self, consumer: Consumer, stop: threading.Event) -> None:
        """One connection's life: lock, seek to the stored offsets, project until stop."""
        with self._connect() as conn:
            self.metrics.sessions += 1
            apply_schema(conn, self.table)
            if not self._take_lock(conn, stop):
                return
            partitions = self._partitions(consumer, stop)
            if partitions is None:
                return
            with conn.transaction():
                stored = self.sink.read_offsets(conn, self.topic)
            expected = {p: stored.get(p, _NOT_STORED) for p in partitions}
            consumer.assign([TopicPartition(self.topic, p, expected[p]) for p in partitions])
            self.metrics.active = True
            self.metrics.positions = {p: o for p, o in expected.items() if o >= 0}
            log.info(
                "visibility projector active on %s -> %s, from offsets %s",
                self.topic,
                self.table,
                self.metrics.positions or "the beginning",
            )
            self._project(conn, consumer, expected, stop)
            consumer.unassign()
            self.metrics.active = False

    def _take_lock(self, conn: psycopg.Connection[Any], stop: threading.Event) -> bool:
        said = False
        while not stop.is_set():
            row = conn.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s))", [self._lock_key]
            ).fetchone()
            if row is not None and row[0]:
                return True
            if not said:
                log.info("visibility projector: standby (another projector holds %s)", self.table)
                said = True
            stop.wait(self.options.standby_retry_s)
        return False

    def _partitions(self, consumer: Consumer, stop: threading.Event) -> list[int] | None:
        """The history topic's partitions, once it exists (workers create it)."""
        said = False
        while not stop.is_set():
            try:
                topics = consumer.list_topics(self.topic, timeout=10).topics
                meta = topics.get(self.topic)
                if meta is not None and meta.error is None and meta.partitions:
                    return sorted(meta.partitions)
            except KafkaException as exc:
                log.warning("visibility projector: metadata of %s: %s", self.topic, exc)
            if not said:
                log.info("visibility projector: waiting for topic %s", self.topic)
                said = True
            stop.wait(1.0)
        return None

    def _project(
        self,
        conn: psycopg.Connection[Any],
        consumer: Consumer,
        expected: dict[int, int],
        stop: threading.Event,
    ) -> None:
        idle_since = time.monotonic()
        while not stop.is_set():
            raw = consume_available(consumer, self.options.max_batch, self.options.poll_timeout_s)
            messages = to_history_messages(raw, expected)
            if not messages:
                if time.monotonic() - idle_since >= self.options.idle_offsets_s:
                    self._store_positions(conn, consumer, expected)
                    idle_since = time.monotonic()
                continue
            began = time.monotonic()
            result = apply_batch(
                conn,
                self.sink,
                self.topic,
                messages,
                expected=expected,
                wire=self._wire,
                decode=self._decode,
            )
            expected.update(result.next_offsets)
            self._count(result, len(messages), time.monotonic() - began)
            self.metrics.positions.update(result.next_offsets)
            idle_since = time.monotonic()

    def _store_positions(
        self, conn: psycopg.Connection[Any], consumer: Consumer, expected: dict[int, int]
    ) -> None:
        """Store positions that moved with no data record (past transaction markers and
        aborted records), so that a caught-up projector's offsets equal the topic's end."""
        assignment = [TopicPartition(self.topic, p) for p in expected]
        moved = {
            tp.partition: tp.offset
            for tp in consumer.position(assignment)
            if tp.offset >= 0 and tp.offset > expected[tp.partition]
        }
        if not moved:
            return
        with conn.transaction():
            stored = self.sink.read_offsets(conn, self.topic, lock=True)
            changed = {
                p: (stored.get(p), expected[p])
                for p in moved
                if stored.get(p, _NOT_STORED) != expected[p]
            }
            if changed:
                raise OffsetsMovedError(f"stored offsets moved (stored, expected): {changed}")
            self.sink.write_offsets(conn, self.topic, moved)
        expected.update(moved)
        self.metrics.positions.update(moved)

    def _count(self, result: BatchResult, records: int, seconds: float) -> None:
        m = self.metrics
        m.records += records
        m.events += result.events
        m.snapshots += result.snapshots
        m.tombstones += result.tombstones
        m.undecodable += result.undecodable
        m.ignored += result.ignored
        m.batches += 1
        m.rows_upserted += len(result.upserts)
        m.rows_deleted += len(result.deletes)
        m.last_batch_records = records
        m.last_batch_s = seconds
        m.busy_s += seconds
