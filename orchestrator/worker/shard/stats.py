"""Per-shard counters, and the metrics they feed when a process exports metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator.engine.events import CompensationStarted, Event
from orchestrator.metrics import EngineMetrics
from orchestrator.status import WorkflowStatus

__all__ = ["ShardStats"]


@dataclass
class ShardStats:
    """Per-shard counters (read by metrics and tests).

    The engine reports runs through the methods below, which also update the process's
    :class:`~orchestrator.metrics.EngineMetrics` when :attr:`metrics` is set; with it
    unset they only count.
    """

    started: int = 0
    closed: int = 0
    parked: int = 0
    dead_lettered: int = 0
    replays: int = 0
    local_attempts: int = 0
    continued: int = 0
    children_started: int = 0
    child_reports: int = 0
    activity_cancels: int = 0
    """Cancels of running activity attempts written to ``<prefix>.activity-cancels``."""
    metrics: EngineMetrics | None = field(default=None, repr=False, compare=False)
    #: workflow ids of the runs parked now (a gauge; parked runs are few)
    parked_ids: set[str] = field(default_factory=set)

    def run_started(self, workflow_type: str) -> None:
        self.started += 1
        if self.metrics is not None:
            self.metrics.runs_started.labels(workflow_type).inc()

    def run_closed(
        self, workflow_type: str, status: WorkflowStatus, events: Sequence[Event]
    ) -> None:
        """A run closed with ``status``; ``events`` (its history) tell whether it compensated."""
        self.closed += 1
        if self.metrics is not None:
            compensated = any(isinstance(e, CompensationStarted) for e in events)
            self.metrics.run_closed(workflow_type, status, compensated)

    def run_parked(self, workflow_id: str) -> None:
        self.parked += 1
        self.parked_ids.add(workflow_id)

    def run_unparked(self, workflow_id: str) -> None:
        """A parked run is being replayed again (it may park anew)."""
        self.parked_ids.discard(workflow_id)
