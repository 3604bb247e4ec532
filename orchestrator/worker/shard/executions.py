"""A shard's executions: a bounded cache in memory over the shard store on disk.

The store holds every execution's latest snapshot and its runs' events until retention. Memory holds
the executions in use: those touched by a decision whose transaction has not yet been
applied to the store (pinned), and up to ``cache_size`` others, least recently used
first out. A cached execution keeps its live executor (the suspended workflow
coroutine); an evicted one is read back from the store and replayed when next needed.

Writes go through the shard's :class:`~orchestrator.worker.shard.view.StoreView`: the
records a decision writes join the open generation, :meth:`ExecutionTable.seal`
closes it when its transaction is handed to Kafka, and :meth:`ExecutionTable.applied`
writes it to the store (with the checkpoint) once that transaction committed. A
failed transaction drops the table: the store still says exactly what the log had
before it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.engine import inputs
from orchestrator.engine.events import Event
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.status import WorkflowStatus as EngineStatus
from orchestrator.serde import records as rec
from orchestrator.serde.wire import EncodedRecord, WireFormat
from orchestrator.worker.shard import store as keys
from orchestrator.worker.shard.view import Generation, StoreView

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class Execution:
    """What a shard knows of a workflow id: its latest run and, while open, its history."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    start_time: int
    status: EngineStatus = EngineStatus.RUNNING
    #: the run's events, or None while not read from the store
    events: list[Event] | None = field(default_factory=list)
    snapshot: rec.WorkflowSnapshot | None = None
    parked: str | None = None  # why the run cannot make progress (non-determinism)
    parent: rec.ParentExecution | None = None  # set for a child: whom to report to
    next_run: inputs.StartWorkflow | None = None  # continued as new, next run not started
    #: the request id of the start that began this run (or its continue-as-new chain),
    #: and the run it created: a repeat of that start is answered with it
    start_request_id: str | None = None
    start_run_id: str | None = None
    #: W3C trace context of the start (kept in the headers of the run's records), so
    #: every record of the run's life, and of its next runs and children, joins its trace
    traceparent: str | None = None
    executor: WorkflowExecutor | None = None  # live while cached
    #: the version of the type's definition the run is pinned to; None until known
    #: (read from its WorkflowStarted when replayed; a new run takes the newest)
    workflow_version: int | None = None
    generation: int = 0  # the latest generation that changed it

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal


def execution_of(snapshot: rec.WorkflowSnapshot, traceparent: str | None = None) -> Execution:
    """An execution as its snapshot describes it (events not read yet)."""
    return Execution(
        snapshot.workflow_id,
        snapshot.run_id,
        snapshot.workflow_type,
        snapshot.task_queue,
        snapshot.start_time,
        status=EngineStatus[snapshot.status.name],
        events=None,
        snapshot=snapshot,
        parked=snapshot.parked,
        parent=snapshot.parent,
        start_request_id=snapshot.start_request_id,
        start_run_id=snapshot.start_run_id,
        traceparent=traceparent,
        workflow_version=snapshot.workflow_version,
    )


def trace_of(headers: Sequence[tuple[str, bytes | None]]) -> str | None:
    """The ``traceparent`` header of a record, if it has one."""
    for name, value in headers:
        if name == "traceparent" and value:
            return value.decode("ascii", "replace")
    return None


def with_trace(encoded: EncodedRecord, traceparent: str | None) -> EncodedRecord:
    """``encoded`` with a ``traceparent`` header, unless it has one or there is none."""
    if traceparent is None or trace_of(encoded.headers) is not None:
        return encoded
    headers = [*encoded.headers, ("traceparent", traceparent.encode())]
    return EncodedRecord(encoded.key, encoded.value, headers)


@dataclass(frozen=True, slots=True)
class Sealed:
    """A generation of store writes, closed when its transaction went to Kafka, and
    the executions it changed."""

    generation: Generation
    touched: list[Execution]


#: what :meth:`ExecutionTable.seal` returns when nothing changed since the last seal
NOTHING = Sealed(Generation(0), [])


