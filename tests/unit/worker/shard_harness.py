"""The shard processor's part, played in memory: an engine shard over a real store on
disk, a history "partition" as a list, transactions that either commit or vanish.

It lets the shard's behaviour (starts, timers, eviction, retention, restore from a
checkpoint, crashes between commit and store) be tested at unit speed, without a
broker. The processor's own transactions are tested on Kafka (tests/integration).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.converter import DataConverter
from orchestrator.log.topics import TopicLayout
from orchestrator.serde import records as rec
from orchestrator.serde.history_page import HISTORY_QUERY, after_seq_arg
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.engine_worker import definitions
from orchestrator.worker.shard.due import TimerIndex
from orchestrator.worker.shard.engine_shard import EngineShard, ShardTuning
from orchestrator.worker.shard.executions import ExecutionTable
from orchestrator.worker.shard.output import ShardOutput
from orchestrator.worker.shard.records import HistoryEntry, InRecord, OutRecord
from orchestrator.worker.shard.stats import ShardStats
from orchestrator.worker.shard.store import ShardStore, StoreMemory, StoreOptions
from orchestrator.worker.shard.view import StoreView

LAYOUT = TopicLayout(prefix="unit", shards=1)
WIRE = WireFormat()
CONV = DataConverter()
T0 = 1_700_000_000_000  # epoch ms of the harness's clock at start


@dataclass
class Clock:
    now: int = T0

    def __call__(self) -> int:
        return self.now


@dataclass
class Harness:
    """One shard (partition 0) and its log; ``commit()`` is the processor's commit."""

    state_dir: Path
    workflows: list[Any]
    tuning: ShardTuning = field(default_factory=ShardTuning)
    retention_ms: int = 3_600_000
    clock: Clock = field(default_factory=Clock)
    history: list[HistoryEntry] = field(default_factory=list)
    replies: list[rec.Reply] = field(default_factory=list)
    reply_records: list[OutRecord] = field(default_factory=list)
    tasks: list[OutRecord] = field(default_factory=list)
    cancels: list[OutRecord] = field(default_factory=list)
    """Records for ``<prefix>.activity-cancels``."""
    dead_letters: list[OutRecord] = field(default_factory=list)
    commands_offset: int = 0
    task_token_key: bytes | None = None

    def __post_init__(self) -> None:
        self.memory = StoreMemory(StoreOptions(self.state_dir))
        self.shard = self.open_shard()
        self.pending: list[OutRecord] = []

    # --- the shard's life -----------------------------------------------------------

    def open_shard(self) -> EngineShard:
        return EngineShard(
            0,
            LAYOUT,
            definitions(self.workflows),
            WIRE,
            ShardStore.open(self.memory, LAYOUT.history, 0),
            tuning=self.tuning,
            retention_ms=self.retention_ms,
            clock=self.clock,
            task_token_key=self.task_token_key,
        )

    def restore(self, batch: int = 7) -> list[HistoryEntry]:
        """What a new owner does: read the log from the checkpoint, in slices."""
        shard = self.shard
        if shard.checkpoint > len(self.history):
            shard.reset_store()
        tail = [e for e in self.history[shard.checkpoint :] if e.key != b"_gap"]
        for at in range(0, len(tail), batch):
            shard.ingest(tail[at : at + batch])
        self.pending += shard.restored(self.clock.now)
        return tail

    def crash(self) -> None:
        """kill -9: what was not applied to the store is lost with the process."""
        self.pending = []
        self.shard.executions.close()
        self.shard.store.close()
        self.shard = self.open_shard()

    def stop(self) -> None:
        self.shard.close()

    # --- inputs ---------------------------------------------------------------------

    def send(
        self, command: rec.Command, *, ce_id: str | None = None, traceparent: str | None = None
    ) -> list[OutRecord]:
        encoded = WIRE.encode_command(command, ce_id=ce_id, traceparent=traceparent)
        record = InRecord(
            LAYOUT.commands, 0, self.commands_offset, encoded.key, encoded.value,
            list(encoded.headers),
        )
        self.commands_offset += 1
        out = self.shard.handle(record, self.clock.now)
        self.pending += out
        return out

    def start(
        self,
        workflow_id: str,
        workflow_type: str,
        *args: Any,
        ce_id: str | None = None,
        traceparent: str | None = None,
        **kw: Any,
    ) -> None:
        self.send(
            rec.StartWorkflow(
                workflow_id=workflow_id,
                workflow_type=workflow_type,
                task_queue="q",
                input=[CONV.to_payload(a) for a in args],
                **kw,
            ),
            ce_id=ce_id,
            traceparent=traceparent,
        )

    def read(
        self, workflow_id: str, query_name: str, run_id: str | None = None, after_seq: int = 0
    ) -> rec.Reply:
        """A built-in read (``__describe``/``__history``), committed, and its reply."""
        query_id = f"read-{self.commands_offset}"
        args = [after_seq_arg(after_seq)] if query_name == HISTORY_QUERY else []
        query = rec.QueryWorkflow(
            workflow_id=workflow_id, run_id=run_id, query_id=query_id,
            query_name=query_name, args=args,
        )
        self.send(query)
        self.commit()
        return next(r for r in self.replies if r.correlation_id == query_id)

    def tick(self, advance_ms: int = 0) -> list[OutRecord]:
        self.clock.now += advance_ms
        out = self.shard.fire_due(self.clock.now, time.monotonic() + 60)
        self.pending += out
        return out

    # --- the transaction --------------------------------------------------------------

    def commit(self, *, apply: bool = True) -> None:
        """Commit what was decided; ``apply=False``: crash before the store caught up."""
        sealed = self.shard.seal()
        wrote = False
        for out in self.pending:
            if out.topic == LAYOUT.history:
                assert out.key is not None
                self.history.append(
                    HistoryEntry(out.key, out.value, len(self.history), list(out.headers))
                )
                wrote = True
            elif out.topic == LAYOUT.replies:
                self.replies.append(WIRE.decode_reply(out.headers, out.value).record)
                self.reply_records.append(out)
            elif out.topic == LAYOUT.dlq:
                self.dead_letters.append(out)
            elif out.topic == LAYOUT.activity_cancels:
                self.cancels.append(out)
            else:
                self.tasks.append(out)
        self.pending = []
        if apply:
            self.shard.committed(sealed, len(self.history) if wrote else None)

    def run(self, advance_ms: int = 0, rounds: int = 200) -> None:
        """Advance the clock, then tick and commit until nothing more is due now
        (timers, recovery and local work settle; slices are bounded per cycle)."""
        self.clock.now += advance_ms
        for _ in range(rounds):
            self.tick()
            self.commit()
            due = self.shard.next_due_ms()
            if due is None or due > self.clock.now:
                return

    # --- what a user would look at ------------------------------------------------------

    def results(self) -> dict[str, Any]:
        return {
            r.workflow_id: CONV.from_payload(r.result) if r.ok and r.result else r.error
            for r in self.replies
            if r.kind is rec.ReplyKind.RESULT
        }

    def compacted(self) -> dict[bytes, HistoryEntry]:
        """The history partition as compaction leaves it (latest value per key)."""
        latest: dict[bytes, HistoryEntry] = {}
        for entry in self.history:
            latest[entry.key] = entry
        return {k: e for k, e in latest.items() if e.value is not None}

    def compact(self) -> None:
        """Compact the log (offsets kept, as Kafka does)."""
        keep = {e.offset for e in self.compacted().values()}
        self.history = [
            e if e.offset in keep else HistoryEntry(b"_gap", None, e.offset) for e in self.history
        ]

    def events_of(self, workflow_id: str) -> list[str]:
        names: list[str] = []
        for entry in self.history:
            if entry.value is None or entry.key.endswith(b"/snapshot"):
                continue
            if entry.key.decode().rpartition("/")[0].rpartition("/")[0] == workflow_id:
                event = WIRE.decode_event(entry.headers, entry.value).record.event
                names.append(type(event).__name__)
        return names



@dataclass
class Parts:
    """A shard's indexes and output over a fresh store (partition 0), to test one of the
    engine shard's parts on its own."""

    view: StoreView
    executions: ExecutionTable
    timers: TimerIndex
    stats: ShardStats
    output: ShardOutput


def open_parts(state_dir: Path) -> Parts:
    view = StoreView(ShardStore.open(StoreMemory(StoreOptions(state_dir)), LAYOUT.history, 0))
    executions = ExecutionTable(view, WIRE, 100)
    stats = ShardStats()
    output = ShardOutput(
        layout=LAYOUT, partition=0, wire=WIRE, executions=executions, stats=stats,
        task_topic=LAYOUT.task_queue,
    )
    return Parts(view, executions, TimerIndex(view), stats, output)
