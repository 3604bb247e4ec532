"""Run the engine (shard processor + engine shards) for a set of workflow definitions."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.background import BackgroundRunner
from orchestrator.batch.spec import BATCH_WORKFLOW
from orchestrator.batch.workflow import BatchWorkflow
from orchestrator.config import DEFAULT_RETENTION_MS
from orchestrator.converter import DataConverter
from orchestrator.engine.registry import WorkflowRegistry, registry_of
from orchestrator.flow.configs import FlowConfigWatcher
from orchestrator.log.topics import TopicLayout
from orchestrator.metrics import EngineMetrics
from orchestrator.operations.handler import OperationHandlerWorkflow
from orchestrator.operations.records import HANDLER_WORKFLOW
from orchestrator.schedules.workflow import SCHEDULE_WORKFLOW, ScheduleWorkflow
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.activity_pauses import PauseFollower
from orchestrator.worker.activity_runner import activity_definitions
from orchestrator.worker.schedule_stops import RunStopper
from orchestrator.worker.shard.engine_shard import EngineShard, ShardTuning
from orchestrator.worker.shard.gauges import EngineShardGauges
from orchestrator.worker.shard.local_activities import DEFAULT_MAX_ATTEMPT_S, LocalActivities
from orchestrator.worker.shard.processor import MetricsExporter, ProcessorOptions, ShardProcessor
from orchestrator.worker.shard.store import ShardStore, StoreMemory, StoreOptions
from orchestrator.worker.task_handoff import TaskHandoff
from orchestrator.workflow import WorkflowDefinition

log = logging.getLogger(__name__)


def definitions(
    workflows: Iterable[Callable[..., Any] | type[Any] | WorkflowDefinition] | WorkflowRegistry,
) -> WorkflowRegistry:
    """The workflow definitions by type name and version; the same name and version
    twice is a DefinitionError (several versions of one type are held side by side)."""
    return registry_of(workflows)


class EngineWorker(BackgroundRunner):
    """The engine worker in a background thread; a context manager stops it cleanly."""

    thread_name = "engine-worker"

    def __init__(
        self,
        kafka_config: dict[str, Any],
        layout: TopicLayout,
        workflows: Iterable[Callable[..., Any] | type[Any] | WorkflowDefinition]
        | WorkflowRegistry,
        *,
        build_id: str = "",
        retention_ms: int = DEFAULT_RETENTION_MS,
        options: ProcessorOptions | None = None,
        wire: WireFormat | None = None,
        converter: DataConverter | None = None,
        activities: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]] = (),
        local_max_attempt_s: float = DEFAULT_MAX_ATTEMPT_S,
        state_dir: Path | None = None,
        store: StoreOptions | None = None,
        tuning: ShardTuning | None = None,
        metrics: EngineMetrics | None = None,
        flow_control: bool = False,
        task_token_key: bytes | None = None,
        handoff: TaskHandoff | None = None,
    ) -> None:
        """``activities``: those this process may run itself when a workflow calls
        ``ctx.execute_local_activity``; local calls to any other go to the task queue.

        ``state_dir``: where the shard stores live (a restart on the same folder reads
        only the history written since); None: a temporary folder removed on stop.
        ``store`` sets the folder and RocksDB's memory at once.

        ``metrics``: the process's engine metrics to update (``SagaMetrics().engine``);
        None exports nothing.

        ``flow_control``: follow ``<prefix>.flow-control`` and write the tasks of a
        flow-controlled queue to its backlog (docs/flow-control.md); off, every task
        goes to its queue's topic.

        ``task_token_key``: sign every dispatched attempt (its task token then names
        that attempt only) and refuse outcomes whose signature does not match
        (docs/concepts.md, "Completing an activity later"); every engine worker of a
        deployment needs the same key. None: unsigned tokens, as before.

        ``handoff``: activity workers of this process that joined it may be handed the
        tasks of their queue without the queue (orchestrator/worker/task_handoff.py)."""
        super().__init__()
        self._temporary: Path | None = None
        if store is None:
            if state_dir is None:
                state_dir = self._temporary = Path(tempfile.mkdtemp(prefix="saga-state-"))
            store = StoreOptions(state_dir)
        self.store_memory = StoreMemory(store)
        self.workflows = definitions(workflows)
        # every engine worker hosts schedules (docs/schedules.md): the built-in
        # workflow, and the local activity its overlap policies stop firings with
        if SCHEDULE_WORKFLOW not in self.workflows:
            self.workflows.add(ScheduleWorkflow)
        # and batch jobs (docs/batch.md); their activities run on the saga.batch queue
        if BATCH_WORKFLOW not in self.workflows:
            self.workflows.add(BatchWorkflow)
        # and operations this deployment handles (docs/operations-api.md); their
        # callback activity runs on the handled workflow's task queue
        if HANDLER_WORKFLOW not in self.workflows:
            self.workflows.add(OperationHandlerWorkflow)
        self.stopper = RunStopper(kafka_config, layout)
        registered = activity_definitions(activities)
        registered.update(activity_definitions(self.stopper.activities()))
        self.local_activities = LocalActivities(
            registered, converter, max_attempt_s=local_max_attempt_s
        )
        self.wire = wire or WireFormat()
        self.shards: dict[int, EngineShard] = {}
        self.flow: FlowConfigWatcher | None = None
        if flow_control:
            self.flow = FlowConfigWatcher(kafka_config, layout)
        task_topic = self.flow.topic_for if self.flow is not None else None
        # attempts held by an activity-type pause must not time out (activity_pauses.py)
        self.pauses = PauseFollower(kafka_config, layout)

        def factory(partition: int) -> EngineShard:
            shard = EngineShard(
                partition,
                layout,
                self.workflows,
                self.wire,
                ShardStore.open(self.store_memory, layout.history, partition),
                build_id=build_id,
                tuning=tuning,
                retention_ms=retention_ms,
                converter=converter,
                local_activities=self.local_activities,
                task_topic=task_topic,
                paused_types=self.pauses.table,
                task_token_key=task_token_key,
            )
            shard.stats.metrics = metrics
            self.shards[partition] = shard
            return shard

        exporter = MetricsExporter(metrics, EngineShardGauges()) if metrics is not None else None
        self.processor = ShardProcessor(
            kafka_config, layout, factory, options, exporter=exporter, handoff=handoff
        )

    def run(self, stop: threading.Event) -> None:
        try:
            self.pauses.start()  # before any shard: its timers must know the pauses
            self.processor.run(stop)
        finally:
            self.local_activities.close()
            self.stopper.close()
            self.pauses.close()
            if self.flow is not None:
                self.flow.close()
            if self._temporary is not None:
                shutil.rmtree(self._temporary, ignore_errors=True)
