"""The engine's shard handler: commands in, replayed workflow decisions out.

One instance per owned shard, over the shard's local store (RocksDB, see
:mod:`~orchestrator.worker.shard.store`): the execution index, every run's events until
retention, the timer and retention indexes live on disk; memory holds a bounded cache of
executions in use with their live executors
(:mod:`~orchestrator.worker.shard.executions`). A run that only waits (a long sleep, a
signal) is dropped from memory once its decision is committed and replayed from the
store when something happens to it. Everything it returns is written by the processor in
one transaction; the store follows once that transaction committed.

Replies: a command's reply carries ``correlation_id`` = the command's
``request_id`` (or ``update_id`` / ``query_id``), else its CloudEvents ``ce_id``.
When a run closes, a RESULT reply with correlation id ``result/<workflow_id>`` is
written (not for a run a reset ended: its successor's is), and the snapshot
(key ``<workflow_id>/snapshot``) holds the outcome.

Continue-as-new closes the run and starts the next one (same workflow id, so same
shard) in the same cycle; only the last run writes the RESULT reply. Child
workflows: see :mod:`orchestrator.worker.shard.children`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator import tracing
from orchestrator.config import DEFAULT_CACHE_SIZE, DEFAULT_RETENTION_MS
from orchestrator.converter import DataConverter, Payload
from orchestrator.engine import commands as cmd
from orchestrator.engine import events as ev
from orchestrator.engine import guards, inputs
from orchestrator.engine.activities import PausedTypes
from orchestrator.engine.children import parent_close_stops
from orchestrator.engine.events import Event, Failure
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.failures import closing_failure
from orchestrator.engine.registry import missing_version, pinned_version, registry_of
from orchestrator.engine.status import WorkflowStatus as EngineStatus
from orchestrator.engine.timer_fold import folded_timers
from orchestrator.exceptions import NonDeterminismError
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout
from orchestrator.serde import records as rec
from orchestrator.serde.errors import RecordDecodeError, RecordEncodeError
from orchestrator.serde.history_page import BUILTIN_READS, PendingActivity
from orchestrator.serde.wire import EncodedRecord, WireFormat
from orchestrator.task_token import attempt_signature
from orchestrator.worker.shard import children, ingest
from orchestrator.worker.shard import store as keys
from orchestrator.worker.shard.dlq import dead_letter
from orchestrator.worker.shard.due import DueTimer, TimerIndex
from orchestrator.worker.shard.executions import (
    Execution,
    ExecutionTable,
    Sealed,
    trace_of,
    with_trace,
)
from orchestrator.worker.shard.heartbeats import HeartbeatStore
from orchestrator.worker.shard.local_activities import LocalActivities
from orchestrator.worker.shard.outcome_replies import (
    TokenOutcome,
    asks_reply,
    judged_reply,
    signature_problem,
)
from orchestrator.worker.shard.pending import pending_activities
from orchestrator.worker.shard.reads import StoreReads
from orchestrator.worker.shard.records import HistoryEntry, InRecord, OutRecord
from orchestrator.worker.shard.replies import (
    existing_run_reply,
    refusal,
    reset_reply,
    result_correlation_id,
    started_reply,
    unknown_type_reply,
)
from orchestrator.worker.shard.reset import ResetRefusedError, plan_reset
from orchestrator.worker.shard.retention import Retention
from orchestrator.worker.shard.standby import StandbyWarmer
from orchestrator.worker.shard.start_policy import (
    StartVerdict,
    repeat_reply,
    replaced_reason,
    request_id_of,
    verdict,
)
from orchestrator.worker.shard.stats import ShardStats
from orchestrator.worker.shard.store import ShardStore
from orchestrator.worker.shard.translate import (
    pause_state,
    repair_notes,
    reply_kind,
    start_inputs,
    to_input,
)
from orchestrator.worker.shard.view import StoreView
from orchestrator.workflow import WorkflowDefinition

__all__ = ["EngineShard", "Execution", "ShardStats", "result_correlation_id"]

log = logging.getLogger(__name__)

#: commands whose sender hears "ok" (or why not) once the run took them
_ACKNOWLEDGED = (
    rec.SignalWorkflow,
    rec.CancelWorkflow,
    rec.TerminateWorkflow,
    rec.PauseWorkflow,
    rec.UnpauseWorkflow,
    rec.RepairWorkflow,
)
#: local-activity rounds one input may lead to; later attempts go through the task queue
_MAX_LOCAL_ROUNDS = 1000
#: runs one input may start by continue-as-new; a longer chain goes on in the next cycle
_MAX_CHAINED_RUNS = 100
_RUN_ID_NAMESPACE = uuid.UUID("5b0f9a43-58c3-4d4e-9a55-3c4c2b7f6e10")


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class ShardTuning:
    """Bounds on what one shard keeps in memory and does per cycle."""

    #: executions kept in memory (with their live executors) besides those pinned by
    #: a decision not yet committed; least recently used go first
    cache_size: int = DEFAULT_CACHE_SIZE
    #: a run with no activity attempt running and no timer due within this long is
    #: dropped from memory once its decision is committed (replayed when it wakes)
    idle_evict_ms: int = 10_000
    #: timers fired per shard and cycle at most (a wake-up storm is spread over cycles)
    timers_per_cycle: int = 200
    #: and for at most this long per shard and cycle (each firing may replay a run), so
    #: the commands of a storming shard still get decided every few tens of ms; the
    #: same budget bounds the replays that recover runs after a restore
    timer_budget_ms: float = 20.0
    #: runs recovered (replayed to find their timers) per shard and cycle after a restore
    recoveries_per_cycle: int = 100


class EngineShard:
    """Implements :class:`~orchestrator.worker.shard.contract.ShardHandler` with the engine."""

    def __init__(
        self,
        partition: int,
        layout: TopicLayout,
        workflows: Mapping[str, WorkflowDefinition],
        wire: WireFormat,
        store: ShardStore,
        *,
        build_id: str = "",
        tuning: ShardTuning | None = None,
        retention_ms: int = DEFAULT_RETENTION_MS,
        converter: DataConverter | None = None,
        local_activities: LocalActivities | None = None,
        clock: Callable[[], int] = _wall_ms,
        task_topic: Callable[[str], str] | None = None,
        paused_types: PausedTypes | None = None,
        task_token_key: bytes | None = None,
    ) -> None:
        """``task_topic``: the topic of a task queue's tasks (flow control sends a
        controlled queue's to its backlog); None: ``layout.task_queue``.
        ``paused_types``: the operator's activity-type pauses, so that attempts held
        by a pause do not time out (None: no pauses are followed).
        ``task_token_key``: sign each dispatched attempt and refuse outcomes whose
        signature is not their attempt's (None: tokens are unsigned, nothing checked)."""
        self._paused_types = paused_types
        self._token_key = task_token_key
        self.partition = partition
        self._task_topic = task_topic or layout.task_queue
        self.layout = layout
        self.workflows = registry_of(workflows)
        self.wire = wire
        self.store = store
        self.build_id = build_id
        self.tuning = tuning or ShardTuning()
        self.retention_ms = retention_ms
        # with a codec when payloads are encrypted; one for every replay of the shard
        self.converter = converter if converter is not None else DataConverter()
        self.stats = ShardStats()
        self._clock = clock
        self._open_indexes()
        self._outbox: list[OutRecord] = []  # records produced on the side (parked snapshots)
        self._local = local_activities
        #: local attempts asked for, not yet run, with the trace context of their decision
        self._local_due: list[tuple[rec.ActivityTask, str | None]] = []
        self._chaining = False  # starting continued runs: _apply leaves the chain to its loop
        self._continue_due: list[Execution] = []
        #: trace contexts of the command being handled and of the run deciding (W3C
        #: traceparent), written into the headers of the records they lead to
        self._restored_at = 0  # when the latest restore finished (epoch ms)
        self._trace_command: str | None = None
        self._trace_run: str | None = None  # chains past _MAX_CHAINED_RUNS, for fire_due

    def _open_indexes(self) -> None:
        self.view = StoreView(self.store)
        self.executions = ExecutionTable(self.view, self.wire, self.tuning.cache_size)
        self.timers = TimerIndex(self.view)
        self.retention = Retention(
            self.view, self.executions, self.layout, self.partition, self.retention_ms
        )
        self.standby = StandbyWarmer(
            self.view, self.executions, self.timers, self.workflows, self._replay
        )
        self.reads = StoreReads(self.view, self.wire, self._pending_of)
        self.heartbeats = HeartbeatStore(self.view, self.wire)
        self._recovering = self.view.first(b"v") is not None
        self._recovery_began, self._recovered, self._folded = time.monotonic(), 0, 0

    # --- restore ------------------------------------------------------------------

    @property
    def checkpoint(self) -> int:
        """The history offset this shard's store has read up to."""
        return self.store.checkpoint

    def reset_store(self) -> None:
        """The store is ahead of the log (a recreated topic, a store of another
        cluster): wipe it; the restore then reads the partition from its beginning."""
        self.executions.close()
        self.store = self.store.reset()
        self._open_indexes()

    def ingest(self, entries: Sequence[HistoryEntry]) -> None:
        """History records read by a restore, oldest first, into the store."""
        ingest.ingest(
            self.store, self.wire, entries, self.retention_ms, self.workflows.keys(),
            known_versions=self.workflows.held(),
        )
        self.timers.forget()  # the restore wrote index entries around them
        self.retention.expiries.forget()

    def restored(self, now_ms: int) -> list[OutRecord]:
        """The restore reached the log's end: finish the store and serve again. Runs the
        restore touched (and parked runs, which new code may now replay) are recovered
        in bounded slices by :meth:`fire_due`."""
        ingest.finish(self.store, self.wire, self.retention_ms)
        self.timers.forget()
        self.retention.expiries.forget()
        for key, _ in list(self.store.scan(b"k")):
            self.store.put(b"v" + key[1:], b"")
        self._recovering = self.store.first(b"v") is not None
        self._restored_at = now_ms
        self._recovery_began, self._recovered, self._folded = time.monotonic(), 0, 0
        if not self._recovering:  # the restore indexed every timer it read (ingest.py)
            self._log_recovered()
        return self._take_outbox()

    def _recover_some(self, now_ms: int, deadline: float) -> list[OutRecord]:
        """Replay a slice of the runs whose timers are unknown since the restore."""
        if not self._recovering:
            return []
        batch = list(self.view.scan(b"v", self.tuning.recoveries_per_cycle))
        if not batch:
            self._recovering = False
            self._log_recovered()
            return []
        out: list[OutRecord] = []
        for key, _ in batch:
            self.view.delete(key)
            self._recovered += 1
            out += self._recover(key[1:].decode(), now_ms)
            if time.monotonic() >= deadline:
                break  # the shard's commands come first; the rest in the next cycles
        return out

    def _log_recovered(self) -> None:
        log.info(
            "shard %d: runs to recover after the restore all recovered (%d in %.1fs, "
            "%d of them with timers read off their events)",
            self.partition,
            self._recovered,
            time.monotonic() - self._recovery_began,
            self._folded,
        )

    def _recover(self, workflow_id: str, now_ms: int) -> list[OutRecord]:
        execution = self.executions.get(workflow_id)
        if execution is None:
            return []
        if execution.status is EngineStatus.CONTINUED_AS_NEW:
            # the latest run continued as new but its next run never started (a chain
            # left for the next cycle, or a workflow type this build lacked): start it now
            events = self.executions.events(execution)
            if events and isinstance(events[-1], ev.WorkflowContinuedAsNew):
                assert execution.snapshot is not None
                execution.next_run = children.next_run_after(execution.snapshot, events[-1])
                execution.parked = None
                self.stats.run_unparked(workflow_id)
                return self._run_chain(execution, now_ms)
            return []
        if not execution.is_open or (execution.parked is None and self._fold(execution)):
            return []
        was_parked = execution.parked
        execution.parked = None
        self.stats.run_unparked(workflow_id)
        executor = self._executor(execution)
        if executor is None:
            return []
        out: list[OutRecord] = []
        if was_parked is not None:  # this build replays it: no longer parked
            log.info("workflow %s run %s unparked", execution.workflow_id, execution.run_id)
            self.view.delete(b"k" + workflow_id.encode())
            out.append(self._snapshot(execution, executor))
        elif executor.quiet_until(now_ms + self.tuning.idle_evict_ms):
            self.executions.evict(execution)
        return out

    def _fold(self, execution: Execution) -> bool:
        """Index a sleeping run's timers from its events, without replaying it
        (:mod:`~orchestrator.engine.timer_fold`); False when only a replay can tell.
        A run the current code cannot replay is then parked when it next wakes, not
        here."""
        if execution.executor is not None or execution.workflow_type not in self.workflows:
            return False
        events = self.executions.events(execution)
        if self.workflows.get_version(execution.workflow_type, pinned_version(events)) is None:
            return False  # the replay parks it now, visibly, rather than when it wakes
        timers = folded_timers(events)
        if timers is None:
            return False
        self.timers.replace_run(execution.workflow_id, execution.run_id, timers)
        self._folded += 1
        self.executions.evict(execution)
        return True

    def keep_warm(self, now_ms: int) -> bool:
        """While standing by for this shard (another worker owns it): index the timers
        of open runs the tail touched (:mod:`~orchestrator.worker.shard.standby`).
        Writes nothing to Kafka. True while there is more to do."""
        tuning = self.tuning
        return self.standby.warm_some(tuning.recoveries_per_cycle, tuning.timer_budget_ms)

    # --- transactions ---------------------------------------------------------------

    def seal(self) -> Sealed:
        """The store writes of the records handed to the processor since the last seal."""
        return self.executions.seal()

    def committed(self, sealed: object, checkpoint: int | None) -> None:
        """The transaction of ``sealed`` committed: write it to the store, and drop the
        runs that now only wait, and the runs that closed, from memory. A closed run is
        read back from the store on the rare command that names it (a repeated start, a
        read); kept in the cache, it only made the collector's full passes longer."""
        assert isinstance(sealed, Sealed)
        horizon = self._clock() + self.tuning.idle_evict_ms
        for execution in self.executions.applied(sealed, checkpoint):
            if not execution.is_open:
                if execution.next_run is None:
                    self.executions.evict(execution)
                continue
            executor = execution.executor
            if executor is not None and executor.quiet_until(horizon):
                self.executions.evict(execution)

    def close(self, *, discard: bool = False, wipe: bool = False) -> None:
        """Release the store. ``discard``: decisions not applied to the store were
        never committed; their runs are recovered by replay on the next restore.
        ``wipe``: the store failed; delete it (the next owner rebuilds from the log)."""
        self.executions.close()
        if wipe:
            self.store.destroy()
            return
        if discard:
            for execution in self.executions.unapplied():
                self.store.put(keys.recovery_key(execution.workflow_id), b"")
        self.store.close()

    # --- commands -----------------------------------------------------------------

    def handle(self, msg: InRecord, now_ms: int) -> list[OutRecord]:
        try:
            out = self._handle(msg, now_ms)
        finally:
            self._trace_command = self._trace_run = None
        return self._take_outbox() + out

    def _take_outbox(self) -> list[OutRecord]:
        out, self._outbox = self._outbox, []
        return out

    def _handle(self, msg: InRecord, now_ms: int) -> list[OutRecord]:  # noqa: PLR0911
        try:
            decoded = self.wire.decode_command(msg.headers, msg.value)
        except RecordDecodeError as exc:
            self.stats.dead_lettered += 1
            return [dead_letter(self.layout.dlq, msg, str(exc))]
        command, ce_id = decoded.record, decoded.cloud_event.id
        self._trace_command = decoded.cloud_event.traceparent
        if isinstance(command, rec.QueryWorkflow) and command.query_name in BUILTIN_READS:
            return [self._reply(self.reads.answer(command))]
        if isinstance(command, rec.StartWorkflow):
            return self._start(command, ce_id, msg, now_ms)
        execution = self.executions.get(command.workflow_id)
        if decoded.cloud_event.source == children.PARENT_SOURCE and isinstance(
            command, rec.CancelWorkflow | rec.TerminateWorkflow
        ):
            return self._stop_from_parent(execution, command, ce_id, msg, now_ms)
        run_id = getattr(command, "run_id", None)
        if execution is None or (
            run_id and run_id != execution.run_id and not isinstance(command, rec.QueryWorkflow)
        ):
            return self._no_such_run(command, ce_id)
        if isinstance(command, rec.ResetWorkflow):  # also the way out of a bad build's parking
            return self._reset(execution, command, ce_id, msg, now_ms)
        if execution.parked is not None:
            self.stats.dead_lettered += 1
            return [dead_letter(self.layout.dlq, msg, f"workflow is parked: {execution.parked}")]
        if isinstance(command, rec.QueryWorkflow):
            return self._query(execution, command)
        if isinstance(command, rec.RepairWorkflow):
            return self._repair(execution, command, ce_id, now_ms)
        if not execution.is_open:
            return self._reply_closed(command, ce_id, execution)
        executor = self._executor(execution)
        if executor is None:
            # parked by its replay just now (say, a version this worker lacks): the
            # command is kept in the DLQ, for a redrive once the run can go on
            self.stats.dead_lettered += 1
            return [dead_letter(self.layout.dlq, msg, f"workflow is parked: {execution.parked}")]
        return self._apply_command(execution, executor, command, ce_id, now_ms)

    def _apply_command(
        self,
        execution: Execution,
        executor: WorkflowExecutor,
        command: rec.Command,
        ce_id: str,
        now_ms: int,
    ) -> list[OutRecord]:
        """Apply a command to an open run; an outcome sent by task token is answered.
        With a task-token key, an outcome whose signature is not its attempt's is
        refused (answered if asked) and changes nothing."""
        if isinstance(command, TokenOutcome) and self._token_key is not None:
            bad = signature_problem(self._token_key, command)
            if bad is not None:
                log.warning(
                    "outcome for %s run %s activity %d attempt %d refused: %s",
                    command.workflow_id, command.run_id, command.activity_seq,
                    command.attempt, bad.message,
                )
                return self._refuse(refusal(command, ce_id, execution.run_id, bad))
        answer = None
        if asks_reply(command):  # judged before applying: applying ends the attempt
            assert isinstance(command, TokenOutcome)
            answer = judged_reply(command, execution.run_id, executor.activities)
        out = self._apply(execution, [to_input(command, ce_id)], now_ms, command, ce_id)
        if isinstance(command, rec.ActivityHeartbeat) and _beats_running(execution, command):
            self.heartbeats.record(command, now_ms)
        return out if answer is None else [*out, self._reply(answer)]

    def _start(
        self, start: rec.StartWorkflow, ce_id: str, msg: InRecord, now: int
    ) -> list[OutRecord]:
        correlation = request_id_of(start, ce_id)
        existing = self.executions.get(start.workflow_id)
        decided = verdict(start, ce_id, existing)
        if decided is StartVerdict.START:
            return self._new_run(start, correlation, msg, now)
        assert existing is not None
        if decided is StartVerdict.REPEAT:  # the first send's reply again, and nothing else
            if start.parent is not None:
                return []  # the parent heard STARTED with the first send, in its transaction
            return [self._reply(repeat_reply(start, ce_id, existing))]
        if decided is StartVerdict.REPLACE:
            return self._replace(start, ce_id, existing, msg, now)
        if start.parent is not None:  # a child's start: its parent hears of the refusal
            return [self._child_refused(start, existing)]
        # idempotent start: the same business id never gets a second running execution
        reply = existing_run_reply(start, correlation, existing.run_id, running=existing.is_open)
        return [*self._signal_with_start(existing, start, now, correlation), self._reply(reply)]

    def _replace(
        self, start: rec.StartWorkflow, ce_id: str, running: Execution, msg: InRecord, now: int
    ) -> list[OutRecord]:
        """TERMINATE_IF_RUNNING: terminate the running run and start the new one, in one
        decision (one transaction). A parked run is not touched: the start goes to the DLQ,
        as does a start of an unknown type (refused by :meth:`_new_run`)."""
        correlation = request_id_of(start, ce_id)
        if start.workflow_type not in self.workflows:
            return self._new_run(start, correlation, msg, now)
        if running.parked is None:
            stop = [inputs.TerminateWorkflow(reason=replaced_reason(start, ce_id))]
            out = self._apply(running, stop, now, None, correlation)
            if not running.is_open:
                return out + self._new_run(start, correlation, msg, now)
        self.stats.dead_lettered += 1  # parked before, or by the replay just now
        return [dead_letter(self.layout.dlq, msg, f"workflow is parked: {running.parked}")]

    def _new_run(
        self, start: rec.StartWorkflow, correlation: str, msg: InRecord, now: int
    ) -> list[OutRecord]:
        definition = self.workflows.get_version(start.workflow_type)  # the newest
        if definition is None:
            # kept in the DLQ (`saga dlq redrive` after a deploy that has the type); a
            # waiting caller hears why at once instead of timing out
            self.stats.dead_lettered += 1
            reason = (
                f"unknown workflow type {start.workflow_type!r}; this worker "
                f"knows {self.workflows.describe()}"
            )
            refused = unknown_type_reply(start, correlation, reason)
            return [dead_letter(self.layout.dlq, msg, reason), self._reply(refused)]
        run_id = str(
            uuid.uuid5(_RUN_ID_NAMESPACE, f"{start.workflow_id}/{msg.partition}/{msg.offset}")
        )
        parent = start.parent
        execution = Execution(
            start.workflow_id,
            run_id,
            start.workflow_type,
            start.task_queue,
            now,
            parent=parent,
            start_request_id=correlation,
            start_run_id=run_id,
            traceparent=self._trace_command,
            workflow_version=definition.version,
        )
        self.executions.add(execution)
        self.stats.run_started(execution.workflow_type)
        first = start_inputs(start, run_id, now, correlation)
        if parent is not None:
            # reported before the run's first decision, which may already close it
            report = children.started_report(parent, start.workflow_id, run_id)
            return [self._report(report), *self._apply(execution, first, now, None, correlation)]
        out = self._apply(execution, first, now, None, correlation)
        out.append(self._reply(started_reply(start, correlation, run_id)))
        return out

    def _signal_with_start(
        self, existing: Execution, start: rec.StartWorkflow, now: int, correlation: str
    ) -> list[OutRecord]:
        """Signal-with-start on a running id: the running run gets the signal."""
        signal = start.signal_with_start
        if signal is None or not existing.is_open or existing.parked is not None:
            return []
        send = inputs.SendSignal(
            name=signal.signal_name, args=list(signal.args), request_id=correlation
        )
        return self._apply(existing, [send], now, None, correlation)

    def _child_refused(self, start: rec.StartWorkflow, existing: Execution) -> OutRecord:
        assert start.parent is not None
        policy = start.id_reuse_policy.value
        state = "is running" if existing.is_open else f"was used (reuse policy {policy})"
        failure = Failure(
            message=f"workflow id {start.workflow_id!r} {state} as run {existing.run_id}",
            type="WorkflowAlreadyStarted",
            non_retryable=True,
        )
        return self._report(children.refused_report(start.parent, start.workflow_id, failure))

    def _stop_from_parent(
        self,
        execution: Execution | None,
        command: rec.CancelWorkflow | rec.TerminateWorkflow,
        ce_id: str,
        msg: InRecord,
        now: int,
    ) -> list[OutRecord]:
        """A parent's cancel or terminate of its child: applied to the child's open run
        if the parent's start began its chain, else dropped; nobody waits for a reply."""
        if execution is None or not children.from_parent(execution.parent, command):
            log.info(
                "%s from a parent for workflow %s dropped: no run of it is that parent's "
                "child (%s)", type(command).__name__, command.workflow_id, command.request_id,
            )
            return []
        if not execution.is_open:
            return []
        if execution.parked is not None:
            self.stats.dead_lettered += 1
            return [dead_letter(self.layout.dlq, msg, f"workflow is parked: {execution.parked}")]
        return self._apply(execution, [to_input(command)], now, None, ce_id)

    def _stop_child(self, execution: Execution, command: cmd.StopChildWorkflow) -> OutRecord:
        """A parent's cancel or terminate of its child, to the child's own shard; exactly
        once, with the event that asked for it. It follows the child's start there (same
        partition, written earlier or in this very transaction)."""
        stop, ce_id = children.stop_command(execution.workflow_id, execution.run_id, command)
        partition = shard_for(command.workflow_id, self.layout.shards)
        encoded = self.wire.encode_command(stop, ce_id=ce_id, source=children.PARENT_SOURCE)
        return self._out(self.layout.commands, encoded, partition)

    def _report(self, report: rec.ChildWorkflowResult) -> OutRecord:
        """News for a parent run, on the parent's own shard of ``<prefix>.commands``."""
        self.stats.child_reports += 1
        partition = shard_for(report.workflow_id, self.layout.shards)
        return self._out(self.layout.commands, self.wire.encode_command(report), partition)

    # --- timers ---------------------------------------------------------------------

    def _set_timer(self, execution: Execution, timer: cmd.StartTimer) -> None:
        self.timers.set(execution.workflow_id, execution.run_id, timer.timer_id, timer.fire_at)

    def _pending_of(self, workflow_id: str) -> list[PendingActivity]:
        """For describe: the open run's unfinished activities, marked when paused."""
        execution = self.executions.get(workflow_id)
        if execution is None or not execution.is_open:
            return []
        return pending_activities(self.executions.events(execution), self._paused_types)

    def _replay(self, definition: WorkflowDefinition, events: list[Event]) -> WorkflowExecutor:
        build, converter = self.build_id, self.converter
        newest = functools.partial(self.workflows.newest_version, definition.name)
        executor = WorkflowExecutor(definition, events, build_id=build, converter=converter,
                                    newest_version=newest)
        executor.activities.paused_types = self._paused_types
        return executor

    def next_due_ms(self) -> int | None:
        if self._recovering or self._continue_due or self._local_due:
            return 0
        due = [d for d in (self.timers.next_due(), self.retention.next_due()) if d is not None]
        return min(due) if due else None

    def fire_due(self, now_ms: int, until: float) -> list[OutRecord]:
        """Go on with long continue-as-new chains and run the local activity attempts
        decided in this cycle; then, until ``until`` (monotonic) and within this
        shard's own budgets, fire due timers, tombstone expired runs and recover runs
        after a restore."""
        self._trace_command = self._trace_run = None
        if self._idle_at(now_ms):
            return []  # every cycle asks every shard: most have nothing to do
        out: list[OutRecord] = []
        chains, self._continue_due = self._continue_due, []
        for chained in chains:
            if self.executions.get(chained.workflow_id) is chained:
                out += self._run_chain(chained, now_ms)
        if time.monotonic() < until:
            until = min(until, time.monotonic() + self.tuning.timer_budget_ms / 1000)
            out += self.retention.expire(now_ms, self.tuning.timers_per_cycle)
            due = self.timers.next_due()
            if self._recovering or (due is not None and due <= now_ms):
                with guards.installed():  # for the replays and firings that follow
                    out += self._fire_timers(now_ms, until)
                    out += self._recover_some(now_ms, until)
        out += self._run_local(now_ms)
        return self._take_outbox() + out

    def _idle_at(self, now_ms: int) -> bool:
        """Nothing for :meth:`fire_due` to do at ``now_ms`` (the indexes' fronts are cached)."""
        if self._recovering or self._continue_due or self._local_due or self._outbox:
            return False
        timer, expiry = self.timers.next_due(), self.retention.next_due()
        return (timer is None or timer > now_ms) and (expiry is None or expiry > now_ms)

    def _fire_timers(self, now_ms: int, deadline: float) -> list[OutRecord]:
        """Fire due timers, a few at a time, within the count and time budgets."""
        out: list[OutRecord] = []
        fired = 0
        while fired < self.tuning.timers_per_cycle:  # at least one chunk, however slow
            chunk = self.timers.pop_due(now_ms, min(16, self.tuning.timers_per_cycle - fired))
            fired += len(chunk)
            for due in chunk:
                out += self._fire(due, now_ms)
            if not chunk or time.monotonic() >= deadline:
                break
        return out

    def _fire(self, due: DueTimer, now_ms: int) -> list[OutRecord]:
        execution = self.executions.get(due.workflow_id)
        if execution is None or execution.run_id != due.run_id or not execution.is_open:
            return []
        if execution.parked is not None or self._executor(execution) is None:
            return []
        if self._recovering:
            self.timers.discard(due)  # the replay, if any, registered it again
        fire = [inputs.FireTimer(timer_id=due.timer_id)]
        return self._apply(execution, fire, now_ms, None, "", park_unwritable=True)

    def _run_local(self, now_ms: int) -> list[OutRecord]:
        """Run due local attempts (all at once), apply their outcomes; repeat while the
        code asks for more, so a run of local steps commits in one transaction."""
        if not self._local_due or self._local is None:
            return []  # every cycle of every shard passes here: nothing to do, no work
        out: list[OutRecord] = []
        for _ in range(_MAX_LOCAL_ROUNDS):
            due, self._local_due = self._local_due, []
            if not due:
                break
            outcomes = self._local.run([t for t, _ in due], [trace for _, trace in due])
            self.stats.local_attempts += len(outcomes)
            now = max(now_ms, self._clock())
            for outcome, trace in outcomes:
                execution = self.executions.get(outcome.workflow_id)
                if (
                    execution is None
                    or execution.run_id != outcome.run_id
                    or not execution.is_open
                    or execution.parked is not None
                ):
                    continue  # the run ended or stopped meanwhile (say, terminated)
                out += self._apply(
                    execution, [to_input(outcome)], now, None, "", park_unwritable=True, cause=trace
                )
        # past the round limit (the code loops over local calls): the task queue takes the rest
        out += [self._task_record(task) for task, _ in self._local_due]
        self._local_due = []
        return out

    # --- running the engine ---------------------------------------------------------

    def _executor(self, execution: Execution) -> WorkflowExecutor | None:
        """The live executor, replaying history if it was evicted; None if parked."""
        if execution.executor is not None:
            return execution.executor
        events = self.executions.events(execution)
        # a run stays on the version it started on: the one its WorkflowStarted records
        version = pinned_version(events) or execution.workflow_version
        definition = self.workflows.get_version(execution.workflow_type, version)
        if definition is None:
            execution.workflow_version = version
            self._park(execution, missing_version(self.workflows, execution.workflow_type, version))
            return None
        execution.workflow_version = definition.version
        try:
            executor = self._replay(definition, events)
        except NonDeterminismError as exc:
            self._park(execution, str(exc))
            return None
        if events:
            self.stats.replays += 1
            if executor.running_activities():
                self.heartbeats.restore(execution.workflow_id, execution.run_id, executor)
                executor.heartbeat_grace(self._restored_at)
            if self._recovering:
                # the restore may have rebuilt the store from the topic, which holds no
                # timer index: the replay says which timers the run holds. Otherwise
                # the store has indexed them since they were decided.
                pending = executor.pending_timers()
                self.timers.replace_run(execution.workflow_id, execution.run_id, pending)
        execution.executor = executor
        return executor

    def _park(self, execution: Execution, reason: str) -> None:
        """Stop driving a run that cannot be replayed; history stays intact, status says why."""
        execution.parked = reason
        self.stats.run_parked(execution.workflow_id)
        self.executions.drop_executor(execution)
        self.view.put(b"k" + execution.workflow_id.encode(), b"")  # retried by a restore
        log.error("workflow %s run %s parked: %s", execution.workflow_id, execution.run_id, reason)
        self._outbox.append(self._snapshot(execution, None))

    def _apply(
        self,
        execution: Execution,
        batch: Sequence[inputs.Input],
        now: int,
        command: rec.Command | None,
        correlation: str,
        *,
        park_unwritable: bool = False,
        cause: str | None = None,
    ) -> list[OutRecord]:
        """Apply inputs to the run and turn its decision into records. A decision that
        cannot be written raises (the command that caused it is dead-lettered with the
        reason), or with ``park_unwritable`` (timers, local activities: no command to
        refuse) parks the run. With a tracing SDK the decision is a span, child of the
        command's trace context (of the run's for a timer or a local activity)."""
        if not tracing.recording():
            return self._decide(
                execution, batch, now, command, correlation, park_unwritable=park_unwritable
            )
        parent = (
            cause or (self._trace_command if command is not None else None) or execution.traceparent
        )
        attributes = tracing.kafka_attributes(
            self.layout.commands,
            "process",
            **{
                "messaging.destination.partition.id": str(self.partition),
                "saga.workflow_id": execution.workflow_id,
                "saga.run_id": execution.run_id,
                "saga.workflow_type": execution.workflow_type,
                "saga.inputs": ", ".join(type(i).__name__ for i in batch),
            },
        )
        name = f"saga decide {execution.workflow_type}"
        with tracing.hop(name, tracing.CONSUMER, parent, attributes) as hop:
            out = self._decide(
                execution,
                batch,
                now,
                command,
                correlation,
                park_unwritable=park_unwritable,
                hop=hop,
            )
            hop.set("saga.status", execution.status.name)
            if execution.parked is not None:
                hop.fail(f"parked: {execution.parked}")
            return out

    def _decide(
        self,
        execution: Execution,
        batch: Sequence[inputs.Input],
        now: int,
        command: rec.Command | None,
        correlation: str,
        *,
        park_unwritable: bool,
        hop: tracing.Hop | None = None,
    ) -> list[OutRecord]:
        executor = self._executor(execution)
        if executor is None:
            return []
        self._trace_run = (hop and hop.traceparent) or execution.traceparent
        try:
            decision = executor.apply(batch, now)
        except NonDeterminismError as exc:
            self._park(execution, str(exc))
            return []
        except Exception as exc:  # noqa: BLE001 - the executor is unusable after a failed apply
            self._park(execution, f"{type(exc).__name__}: {exc}")
            return []
        try:  # before anything is recorded: a decision is written whole or not at all
            encoded = [
                self.wire.encode_event(execution.workflow_id, execution.run_id, e)
                for e in decision.events
            ]
        except RecordEncodeError as exc:
            if not park_unwritable:
                self.executions.drop_executor(execution)  # it decided what was not written
                raise
            self._park(execution, f"its decision cannot be written: {exc}")
            return []
        out = [
            self._event(execution, e, enc) for e, enc in zip(decision.events, encoded, strict=True)
        ]
        if hop is not None and decision.events:
            hop.set("saga.events", f"{decision.events[0].seq}-{decision.events[-1].seq}")
        for command_out in decision.commands:
            out += self._command(execution, command_out)
        if any(isinstance(e, ev.WorkflowUnpaused) for e in decision.events):
            # a timer re-armed while paused (a heartbeat timeout) fired into the pause
            # once and was held; from the unpause on, the run's timers are its code's
            pending = executor.pending_timers()
            self.timers.replace_run(execution.workflow_id, execution.run_id, pending)
        if isinstance(command, _ACKNOWLEDGED):
            kind = reply_kind(command)
            # a command the run refused (e.g. signal arguments its handler cannot read)
            # left no trace in history: say so, never "ok"
            refused = "; ".join(decision.rejected)
            out.append(
                self._reply(
                    rec.Reply(
                        correlation_id=command.request_id or correlation,
                        kind=kind,
                        workflow_id=execution.workflow_id,
                        run_id=execution.run_id,
                        ok=not refused,
                        error=Failure(message=refused, type="CommandRejected") if refused else None,
                    )
                )
            )
        previous = execution.status
        execution.status = decision.status
        if decision.events and (
            previous is not decision.status
            or execution.snapshot is None
            or not execution.is_open
            or pause_state(executor) != execution.snapshot.paused
        ):
            out.append(self._snapshot(execution, executor))
        if not execution.is_open:
            out += self._closed(execution)
        if execution.next_run is not None and not self._chaining:
            out += self._run_chain(execution, now)
        return out

    # --- an operator's reset (planned by orchestrator/worker/shard/reset.py) --------

    def _reset(
        self, old: Execution, command: rec.ResetWorkflow, ce_id: str, msg: InRecord, now: int
    ) -> list[OutRecord]:
        """Start a new run with ``old``'s history up to the reset point, terminating
        ``old`` first if open; refused (nothing written) when the point is not one to
        reset to or the current code does not replay the history up to it."""
        correlation = command.request_id or ce_id
        new_run_id = str(
            uuid.uuid5(_RUN_ID_NAMESPACE, f"{old.workflow_id}/reset/{msg.partition}/{msg.offset}")
        )
        # the new run replays the old run's events: it stays on the old run's version
        version = pinned_version(self.executions.events(old))
        definition = self.workflows.get_version(old.workflow_type, version)
        if definition is None:
            unknown = missing_version(self.workflows, old.workflow_type, version) + " here"
            return [self._reply(reset_reply(command, correlation, old.run_id, unknown))]
        try:
            plan = plan_reset(
                self.executions.events(old),
                old_run_id=old.run_id,
                new_run_id=new_run_id,
                event_seq=command.event_seq,
                exclude_signals=command.exclude_signals,
                reason=command.reason,
                operator=command.operator,
                before_build=command.before_build,
            )
            executor = self._replay(definition, plan.prefix)
        except (ResetRefusedError, NonDeterminismError) as exc:
            return [self._reply(reset_reply(command, correlation, old.run_id, str(exc)))]
        out: list[OutRecord] = []
        if old.is_open:
            why = f"reset to event {plan.to_seq} as run {new_run_id}: {command.reason}"
            stop = inputs.TerminateWorkflow(
                reason=why, operator=command.operator, reset_run_id=new_run_id
            )
            if old.parked is None:
                out += self._apply(old, [stop], now, None, correlation)
            if old.is_open:  # parked (before, or by its replay just now): no code runs
                out += self._terminate_parked(old, stop, now)
        new = Execution(
            old.workflow_id,
            new_run_id,
            old.workflow_type,
            old.task_queue,
            plan.prefix[0].time,
            parent=old.parent,
            start_request_id=old.start_request_id,
            start_run_id=old.start_run_id,
            traceparent=old.traceparent,
            workflow_version=definition.version,
        )
        self.executions.add(new)
        self.stats.run_started(new.workflow_type)
        self._trace_run = new.traceparent
        for e in plan.prefix:
            out.append(self._event(new, e, self.wire.encode_event(new.workflow_id, new_run_id, e)))
        new.executor = executor
        out += self._apply(new, plan.signals, now, None, correlation)
        if new.snapshot is None:  # nothing new decided: the new run is current all the same
            out.append(self._snapshot(new, new.executor))
        if new.executor is executor and new.is_open:
            # attempts running at the reset point run again for the new run, with their
            # idempotency keys (the old run's results are refused: they name the old run)
            for task in executor.running_activities():
                if task.activity_seq in plan.scheduled:
                    out += self._command(new, task)
            self.timers.replace_run(new.workflow_id, new_run_id, executor.pending_timers())
        return [*out, self._reply(reset_reply(command, correlation, new_run_id, None))]

    # --- an operator's repair of a failed compensation ------------------------------

    def _repair(
        self, execution: Execution, command: rec.RepairWorkflow, ce_id: str, now: int
    ) -> list[OutRecord]:
        """Reopen a COMPENSATION_FAILED run: its code (replayed if evicted) goes on
        compensating. Refused for any other status, or a skip that names no failed
        compensation (the executor says so: nothing is written)."""
        message = None
        if execution.status is not EngineStatus.COMPENSATION_FAILED:
            message = (
                f"only a COMPENSATION_FAILED run can be repaired; workflow "
                f"{execution.workflow_id!r} is {execution.status.name}"
            )
        else:
            executor = self._executor(execution)
            failed = executor.failed_compensations() if executor is not None else []
            if command.skip is not None and command.skip not in failed:
                message = f"{command.skip!r} is not a failed compensation of this run; " \
                    f"failed: {failed}"
        if message is not None:
            # refused here, not by the executor: applying anything to a closed run
            # would close it again (a second RESULT reply, report and retention entry)
            failure = Failure(message=message, type="CommandRejected", non_retryable=True)
            return self._refuse(refusal(command, ce_id, execution.run_id, failure))
        out = self._apply(execution, [to_input(command)], now, command, ce_id)
        if execution.is_open:
            # open again: a restore recovers it like any open run (its closing
            # undid this), and its retention waits for its next close
            self.view.put(b"k" + execution.workflow_id.encode(), b"")
        return out

    def _terminate_parked(
        self, execution: Execution, stop: inputs.TerminateWorkflow, now: int
    ) -> list[OutRecord]:
        """End a run its code cannot replay: the terminate event is appended without an
        executor, as terminating runs no code anyway."""
        events = self.executions.events(execution)
        event = ev.WorkflowTerminated(
            seq=events[-1].seq + 1 if events else 1,
            time=max(now, events[-1].time if events else now),
            reason=stop.reason,
            operator=stop.operator,
            reset_run_id=stop.reset_run_id,
        )
        encoded = self.wire.encode_event(execution.workflow_id, execution.run_id, event)
        out = [self._event(execution, event, encoded)]
        execution.status = EngineStatus.TERMINATED
        execution.parked = None
        self.stats.run_unparked(execution.workflow_id)
        out.append(self._snapshot(execution, None))
        for child_stop in parent_close_stops([*events, event], EngineStatus.TERMINATED.value):
            out += self._command(execution, child_stop)
        return out + self._closed(execution)

    # --- continue-as-new ----------------------------------------------------------

    def _run_chain(self, execution: Execution, now: int) -> list[OutRecord]:
        """Start the next run of ``execution``, and the next of that one while runs
        continue as new at once; past ``_MAX_CHAINED_RUNS`` the chain goes on in the
        next cycle (a crash meanwhile is resumed by restore)."""
        out: list[OutRecord] = []
        current: Execution | None = execution
        self._chaining = True
        try:
            for _ in range(_MAX_CHAINED_RUNS):
                if current is None or current.next_run is None:
                    return out
                current, started = self._start_next(current, now)
                out += started
        finally:
            self._chaining = False
        if current is not None and current.next_run is not None:
            self._continue_due.append(current)
        return out

    def _start_next(
        self, previous: Execution, now: int
    ) -> tuple[Execution | None, list[OutRecord]]:
        """Start the run ``previous`` continued as; the new run, or None if it cannot."""
        start = previous.next_run
        assert start is not None
        if start.workflow_type not in self.workflows:
            reason = f"its next run's workflow type {start.workflow_type!r} is unknown here"
            return None, [self._park_closed(previous, reason)]
        definition = self.workflows.get_version(start.workflow_type, start.workflow_version)
        if definition is None:  # the author asked for a version this worker lacks
            reason = "its next run is " + missing_version(
                self.workflows, start.workflow_type, start.workflow_version
            )
            return None, [self._park_closed(previous, reason)]
        previous.next_run = None
        self.executions.release_events(previous)  # on disk until retention
        execution = Execution(
            start.workflow_id,
            start.run_id,
            start.workflow_type,
            start.task_queue,
            now,
            parent=previous.parent,
            start_request_id=previous.start_request_id,
            start_run_id=previous.start_run_id,
            traceparent=previous.traceparent,
            workflow_version=definition.version,
        )
        self.executions.add(execution)
        self.stats.run_started(execution.workflow_type)
        self.stats.continued += 1
        return execution, self._apply(execution, [start], now, None, "")

    def _park_closed(self, execution: Execution, reason: str) -> OutRecord:
        """Park a closed run whose next run cannot start: visible in its snapshot, and
        retried by the next restore (say, after a deploy that has the workflow type)."""
        if execution.parked is None:
            self.stats.run_parked(execution.workflow_id)
            log.error(
                "workflow %s run %s parked: %s", execution.workflow_id, execution.run_id, reason
            )
        execution.parked = reason
        assert execution.snapshot is not None  # written when the run closed, or restored
        execution.snapshot = dataclasses.replace(execution.snapshot, parked=reason)
        self.view.put(b"k" + execution.workflow_id.encode(), b"")  # retried by a restore
        encoded = self.wire.encode_snapshot(execution.snapshot)
        encoded = with_trace(encoded, execution.traceparent)
        self.executions.record_snapshot(execution, encoded)
        return self._out(self.layout.history, encoded, self.partition)

    def _command(self, execution: Execution, command: cmd.Command) -> list[OutRecord]:
        child_stops: list[OutRecord] = []  # the one case that falls through to the end
        match command:
            case cmd.ScheduleActivityTask():
                task = rec.ActivityTask(
                    workflow_id=command.workflow_id,
                    run_id=command.run_id,
                    activity_seq=command.activity_seq,
                    activity_type=command.activity_type,
                    attempt=command.attempt,
                    task_queue=command.task_queue,
                    scheduled_time=command.attempt_started_at,
                    args=list(command.args),
                    start_to_close_timeout_ms=command.start_to_close_ms,
                    heartbeat_timeout_ms=command.heartbeat_timeout_ms,
                    heartbeat_details=list(command.heartbeat_details),
                    idempotency_key=command.idempotency_key,
                    priority=command.priority,
                    fairness_key=command.fairness_key,
                    token_signature=self._sign(command),
                )
                if command.local and self._local and self._local.handles(command.activity_type):
                    self._local_due.append((task, self._trace_run))  # run by fire_due, this cycle
                    return []
                return [self._task_record(task)]
            case cmd.StartTimer():
                self._set_timer(execution, command)
            case cmd.CancelTimer():
                self.timers.cancel(execution.workflow_id, execution.run_id, command.timer_id)
            case cmd.RespondUpdate():
                return [
                    self._reply(
                        rec.Reply(
                            correlation_id=command.update_id,
                            kind=rec.ReplyKind.UPDATE,
                            workflow_id=execution.workflow_id,
                            run_id=execution.run_id,
                            ok=command.failure is None,
                            result=command.result,
                            error=command.failure,
                        )
                    )
                ]
            case cmd.CancelActivityTask():
                return self._cancel_record(execution, command)
            case cmd.StartChildWorkflow():
                # to the child's own shard; exactly once, with the event that asked for it
                self.stats.children_started += 1
                start = children.child_start(command)
                ce_id = children.child_start_id(
                    execution.workflow_id, execution.run_id, command.child_seq
                )
                partition = shard_for(start.workflow_id, self.layout.shards)
                encoded = self.wire.encode_command(start, ce_id=ce_id)
                return [self._out(self.layout.commands, encoded, partition)]
            case cmd.ContinueAsNewRun():
                execution.next_run = command.start  # started by _apply once this run closed
            case cmd.StopChildWorkflow():
                child_stops.append(self._stop_child(execution, command))
        return child_stops

    def _cancel_record(
        self, execution: Execution, command: cmd.CancelActivityTask
    ) -> list[OutRecord]:
        """The record that stops a dispatched attempt at its worker, written in the
        transaction that records ActivityCancelRequested (the attempt's late outcome
        is ignored either way). None for an attempt no worker has: one waiting for a
        retry, or a local activity this engine worker runs (not interrupted yet)."""
        if not command.dispatched or not command.task_queue:
            return []
        if command.local and self._local and self._local.handles(command.activity_type):
            return []
        cancel = rec.ActivityCancel(
            workflow_id=execution.workflow_id,
            run_id=execution.run_id,
            activity_seq=command.activity_seq,
            attempt=command.attempt,
            task_queue=command.task_queue,
            activity_type=command.activity_type,
            requested_time=int(time.time() * 1000),
        )
        self.stats.activity_cancels += 1
        return [self._out(self.layout.activity_cancels, self.wire.encode_cancel(cancel), 0)]

    def _query(self, execution: Execution, query: rec.QueryWorkflow) -> list[OutRecord]:
        error: Failure | None = None
        result: Payload | None = None
        # a closed run keeps no history in memory (readers of the log have it)
        executor = self._executor(execution) if execution.is_open else None
        if not execution.is_open:
            error = Failure(
                message=f"workflow {execution.workflow_id!r} is {execution.status.name}; "
                "queries are answered by open runs (`saga history` shows a closed one)",
                type="WorkflowClosed",
            )
        elif executor is None:
            error = Failure(message=execution.parked or "cannot be replayed", type="WorkflowParked")
        else:
            try:
                result = executor.query(query.query_name, list(query.args))
            except Exception as exc:  # noqa: BLE001 - a failing query handler only fails the query
                error = Failure(message=str(exc), type=type(exc).__name__)
        reply = rec.Reply(
            correlation_id=query.query_id,
            kind=rec.ReplyKind.QUERY,
            workflow_id=execution.workflow_id,
            run_id=execution.run_id,
            ok=error is None,
            result=result,
            error=error,
        )
        return [self._reply(reply)]

    # --- output records -------------------------------------------------------------

    def _out(self, topic: str, encoded: EncodedRecord, partition: int | None = None) -> OutRecord:
        """An output record, carrying the trace context: a reply that of the command it
        answers, any other record that of the run deciding (history records carry their
        own run's already: :func:`with_trace`)."""
        headers: list[tuple[str, bytes | None]] = list(encoded.headers)
        if topic == self.layout.replies:
            trace = self._trace_command or self._trace_run
        else:
            trace = self._trace_run or self._trace_command
        if trace is not None and trace_of(headers) is None:
            headers.append(("traceparent", trace.encode()))
        return OutRecord(topic, encoded.key, encoded.value, partition, headers)

    def _event(self, execution: Execution, event: Event, encoded: EncodedRecord) -> OutRecord:
        encoded = with_trace(encoded, execution.traceparent)
        self.executions.record_event(execution, encoded, event)
        return self._out(self.layout.history, encoded, self.partition)

    def _task_record(self, task: rec.ActivityTask) -> OutRecord:
        return self._out(self._task_topic(task.task_queue), self.wire.encode_task(task))

    def _sign(self, task: cmd.ScheduleActivityTask) -> str:
        if self._token_key is None:
            return ""
        return attempt_signature(
            self._token_key, task.workflow_id, task.run_id, task.activity_seq, task.attempt
        )

    def _reply(self, reply: rec.Reply) -> OutRecord:
        return self._out(self.layout.replies, self.wire.encode_reply(reply))

    def _snapshot(self, execution: Execution, executor: WorkflowExecutor | None) -> OutRecord:
        result, failure = self._outcome(execution)
        previous = execution.snapshot
        attributes = (
            executor.search_attributes
            if executor is not None
            else previous.search_attributes
            if previous is not None
            else {}
        )
        memo = executor.memo if executor is not None else previous.memo if previous else {}
        events = self.executions.events(execution)
        priority, fairness_key = _flow_keys(events, previous)
        snapshot = rec.WorkflowSnapshot(
            workflow_id=execution.workflow_id,
            run_id=execution.run_id,
            workflow_type=execution.workflow_type,
            task_queue=execution.task_queue,
            status=execution.status,
            start_time=execution.start_time,
            last_seq=events[-1].seq if events else 0,
            close_time=events[-1].time if not execution.is_open and events else None,
            result=result,
            failure=failure,
            search_attributes=dict(attributes),
            memo=dict(memo),
            parked=execution.parked,
            parent=execution.parent,
            start_request_id=execution.start_request_id,
            start_run_id=execution.start_run_id,
            paused=pause_state(executor)
            if executor is not None
            else previous.paused
            if previous is not None
            else None,
            repairs=repair_notes(events),
            workflow_version=pinned_version(events) or execution.workflow_version or 1,
            priority=priority,
            fairness_key=fairness_key,
        )
        execution.snapshot = snapshot
        encoded = self.wire.encode_snapshot(snapshot)
        encoded = with_trace(encoded, execution.traceparent)
        previous_run = None if previous is None else previous.run_id
        self.executions.record_snapshot(execution, encoded, previous_run)
        return self._out(self.layout.history, encoded, self.partition)

    def _outcome(self, execution: Execution) -> tuple[Payload | None, Failure | None]:
        """Result of a completed run; why any other closed run did not complete."""
        events = self.executions.events(execution)
        if execution.is_open or not events:
            return None, None
        last = events[-1]
        if execution.status is EngineStatus.COMPLETED:
            return getattr(last, "result", None), None
        if execution.status is EngineStatus.CONTINUED_AS_NEW:
            return None, None
        return None, closing_failure(last)

    def _closed(self, execution: Execution) -> list[OutRecord]:
        self.executions.drop_executor(execution)
        parked = b"k" + execution.workflow_id.encode()
        if self.view.get(parked) is not None:  # rare: a point read, not a tombstone per close
            self.view.delete(parked)
        result, failure = self._outcome(execution)
        events = self.executions.events(execution)
        timer_ids = _only_workflow_timers(events)
        if timer_ids is None:
            self.timers.clear_run(execution.workflow_id, execution.run_id)
        else:
            self.timers.clear_timers(execution.workflow_id, execution.run_id, timer_ids)
        if any(isinstance(e, ev.ActivityScheduled) for e in events):
            # only an activity heartbeats: a run that scheduled none has nothing to clear
            self.heartbeats.clear_run(execution.workflow_id, execution.run_id)
        self.stats.run_closed(execution.workflow_type, execution.status, events)
        last = events[-1] if events else None
        self.retention.closed(
            last.time if last else execution.start_time,
            execution.workflow_id,
            execution.run_id,
            last.seq if last else 0,
        )
        if execution.status is EngineStatus.CONTINUED_AS_NEW:
            # not the end of the workflow: the next run replies (and reports); the
            # events stay until it starts (its start reads the last one after a restore)
            return []
        if isinstance(last, ev.WorkflowTerminated) and last.reset_run_id:
            # ended by a reset: the run that replaces it replies (and reports) at its end
            self.executions.release_events(execution)
            return []
        self.executions.release_events(execution)  # on disk until retention
        out: list[OutRecord] = []
        if execution.parent is not None and last is not None:
            report = children.closed_report(
                execution.parent, execution.workflow_id, execution.run_id, last
            )
            out.append(self._report(report))
        return [
            *out,
            self._reply(
                rec.Reply(
                    correlation_id=result_correlation_id(execution.workflow_id),
                    kind=rec.ReplyKind.RESULT,
                    workflow_id=execution.workflow_id,
                    run_id=execution.run_id,
                    ok=execution.status is EngineStatus.COMPLETED,
                    result=result,
                    error=failure,
                )
            ),
        ]

    def _reply_closed(
        self, command: rec.Command, ce_id: str, execution: Execution
    ) -> list[OutRecord]:
        message = f"workflow {execution.workflow_id!r} is {execution.status.name}"
        failure = Failure(message=message, type="WorkflowClosed")
        return self._refuse(refusal(command, ce_id, execution.run_id, failure))

    def _no_such_run(self, command: rec.Command, ce_id: str) -> list[OutRecord]:
        message = f"no such workflow run: {command.workflow_id!r}"
        failure = Failure(message=message, type="WorkflowNotFound")
        return self._refuse(refusal(command, ce_id, None, failure))

    def _refuse(self, reply: rec.Reply | None) -> list[OutRecord]:
        return [] if reply is None else [self._reply(reply)]