class ExecutionTable:
    """Executions of one shard by workflow id (see the module docstring)."""

    def __init__(self, view: StoreView, wire: WireFormat, cache_size: int) -> None:
        self._view = view
        self._wire = wire
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Execution] = OrderedDict()
        self._touched: dict[int, Execution] = {}
        #: the applied generation at which a scan last found nothing more to evict
        self._exhausted_at = -1

    # --- reads ----------------------------------------------------------------------

    def get(self, workflow_id: str) -> Execution | None:
        cached = self._cache.get(workflow_id)
        if cached is not None:
            self._cache.move_to_end(workflow_id)
            return cached
        raw = self._view.get(keys.snapshot_key(workflow_id))
        if raw is None:
            return None
        headers, value = keys.unframe(raw)
        snapshot = self._wire.decode_snapshot(headers, value).record
        execution = execution_of(snapshot, trace_of(headers))
        self._remember(execution)
        return execution

    def events(self, execution: Execution) -> list[Event]:
        """The execution's run's events, read from the store if not in memory."""
        if execution.events is None:
            prefix = b"e" + keys.run_prefix(execution.workflow_id, execution.run_id)
            # an execution no unapplied generation touched has all its events on disk
            clean = execution.generation <= self._view.applied
            found = self._view.store.scan(prefix) if clean else self._view.scan(prefix)
            execution.events = [
                self._wire.decode_event(*keys.unframe(value)).record.event for _, value in found
            ]
        return execution.events

    def __len__(self) -> int:
        return len(self._cache)

    # --- writes ---------------------------------------------------------------------

    def add(self, execution: Execution) -> None:
        """A new run of a workflow id (replacing any cached earlier run)."""
        previous = self._cache.pop(execution.workflow_id, None)
        if previous is not None and previous is not execution:
            self.drop_executor(previous)
        self._remember(execution)
        self.touch(execution)

    def touch(self, execution: Execution) -> None:
        """The execution changed in this generation: keep it until that is applied."""
        execution.generation = self._view.generation
        self._touched[id(execution)] = execution

    def record_event(self, execution: Execution, encoded: EncodedRecord, event: Event) -> None:
        self.events(execution).append(event)
        key = keys.event_key(execution.workflow_id, execution.run_id, event.seq)
        self._view.put(key, keys.frame(list(encoded.headers), encoded.value or b""))
        self.touch(execution)

    def record_snapshot(
        self, execution: Execution, encoded: EncodedRecord, previous_run: str | None = None
    ) -> None:
        """Write the run's new snapshot; ``previous_run``: the run id of the snapshot it
        replaces, whose write also named the run current (not written again then)."""
        workflow_id = execution.workflow_id
        self._view.put(
            keys.snapshot_key(workflow_id), keys.frame(list(encoded.headers), encoded.value or b"")
        )
        if previous_run != execution.run_id:
            self._view.put(keys.current_run_key(workflow_id), execution.run_id.encode())
        self.touch(execution)

    def release_events(self, execution: Execution) -> None:
        """A closed run's events leave memory; the store keeps them until retention
        (``saga history`` reads them there)."""
        execution.events = None

    def remove(self, workflow_id: str) -> None:
        """Retention ended: the workflow id is free again."""
        cached = self._cache.pop(workflow_id, None)
        if cached is not None:
            self.drop_executor(cached)
        self._view.delete(keys.snapshot_key(workflow_id))
        self._view.delete(keys.current_run_key(workflow_id))

    # --- executors ------------------------------------------------------------------

    def drop_executor(self, execution: Execution) -> None:
        if execution.executor is not None:
            execution.executor.evict()  # its history stays; replay rebuilds it when needed
            execution.executor = None

    def evict(self, execution: Execution) -> None:
        """Drop a clean execution from memory now (it sleeps: replay wakes it)."""
        if execution.generation > self._view.applied:
            return
        self.drop_executor(execution)
        if self._cache.get(execution.workflow_id) is execution:
            del self._cache[execution.workflow_id]

    def _remember(self, execution: Execution) -> None:
        self._cache[execution.workflow_id] = execution
        self._cache.move_to_end(execution.workflow_id)
        self._shrink()

    def _shrink(self) -> None:
        """Evict least recently used clean executions beyond the cache size.

        Looks only as far into the cache as it must: once a scan found nothing more to
        evict (the rest is pinned), it is not repeated until a generation is applied.
        Copying or scanning the whole cache for every new execution made a full cache
        cost O(cache size) per start or timer firing: 20 ms each on a loaded machine,
        and a 45 s engine cycle (the watchdog's exit) after a wake-up storm."""
        excess = len(self._cache) - self.cache_size
        applied = self._view.applied
        if excess <= 0 or self._exhausted_at == applied:
            return
        victims: list[Execution] = []
        for execution in self._cache.values():
            if execution.generation > applied:
                continue  # pinned: its writes are not in the store yet
            victims.append(execution)
            if len(victims) >= excess:
                break
        else:
            self._exhausted_at = applied
        for execution in victims:
            self.drop_executor(execution)
            del self._cache[execution.workflow_id]

    # --- generations ----------------------------------------------------------------

    def seal(self) -> Sealed:
        """Close the open generation (its transaction is being committed). One that
        changed nothing stays open: :data:`NOTHING` stands for it."""
        if not self._touched and self._view.unchanged:
            return NOTHING  # most shards, most cycles: no generation to open and apply
        sealed = Sealed(self._view.seal(), list(self._touched.values()))
        self._touched = {}
        return sealed

    def applied(self, sealed: Sealed, checkpoint: int | None) -> list[Execution]:
        """Write a committed generation to the store; returns the executions it touched."""
        if sealed is NOTHING:
            self._view.move_checkpoint(checkpoint)
            return []
        self._view.apply(sealed.generation, checkpoint)
        self._shrink()
        return sealed.touched

    def unapplied(self) -> list[Execution]:
        """Executions changed in generations not applied to the store yet."""
        return [e for e in self._cache.values() if e.generation > self._view.applied]

    def close(self) -> None:
        for execution in self._cache.values():
            self.drop_executor(execution)
        self._cache.clear()
