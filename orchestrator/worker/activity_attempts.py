"""The attempts an activity worker runs: each an asyncio task, run inside its trace span,
reachable by a cancel, and reported when it ends (outcome sent, counted).

The span continues the trace of the task record (``traceparent``) and the outcome
record is that span's child. Whatever goes wrong around the call (a result too large
to encode, a bug in the worker) still ends in a failure outcome: the engine always
hears back from an attempt that started, unless it raised CompleteAsync (then the
task's offset is finished at once, and the holder of its task token reports it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import NamedTuple

from orchestrator import tracing
from orchestrator.engine.events import Failure
from orchestrator.serde.errors import RecordEncodeError
from orchestrator.serde.records import ActivityTask, ActivityTaskFailed
from orchestrator.serde.wire import EncodedRecord, WireFormat
from orchestrator.worker.activity_cancels import AttemptCancels, attempt_key
from orchestrator.worker.activity_metrics import ActivityCounts
from orchestrator.worker.activity_runner import (
    ActivityOutcome,
    AttemptCancel,
    AttemptRunner,
    is_cancellation,
    is_timeout,
)

__all__ = ["EncodedOutcome", "RunningAttempts", "SendOutcome", "encode_outcome", "run_attempt"]

#: the worker's own logger, so that its lines keep their name
log = logging.getLogger("orchestrator.worker.activity_worker")


class EncodedOutcome(NamedTuple):
    """What an attempt ended in, and the record that tells the engine."""

    outcome: ActivityOutcome
    record: EncodedRecord


def encode_outcome(
    wire: WireFormat, task: ActivityTask, outcome: ActivityOutcome, traceparent: str | None
) -> EncodedRecord:
    """The command record of ``outcome``; its CloudEvents id is the same on re-delivery."""
    ce_id = f"{task.idempotency_key}/{task.attempt}/outcome"
    return wire.encode_command(outcome, ce_id=ce_id, traceparent=traceparent)


def _position(partition: int, offset: int) -> dict[str, str | int | bool]:
    """Where the task was read; a task handed over by the engine of this process
    (negative partition, orchestrator/worker/task_handoff.py) was never on the queue."""
    if partition < 0:
        return {"saga.task_handed": True}
    return {"messaging.destination.partition.id": str(partition), "messaging.kafka.offset": offset}


async def run_attempt(
    task: ActivityTask,
    runner: AttemptRunner,
    cancel: AttemptCancel,
    *,
    wire: WireFormat,
    topic: str,
    partition: int,
    offset: int,
    traceparent: str | None,
) -> EncodedOutcome | None:
    """Run ``task`` (read at ``topic``/``partition``/``offset``) in its span; None if it
    raised CompleteAsync (the holder of its task token reports the outcome)."""
    attributes = (  # built only for an SDK that records them
        tracing.kafka_attributes(
            topic,
            "process",
            **_position(partition, offset),
            **{
                "saga.workflow_id": task.workflow_id,
                "saga.run_id": task.run_id,
                "saga.activity_type": task.activity_type,
                "saga.activity_seq": task.activity_seq,
                "saga.attempt": task.attempt,
            },
        )
        if tracing.recording()
        else {}
    )
    name = f"saga activity {task.activity_type}"
    with tracing.hop(name, tracing.CONSUMER, traceparent, attributes) as hop:
        traceparent = hop.traceparent or traceparent  # the outcome is this span's child
        try:
            ran = await runner.run(task, cancel)
            if ran is None:
                hop.set("saga.outcome", "pending")
                return None
            outcome: ActivityOutcome = ran
            record = encode_outcome(wire, task, outcome, traceparent)
        except RecordEncodeError as exc:  # e.g. a result over the record size limit
            outcome = runner.failed(task, Failure(message=str(exc), type="RecordEncodeError"))
            record = encode_outcome(wire, task, outcome, traceparent)
        except Exception as exc:
            log.exception("activity task %s: worker error", task.idempotency_key)
            outcome = runner.failed(task, Failure(message=repr(exc), type="WorkerError"))
            record = encode_outcome(wire, task, outcome, traceparent)
        if is_cancellation(outcome):
            hop.set("saga.outcome", "cancelled")
        elif isinstance(outcome, ActivityTaskFailed):
            hop.set("saga.outcome", "timed_out" if is_timeout(outcome) else "failed")
            hop.set("error.type", outcome.failure.type or "ActivityError")
            hop.fail(outcome.failure.message)
        else:
            hop.set("saga.outcome", "completed")
    return EncodedOutcome(outcome, record)


SendOutcome = Callable[[str, EncodedRecord, tuple[int, int]], None]
"""Sends the outcome record of an attempt (workflow id, record, task (partition, offset));
once it is acknowledged, the task's offset is finished (``OutcomeSender.outcome``)."""


class RunningAttempts:
    """Starts attempts as asyncio tasks on the worker's loop and reports each one's end:
    its outcome through ``send`` or, for CompleteAsync, ``finished(partition, offset)``
    at once."""

    def __init__(
        self,
        runner: AttemptRunner,
        send: SendOutcome,
        cancels: AttemptCancels,
        counts: ActivityCounts,
        *,
        wire: WireFormat,
        topic: str,
        finished: Callable[[int, int], None],
    ) -> None:
        self.runner = runner
        self.wire = wire
        self.topic = topic
        self.tasks: set[asyncio.Task[None]] = set()
        """The attempts' asyncio tasks, until done."""
        self.running = 0
        """Attempts started and not ended (their outcome may still be on its way)."""
        self._send = send
        self._cancels = cancels
        self._counts = counts
        self._finished = finished

    def start(
        self, task: ActivityTask, *, partition: int, offset: int, traceparent: str | None
    ) -> None:
        """Start an attempt of ``task``, read at ``partition``/``offset``."""
        self._counts.started(task)
        self.running += 1
        key = attempt_key(task)
        cancel = self._cancels.started(key)  # a cancel reaches it
        running = asyncio.get_running_loop().create_task(
            self._run(task, cancel, partition=partition, offset=offset, traceparent=traceparent)
        )
        self.tasks.add(running)
        running.add_done_callback(self.tasks.discard)
        running.add_done_callback(lambda _: self._cancels.finished(key, cancel))

    def cancel_all(self) -> None:
        """Cancel every attempt's asyncio task (their offsets stay unfinished)."""
        for running in list(self.tasks):
            running.cancel()

    async def _run(
        self,
        task: ActivityTask,
        cancel: AttemptCancel,
        *,
        partition: int,
        offset: int,
        traceparent: str | None,
    ) -> None:
        began = time.monotonic()
        try:
            ran = await run_attempt(
                task,
                self.runner,
                cancel,
                wire=self.wire,
                topic=self.topic,
                partition=partition,
                offset=offset,
                traceparent=traceparent,
            )
        finally:
            self.running -= 1
        if ran is None:  # CompleteAsync: the task token's holder reports it
            self._counts.pending(task)
            self._finished(partition, offset)
            return
        self._counts.finished(task, ran.outcome, time.monotonic() - began)
        self._send(task.workflow_id, ran.record, (partition, offset))
