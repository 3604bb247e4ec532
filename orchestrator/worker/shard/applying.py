"""How the shard's parts drive a run: apply engine inputs to it and get the records of
its decision, or get its live executor. The engine shard implements both; starts,
continue-as-new chains, resets and recovery take them as callables, so each part
names what it needs of the shard and nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from orchestrator.engine import inputs
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.serde import records as rec
from orchestrator.worker.shard.executions import Execution
from orchestrator.worker.shard.records import OutRecord

__all__ = ["Apply", "ExecutorOf"]


class Apply(Protocol):
    """Apply ``batch`` to the run at ``now``; the records of its decision. ``command``:
    the command that led to it (answered when acknowledged), ``correlation`` the
    reply's correlation id. ``park_unwritable``: a decision that cannot be written
    parks the run instead of raising. ``cause``: the trace context it follows."""

    def __call__(
        self,
        execution: Execution,
        batch: Sequence[inputs.Input],
        now: int,
        command: rec.Command | None,
        correlation: str,
        *,
        park_unwritable: bool = False,
        cause: str | None = None,
    ) -> list[OutRecord]: ...


#: the run's live executor, replaying its history if evicted; None when it is parked
ExecutorOf = Callable[[Execution], WorkflowExecutor | None]
