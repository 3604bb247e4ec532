"""Rebuild a projection from the raw history topic, from offset 0, into any table.

The rebuild uses the projector's own fold and writer, batch by batch, and stores its
offsets too: a rebuilt table can be compared with the live one
(:mod:`~orchestrator.visibility.compare`), or taken over by a projector started on
it, which continues from where the rebuild stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from psycopg import sql

from orchestrator.converter import DataConverter
from orchestrator.log.consuming import consume_available
from orchestrator.log.topics import TopicLayout
from orchestrator.log.watermarks import watermarks
from orchestrator.serde.wire import WireFormat
from orchestrator.visibility.batch import HistoryMessage
from orchestrator.visibility.fold import payload_decoder
from orchestrator.visibility.projector import apply_batch, to_history_messages
from orchestrator.visibility.schema import apply_schema, drop_tables
from orchestrator.visibility.sink import RunsSink

__all__ = ["RebuildStats", "history_ends", "rebuild"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RebuildStats:
    """What a rebuild read and wrote."""

    table: str
    records: int = 0
    events: int = 0
    undecodable: int = 0
    rows: int = 0
    seconds: float = 0.0
    offsets: dict[int, int] = field(default_factory=dict)
    """Where the rebuild stopped: the next offset per partition."""


def _reader_config(kafka_config: Mapping[str, Any], topic: str) -> dict[str, Any]:
    base = {k: v for k, v in kafka_config.items() if not k.startswith(("group.", "transactional"))}
    return {
        **base,
        "group.id": f"{topic}.visibility-rebuild",  # never joined
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 10,
        "fetch.max.bytes": 52428800,
        "max.partition.fetch.bytes": 10485760,
    }


def history_ends(kafka_config: Mapping[str, Any], topic: str) -> dict[int, int]:
    """The true end offset of every partition of ``topic`` (read_uncommitted high watermark:
    it includes records of transactions still open)."""
    base = {k: v for k, v in kafka_config.items() if not k.startswith(("group.", "transactional"))}
    consumer = Consumer(
        {**base, "group.id": f"{topic}.visibility-ends", "isolation.level": "read_uncommitted"}
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        return {p: watermarks(consumer, topic, p)[1] for p in partitions}
    finally:
        consumer.close()


def rebuild(
    dsn: str,
    kafka_config: Mapping[str, Any],
    layout: TopicLayout,
    *,
    into: str,
    until: Mapping[int, int] | None = None,
    converter: DataConverter | None = None,
    wire: WireFormat | None = None,
    max_batch: int = 5000,
    timeout_s: float = 600.0,
) -> RebuildStats:
    """Drop and recreate table ``into`` (and its offsets table), then project the history
    topic into it from offset 0.

    ``until`` gives the offset to stop at per partition (records at or past it are
    not applied; a missing partition is not read); by default the rebuild reads to the
    topic's end, waiting for open transactions to be decided. TimeoutError after
    ``timeout_s``.
    """
    began = time.monotonic()
    run = _Rebuild(kafka_config, layout.history, RunsSink(into), wire or WireFormat())
    run.decode = payload_decoder(converter)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            drop_tables(conn, into)
            apply_schema(conn, into)
            run.read(conn, until, max_batch, timeout_s)
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(into))
            row = conn.execute(query).fetchone()
            run.stats.rows = int(row[0]) if row else 0
    finally:
        run.consumer.close()
    stats = run.stats
    stats.seconds = time.monotonic() - began
    log.info(
        "visibility rebuild into %s: %d records, %d events, %d rows in %.2fs",
        into,
        stats.records,
        stats.events,
        stats.rows,
        stats.seconds,
    )
    return stats


class _Rebuild:
    """One rebuild's reader, positions and counters."""

    def __init__(
        self, kafka_config: Mapping[str, Any], topic: str, sink: RunsSink, wire: WireFormat
    ) -> None:
        self.kafka_config = kafka_config
        self.topic = topic
        self.sink = sink
        self.wire = wire
        self.decode = payload_decoder()
        self.stats = RebuildStats(sink.table)
        self.consumer = Consumer(_reader_config(kafka_config, topic))
        self.expected: dict[int, int] = {}
        self.positions: dict[int, int] = {}
        self.wanted: dict[int, int] = {}

    def read(
        self,
        conn: psycopg.Connection[Any],
        until: Mapping[int, int] | None,
        max_batch: int,
        timeout_s: float,
    ) -> None:
        to_end = until is None
        self.wanted = history_ends(self.kafka_config, self.topic) if until is None else dict(until)
        partitions = sorted(self.wanted)
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
        self.expected = dict.fromkeys(partitions, OFFSET_BEGINNING)
        self.positions = dict.fromkeys(partitions, 0)
        deadline = time.monotonic() + timeout_s
        while not self._done(to_end):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"rebuild of {self.topic} stuck at {self.positions}, target {self.wanted}: "
                    "a transaction stays open, or the broker is unreachable"
                )
            raw = consume_available(self.consumer, max_batch, 0.1)
            messages = to_history_messages(raw, {})
            if not to_end:  # stop exactly at the given offsets
                messages = [m for m in messages if m.offset < self.wanted.get(m.partition, 0)]
            if messages:
                self._apply(conn, messages)
        final = {p: max(self.positions[p], self.expected[p], 0) for p in partitions}
        with conn.transaction():  # the rebuild's end, for a projector taking the table over
            self.sink.write_offsets(conn, self.topic, final)
        self.stats.offsets = final

    def _apply(self, conn: psycopg.Connection[Any], messages: list[HistoryMessage]) -> None:
        for m in messages:
            self.positions[m.partition] = max(self.positions[m.partition], m.offset + 1)
        result = apply_batch(
            conn,
            self.sink,
            self.topic,
            messages,
            expected=self.expected,
            wire=self.wire,
            decode=self.decode,
        )
        self.expected.update(result.next_offsets)
        self.stats.records += len(messages)
        self.stats.events += result.events
        self.stats.undecodable += result.undecodable

    def _done(self, to_end: bool) -> bool:
        assigned = [TopicPartition(self.topic, p) for p in self.wanted]
        for tp in self.consumer.position(assigned):
            self.positions[tp.partition] = max(self.positions[tp.partition], tp.offset)
        if any(self.positions[p] < end for p, end in self.wanted.items()):
            return False
        if not to_end:
            return True
        # a transaction decided meanwhile added records or its marker: look again
        ends = history_ends(self.kafka_config, self.topic)
        grown = {p: e for p, e in ends.items() if p in self.wanted and e > self.wanted[p]}
        self.wanted.update(grown)
        return not grown
