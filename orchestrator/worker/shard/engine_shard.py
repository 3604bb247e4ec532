"""The engine's shard handler: commands in, replayed workflow decisions out.

One instance per owned shard, over the shard's local store (RocksDB, see
:mod:`~orchestrator.worker.shard.store`): the execution index, every run's events until
retention, the timer and retention indexes live on disk; memory holds a bounded cache of
executions in use with their live executors
(:mod:`~orchestrator.worker.shard.executions`). A run that only waits (a long sleep, a
signal) is dropped from memory once its decision is committed and replayed from the
store when something happens to it. Everything it returns is written by the processor in
one transaction; the store follows once that transaction committed.

This module routes commands, fires timers, runs local activities, and drives runs
(replay, apply, parking). The rest is in the shard's parts, each with one job:
:mod:`~orchestrator.worker.shard.starts` (start commands),
:mod:`~orchestrator.worker.shard.decision_records` (what a decision's commands become),
:mod:`~orchestrator.worker.shard.output` (records, trace context, snapshots),
:mod:`~orchestrator.worker.shard.closing` (what a run's close does),
:mod:`~orchestrator.worker.shard.chains` (continue-as-new),
:mod:`~orchestrator.worker.shard.operator_commands` (reset, repair),
:mod:`~orchestrator.worker.shard.recovery` (runs after a restore),
:mod:`~orchestrator.worker.shard.replies` (replies and their correlation ids).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator import tracing
from orchestrator.config import DEFAULT_CACHE_SIZE, DEFAULT_RETENTION_MS
from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.engine import guards, inputs
from orchestrator.engine.activities import PausedTypes
from orchestrator.engine.events import Event, Failure
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.registry import missing_version, pinned_version, registry_of
from orchestrator.exceptions import NonDeterminismError
from orchestrator.log.topics import TopicLayout
from orchestrator.serde import records as rec
from orchestrator.serde.errors import RecordDecodeError, RecordEncodeError
from orchestrator.serde.history_page import BUILTIN_READS, PendingActivity
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.shard import children, ingest
from orchestrator.worker.shard import store as keys
from orchestrator.worker.shard.chains import Chains
from orchestrator.worker.shard.closing import RunCloser
from orchestrator.worker.shard.decision_records import DecisionRecords
from orchestrator.worker.shard.dlq import dead_letter
from orchestrator.worker.shard.due import DueTimer, TimerIndex
from orchestrator.worker.shard.executions import Execution, ExecutionTable, Sealed
from orchestrator.worker.shard.heartbeats import HeartbeatStore
from orchestrator.worker.shard.local_activities import LocalActivities
from orchestrator.worker.shard.operator_commands import OperatorCommands
from orchestrator.worker.shard.outcome_replies import (
    TokenOutcome,
    asks_reply,
    judged_reply,
    signature_problem,
)
from orchestrator.worker.shard.output import ShardOutput
from orchestrator.worker.shard.pending import pending_activities
from orchestrator.worker.shard.reads import StoreReads
from orchestrator.worker.shard.records import HistoryEntry, InRecord, OutRecord
from orchestrator.worker.shard.recovery import Recovery
from orchestrator.worker.shard.replies import (
    ACKNOWLEDGED,
    acknowledgement,
    query_reply,
    refusal,
    result_correlation_id,
)
from orchestrator.worker.shard.retention import Retention
from orchestrator.worker.shard.standby import StandbyWarmer
from orchestrator.worker.shard.starts import Starts
from orchestrator.worker.shard.stats import ShardStats
from orchestrator.worker.shard.store import ShardStore
from orchestrator.worker.shard.translate import pause_state, to_input
from orchestrator.worker.shard.view import StoreView
from orchestrator.workflow import WorkflowDefinition

__all__ = ["EngineShard", "Execution", "ShardStats", "ShardTuning", "result_correlation_id"]

log = logging.getLogger(__name__)

#: local-activity rounds one input may lead to; later attempts go through the task queue
_MAX_LOCAL_ROUNDS = 1000


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
        self._local = local_activities
        self._open_indexes()
        self._outbox: list[OutRecord] = []  # records produced on the side (parked snapshots)
        self._restored_at = 0  # when the latest restore finished (epoch ms)

    def _open_indexes(self) -> None:
        """The store's indexes, and the shard's parts over them."""
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
        self._open_parts()

    def _open_parts(self) -> None:
        """The shard's parts (:mod:`orchestrator.worker.shard`), over its indexes."""
        #: the records it writes; holds the trace contexts of the command being handled
        #: and of the run deciding (W3C traceparent), for the records they lead to
        output = self.output = ShardOutput(
            layout=self.layout, partition=self.partition, wire=self.wire,
            executions=self.executions, stats=self.stats, task_topic=self._task_topic,
        )
        executions, stats, view, workflows = self.executions, self.stats, self.view, self.workflows
        self.decisions = DecisionRecords(
            output=output, layout=self.layout, wire=self.wire, timers=self.timers, stats=stats,
            local=self._local, token_key=self._token_key,
        )
        self.closer = RunCloser(
            view=view, executions=executions, timers=self.timers, heartbeats=self.heartbeats,
            retention=self.retention, stats=stats, output=output,
        )
        self.chains = Chains(
            workflows=workflows, executions=executions, view=view, stats=stats, output=output,
            apply=self._apply,
        )
        self.starts = Starts(
            workflows=workflows, executions=executions, layout=self.layout, stats=stats,
            output=output, apply=self._apply,
        )
        self.operator = OperatorCommands(
            workflows=workflows, executions=executions, view=view, wire=self.wire,
            timers=self.timers, stats=stats, output=output, decisions=self.decisions,
            closer=self.closer, replay=self._replay, executor_of=self._executor,
            apply=self._apply,
        )
        self.recovery = Recovery(
            partition=self.partition, view=view, executions=executions, timers=self.timers,
            workflows=workflows, stats=stats, output=output, executor_of=self._executor,
            run_chain=self.chains.run, idle_evict_ms=self.tuning.idle_evict_ms,
        )

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
        self.recovery.begin()
        self._restored_at = now_ms
        return self._take_outbox()

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
            self.output.trace_command = self.output.trace_run = None
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
        self.output.trace_command = decoded.cloud_event.traceparent
        if isinstance(command, rec.QueryWorkflow) and command.query_name in BUILTIN_READS:
            return [self.output.reply(self.reads.answer(command))]
        if isinstance(command, rec.StartWorkflow):
            return self.starts.start(command, ce_id, msg, now_ms)
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
            return self.operator.reset(execution, command, ce_id, msg, now_ms)
        if execution.parked is not None:
            self.stats.dead_lettered += 1
            return [dead_letter(self.layout.dlq, msg, f"workflow is parked: {execution.parked}")]
        if isinstance(command, rec.QueryWorkflow):
            # a closed run keeps no history in memory (readers of the log have it)
            executor = self._executor(execution) if execution.is_open else None
            return [self.output.reply(query_reply(execution, executor, command))]
        if isinstance(command, rec.RepairWorkflow):
            return self.operator.repair(execution, command, ce_id, now_ms)
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
        return out if answer is None else [*out, self.output.reply(answer)]

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

    # --- timers, local activities ---------------------------------------------------

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
        if self.recovery.pending or self.chains.due or self.decisions.local_due:
            return 0
        due = [d for d in (self.timers.next_due(), self.retention.next_due()) if d is not None]
        return min(due) if due else None

    def fire_due(self, now_ms: int, until: float) -> list[OutRecord]:
        """Go on with long continue-as-new chains and run the local activity attempts
        decided in this cycle; then, until ``until`` (monotonic) and within this
        shard's own budgets, fire due timers, tombstone expired runs and recover runs
        after a restore."""
        self.output.trace_command = self.output.trace_run = None
        if self._idle_at(now_ms):
            return []  # every cycle asks every shard: most have nothing to do
        out: list[OutRecord] = []
        if self.chains.due:
            out += self.chains.resume(now_ms)
        if time.monotonic() < until:
            until = min(until, time.monotonic() + self.tuning.timer_budget_ms / 1000)
            out += self.retention.expire(now_ms, self.tuning.timers_per_cycle)
            due = self.timers.next_due()
            recovery = self.recovery
            if recovery.pending or (due is not None and due <= now_ms):
                with guards.installed():  # for the replays and firings that follow
                    out += self._fire_timers(now_ms, until)
                    out += recovery.some(self.tuning.recoveries_per_cycle, now_ms, until)
        out += self._run_local(now_ms)
        return self._take_outbox() + out

    def _idle_at(self, now_ms: int) -> bool:
        """Nothing for :meth:`fire_due` to do at ``now_ms`` (the indexes' fronts are cached)."""
        if self.recovery.pending or self.chains.due or self.decisions.local_due or self._outbox:
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
        if self.recovery.pending:
            self.timers.discard(due)  # the replay, if any, registered it again
        fire = [inputs.FireTimer(timer_id=due.timer_id)]
        return self._apply(execution, fire, now_ms, None, "", park_unwritable=True)

    def _run_local(self, now_ms: int) -> list[OutRecord]:
        """Run due local attempts (all at once), apply their outcomes; repeat while the
        code asks for more, so a run of local steps commits in one transaction."""
        decisions = self.decisions
        if not decisions.local_due or self._local is None:
            return []  # every cycle of every shard passes here: nothing to do, no work
        out: list[OutRecord] = []
        for _ in range(_MAX_LOCAL_ROUNDS):
            due, decisions.local_due = decisions.local_due, []
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
        out += [self.output.task(task) for task, _ in decisions.local_due]
        decisions.local_due = []
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
            if self.recovery.pending:
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
        self._outbox.append(self.output.snapshot(execution, None))

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
        trace_command = self.output.trace_command if command is not None else None
        parent = cause or trace_command or execution.traceparent
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
        output = self.output
        output.trace_run = (hop and hop.traceparent) or execution.traceparent
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
            output.event(execution, e, enc) for e, enc in zip(decision.events, encoded, strict=True)
        ]
        if hop is not None and decision.events:
            hop.set("saga.events", f"{decision.events[0].seq}-{decision.events[-1].seq}")
        for command_out in decision.commands:
            out += self.decisions.of(execution, command_out)
        if any(isinstance(e, ev.WorkflowUnpaused) for e in decision.events):
            # a timer re-armed while paused (a heartbeat timeout) fired into the pause
            # once and was held; from the unpause on, the run's timers are its code's
            pending = executor.pending_timers()
            self.timers.replace_run(execution.workflow_id, execution.run_id, pending)
        if isinstance(command, ACKNOWLEDGED):
            answer = acknowledgement(command, correlation, execution, decision.rejected)
            out.append(output.reply(answer))
        previous = execution.status
        execution.status = decision.status
        if decision.events and (
            previous is not decision.status
            or execution.snapshot is None
            or not execution.is_open
            or pause_state(executor) != execution.snapshot.paused
        ):
            out.append(output.snapshot(execution, executor))
        if not execution.is_open:
            out += self.closer.closed(execution)
        if execution.next_run is not None and not self.chains.running:
            out += self.chains.run(execution, now)
        return out

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
        return [] if reply is None else [self.output.reply(reply)]


def _beats_running(execution: Execution, beat: rec.ActivityHeartbeat) -> bool:
    """Whether ``beat`` is for the attempt that runs: a late heartbeat of an older
    attempt (or one sent with a stale task token) must not replace the running
    attempt's in the store, where a replay would look for it."""
    executor = execution.executor
    return executor is not None and executor.activities.attempt_running(
        beat.activity_seq, beat.attempt
    )