#: events after which a run can hold no timer but its code's own (``timer/<n>``, each
#: named by a TimerStarted): no activity, child, pause or execution timeout timers
_TIMER_ONLY = (
    ev.WorkflowStarted,
    ev.TimerStarted,
    ev.TimerFired,
    ev.TimerCancelled,
    ev.WorkflowCompleted,
    ev.WorkflowFailed,
)


def _only_workflow_timers(events: Sequence[Event]) -> list[str] | None:
    """The ids of the timers a run whose history holds only workflow timers started,
    or None when the run may hold other timers too (its index entries are scanned)."""
    timer_ids: list[str] = []
    for event in events:
        if type(event) not in _TIMER_ONLY:
            return None
        if isinstance(event, ev.TimerStarted):
            timer_ids.append(event.timer_id)
        elif isinstance(event, ev.WorkflowStarted) and event.execution_deadline is not None:
            return None
    return timer_ids


def _beats_running(execution: Execution, beat: rec.ActivityHeartbeat) -> bool:
    """Whether ``beat`` is for the attempt that runs: a late heartbeat of an older
    attempt (or one sent with a stale task token) must not replace the running
    attempt's in the store, where a replay would look for it."""
    executor = execution.executor
    return executor is not None and executor.activities.attempt_running(
        beat.activity_seq, beat.attempt
    )


def _flow_keys(
    events: Sequence[ev.Event], previous: rec.WorkflowSnapshot | None
) -> tuple[int, str]:
    """The run's priority and fairness key for its snapshot: from its WorkflowStarted,
    else (events not read) from its previous snapshot."""
    first = events[0] if events else None
    if isinstance(first, ev.WorkflowStarted):
        return first.priority, first.fairness_key
    if previous is not None:
        return previous.priority, previous.fairness_key
    return 0, ""
