"""Local activities: attempts the engine worker runs itself, inside its own cycle.

A workflow asks for one with ``ctx.execute_local_activity``. The executor records
``ActivityScheduled`` as for any activity; the engine shard, instead of writing a
task record, hands the attempt to :class:`LocalActivities`, feeds the outcome
straight back into the executor, and writes schedule, outcome and the decisions
that follow in the same transaction. A three-step saga of local activities is one
transaction instead of four task-queue round trips.

Same guarantees as other activities: a crash before the commit loses the cycle,
the command that started it is consumed again and the attempt runs again with the
same idempotency key (at-least-once). A failed attempt takes the normal retry path
(a retry timer in history; the retry runs locally again when it fires). An attempt
may not run longer than ``max_attempt_s`` (the whole shard waits for it): past
that it fails with a start-to-close timeout and is retried under its policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from orchestrator import tracing
from orchestrator.activity import ActivityDefinition
from orchestrator.converter import DataConverter
from orchestrator.engine.events import Failure
from orchestrator.serde.records import ActivityHeartbeat, ActivityTask, ActivityTaskFailed
from orchestrator.worker.activity_runner import ActivityOutcome, AttemptRunner

__all__ = ["DEFAULT_MAX_ATTEMPT_S", "LocalActivities"]

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPT_S = 10.0


_NOT_ASYNC = Failure(
    message="activity.CompleteAsync is not supported in a local activity (the attempt "
    "holds up its shard); run it through a task queue",
    type="CompleteAsyncNotSupported",
    non_retryable=True,
)


def _ignore_heartbeat(_: ActivityHeartbeat) -> None:
    """Local attempts are bounded by ``max_attempt_s``; heartbeats add nothing."""


class LocalActivities:
    """Runs local activity attempts for an engine worker, many at once, on a private loop."""

    def __init__(
        self,
        activities: Mapping[str, ActivityDefinition],
        converter: DataConverter | None = None,
        *,
        max_attempt_s: float = DEFAULT_MAX_ATTEMPT_S,
        threads: int = 8,
        identity: str = "engine",
    ) -> None:
        self.max_attempt_s = max_attempt_s
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="local-activity")
        self._runner = AttemptRunner(
            activities,
            converter or DataConverter(),
            self._pool,
            _ignore_heartbeat,
            identity=identity,
            default_start_to_close_s=max_attempt_s,
        )
        self._loop = asyncio.new_event_loop()
        self.attempts = 0

    def handles(self, activity_type: str) -> bool:
        """True when this worker has the activity registered and can run it."""
        return activity_type in self._runner.activities

    def run(
        self, tasks: Sequence[ActivityTask], traces: Sequence[str | None] = ()
    ) -> list[tuple[ActivityOutcome, str | None]]:
        """Run the attempts concurrently; one outcome per task, in order, each with the
        trace context of its attempt (a span, child of ``traces[i]``, with a tracing SDK;
        else ``traces[i]`` itself)."""
        limit_ms = round(self.max_attempt_s * 1000)
        bounded = [
            dataclasses.replace(
                task,
                start_to_close_timeout_ms=min(task.start_to_close_timeout_ms or limit_ms, limit_ms),
                heartbeat_timeout_ms=None,
            )
            for task in tasks
        ]
        self.attempts += len(bounded)

        parents = list(traces) or [None] * len(bounded)

        attempts = [self._attempt(t, p) for t, p in zip(bounded, parents, strict=True)]

        async def all_of() -> list[tuple[ActivityOutcome, str | None]]:
            return list(await asyncio.gather(*attempts))

        return self._loop.run_until_complete(all_of())

    async def _attempt(
        self, task: ActivityTask, parent: str | None
    ) -> tuple[ActivityOutcome, str | None]:
        attributes: dict[str, str | int | bool] = {
            "saga.workflow_id": task.workflow_id,
            "saga.run_id": task.run_id,
            "saga.activity_type": task.activity_type,
            "saga.activity_seq": task.activity_seq,
            "saga.attempt": task.attempt,
            "saga.local": True,
        }
        name = f"saga local activity {task.activity_type}"
        with tracing.hop(name, tracing.INTERNAL, parent, attributes) as hop:
            ran = await self._runner.run(task)
            outcome = ran if ran is not None else self._runner.failed(task, _NOT_ASYNC)
            if isinstance(outcome, ActivityTaskFailed):
                hop.set("saga.outcome", "failed")
                hop.fail(outcome.failure.message)
            else:
                hop.set("saga.outcome", "completed")
            return outcome, hop.traceparent or parent

    def close(self) -> None:
        self._loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
