"""Run the engine (shard processor + engine shards) for a set of workflow definitions."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from orchestrator.background import BackgroundRunner
from orchestrator.converter import DataConverter
from orchestrator.log.topics import TopicLayout
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.shard.engine_shard import DEFAULT_RETENTION_MS, EngineShard
from orchestrator.worker.shard.processor import ProcessorOptions, ShardProcessor
from orchestrator.workflow import WorkflowDefinition, definition_of

log = logging.getLogger(__name__)


def definitions(
    workflows: Iterable[Callable[..., Any] | type[Any] | WorkflowDefinition],
) -> dict[str, WorkflowDefinition]:
    """Map workflow type names to definitions; duplicates are an error."""
    found: dict[str, WorkflowDefinition] = {}
    for item in workflows:
        definition = item if isinstance(item, WorkflowDefinition) else definition_of(item)
        if definition.name in found:
            raise ValueError(f"workflow type {definition.name!r} is registered twice")
        found[definition.name] = definition
    return found


class EngineWorker(BackgroundRunner):
    """The engine worker in a background thread; a context manager stops it cleanly."""

    thread_name = "engine-worker"

    def __init__(
        self,
        kafka_config: dict[str, Any],
        layout: TopicLayout,
        workflows: Iterable[Callable[..., Any] | type[Any] | WorkflowDefinition],
        *,
        build_id: str = "",
        retention_ms: int = DEFAULT_RETENTION_MS,
        options: ProcessorOptions | None = None,
        wire: WireFormat | None = None,
        converter: DataConverter | None = None,
    ) -> None:
        super().__init__()
        self.workflows = definitions(workflows)
        self.wire = wire or WireFormat()
        self.shards: dict[int, EngineShard] = {}

        def factory(partition: int) -> EngineShard:
            shard = EngineShard(
                partition,
                layout,
                self.workflows,
                self.wire,
                build_id=build_id,
                retention_ms=retention_ms,
                converter=converter,
            )
            self.shards[partition] = shard
            return shard

        self.processor = ShardProcessor(kafka_config, layout, factory, options)

    def run(self, stop: threading.Event) -> None:
        self.processor.run(stop)
