"""Runs one activity attempt: decode, call, watch its timeouts, encode the outcome.

Async activities run as asyncio tasks on the worker's loop; sync ones run in the
worker's bounded thread pool. Either way the attempt ends in exactly one command
for the shard: :class:`ActivityTaskCompleted` or :class:`ActivityTaskFailed`,
unless the activity raised :class:`~orchestrator.activity.CompleteAsync`: then it
ends in none (``run`` returns None) and the holder of its task token reports it.

Timeouts: ``start_to_close`` counts from the moment this worker starts the
attempt; ``heartbeat`` from the start or the last ``activity.heartbeat()``. When
one passes, an async activity is cancelled (bounded wait for its cleanup) and a
sync one is abandoned (a thread cannot be interrupted; its result is dropped and
its pool slot stays busy until it returns). The shard enforces the same timeouts
with its own timers, so a worker that dies is covered too.

Cancels: an attempt run with an :class:`AttemptCancel` stops when the worker pulls
it (a cancel from the engine arrived). An async activity gets ``CancelledError`` at
its current await and up to ``_CANCEL_GRACE_S`` for its cleanup; a sync one sees
``activity.is_cancelled()`` turn True (and ``activity.heartbeat()`` raise) and gets
the same grace to return, after which its thread is abandoned like a timed-out one.
Either way the outcome is a non-retryable failure of type ``ActivityCancelled``
(:func:`is_cancellation`), which the engine ignores: it stopped waiting first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any

from orchestrator import activity
from orchestrator.activity import ActivityDefinition, ActivityInfo
from orchestrator.converter import DataConverter, Payload
from orchestrator.engine.events import Failure
from orchestrator.engine.failures import timeout_failure, to_failure
from orchestrator.exceptions import ActivityCancelledError
from orchestrator.serde.records import (
    ActivityHeartbeat,
    ActivityTask,
    ActivityTaskCompleted,
    ActivityTaskFailed,
)

__all__ = [
    "CANCELLED_TYPE",
    "ActivityOutcome",
    "AttemptCancel",
    "AttemptRunner",
    "activity_definitions",
    "cancelled_failure",
    "is_cancellation",
    "is_timeout",
]

log = logging.getLogger(__name__)

ActivityOutcome = ActivityTaskCompleted | ActivityTaskFailed
"""What an attempt produces for the shard."""

START_TO_CLOSE = "start_to_close"
HEARTBEAT = "heartbeat"
_CANCELLED = "cancelled"
_CANCEL_GRACE_S = 1.0
CANCELLED_TYPE = "ActivityCancelled"
"""The failure type of an attempt stopped by a cancel."""


def activity_definitions(
    activities: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]],
) -> dict[str, ActivityDefinition]:
    """Name → definition. Callables use their ``@activity.defn`` name (or ``__name__``);
    a mapping registers each callable under its key. A name used twice is an error."""
    found: dict[str, ActivityDefinition] = {}
    items: Iterable[tuple[str | None, Callable[..., Any]]] = (
        activities.items() if isinstance(activities, Mapping) else ((None, f) for f in activities)
    )
    for name, fn in items:
        definition = activity.definition_of(fn)
        if name is not None and name != definition.name:
            definition = dataclasses.replace(definition, name=name)
        if definition.name in found:
            raise ValueError(f"activity type {definition.name!r} is registered twice")
        found[definition.name] = definition
    return found


def cancelled_failure() -> Failure:
    """The failure reported for an attempt stopped by a cancel: non-retryable, so even
    a report that some engine did read could not schedule another attempt."""
    return Failure(
        message="activity attempt cancelled: the workflow no longer waits for it",
        type=CANCELLED_TYPE,
        non_retryable=True,
    )


def is_cancellation(outcome: ActivityOutcome) -> bool:
    """True when the attempt was stopped by a cancel."""
    return isinstance(outcome, ActivityTaskFailed) and outcome.failure.type == CANCELLED_TYPE


class AttemptCancel:
    """The cancel switch of one running attempt. :meth:`cancel` is called on the event
    loop thread; :attr:`flag` is what ``activity.is_cancelled()`` reads, from any thread."""

    __slots__ = ("_waiter", "flag")

    def __init__(self) -> None:
        self.flag = threading.Event()
        self._waiter: asyncio.Future[None] | None = None

    @property
    def requested(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self.flag.is_set()

    def cancel(self) -> None:
        """Stop the attempt (idempotent)."""
        self.flag.set()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """A future that is done once the attempt is cancelled."""
        if self._waiter is None:
            self._waiter = loop.create_future()
            if self.flag.is_set():
                self._waiter.set_result(None)
        return self._waiter


def is_timeout(outcome: ActivityOutcome) -> bool:
    """True when the attempt was stopped by one of its timeouts."""
    return isinstance(outcome, ActivityTaskFailed) and outcome.failure.type == (
        timeout_failure(START_TO_CLOSE).type
    )


class _Beats:
    """Heartbeats of one attempt: when the last one came, and details not yet sent."""

    __slots__ = ("last_beat", "last_sent", "pending")

    def __init__(self, now: float) -> None:
        self.last_beat = now
        self.last_sent = float("-inf")
        self.pending: list[Payload] | None = None

    def record(self, details: list[Payload]) -> None:
        self.last_beat = time.monotonic()
        self.pending = details


class AttemptRunner:
    """Runs attempts of the registered activities and reports heartbeats through a sink.

    ``send_heartbeat`` is called on the event loop thread; heartbeats are sent at
    most once per ``heartbeat_throttle_s`` per attempt (the latest details win).
    """

    def __init__(
        self,
        activities: Mapping[str, ActivityDefinition],
        converter: DataConverter,
        thread_pool: Executor,
        send_heartbeat: Callable[[ActivityHeartbeat], None],
        *,
        identity: str = "",
        heartbeat_throttle_s: float = 1.0,
        default_start_to_close_s: float | None = None,
    ) -> None:
        self.activities = dict(activities)
        self.converter = converter
        self.thread_pool = thread_pool
        self.send_heartbeat = send_heartbeat
        self.identity = identity
        self.heartbeat_throttle_s = heartbeat_throttle_s
        self.default_start_to_close_s = default_start_to_close_s

    async def run(  # noqa: PLR0911
        self, task: ActivityTask, cancel: AttemptCancel | None = None
    ) -> ActivityOutcome | None:
        """Run one attempt to its outcome, or None when the activity raised
        ``CompleteAsync`` (cancellation of the caller propagates). ``cancel``: the
        switch that stops the attempt early (the outcome is then a cancellation)."""
        definition = self.activities.get(task.activity_type)
        if definition is None:
            return self.failed(
                task,
                Failure(
                    message=f"activity type {task.activity_type!r} is not registered on task "
                    f"queue {task.task_queue!r} (known: {sorted(self.activities)})",
                    type="NotFoundError",
                    non_retryable=True,
                ),
            )
        try:
            args = self.converter.from_payloads(task.args, definition.arg_types)
            details = self.converter.from_payloads(task.heartbeat_details, ())
        except Exception as exc:  # noqa: BLE001 - a payload the code cannot take fails the attempt
            return self.failed(task, to_failure(exc, self.converter))
        cancel = cancel or AttemptCancel()
        if cancel.requested:  # cancelled between being taken and being started
            return self.failed(task, cancelled_failure())
        loop = asyncio.get_running_loop()
        beats = _Beats(time.monotonic())
        info = _info(task, details)
        future = self._launch(definition, args, info, beats, loop, cancel=cancel)
        try:
            timed_out = await self._watch(task, future, beats, cancel.waiter(loop))
        except asyncio.CancelledError:
            future.cancel()
            raise
        if timed_out == _CANCELLED:
            await _stop_cancelled(future)
            return self.failed(task, cancelled_failure())
        if timed_out is not None:
            await _abandon(future)
            self._flush(task, beats)
            return self.failed(task, timeout_failure(timed_out))
        self._flush(task, beats)
        try:
            result = future.result()
            payload = self.converter.to_payload(result)
        except activity.CompleteAsync:
            return None  # completed later by the holder of the task token
        except Exception as exc:  # noqa: BLE001 - every user error becomes a recorded failure
            return self.failed(task, to_failure(exc, self.converter))
        except asyncio.CancelledError as exc:  # the activity cancelled itself
            return self.failed(task, to_failure(exc, self.converter))
        except ActivityCancelledError as exc:  # raised with no cancel: the code's own
            return self.failed(task, to_failure(exc, self.converter))
        return ActivityTaskCompleted(
            workflow_id=task.workflow_id,
            run_id=task.run_id,
            activity_seq=task.activity_seq,
            attempt=task.attempt,
            result=payload,
            identity=self.identity,
            token_signature=task.token_signature,
        )

    def _launch(
        self,
        definition: ActivityDefinition,
        args: Sequence[Any],
        info: ActivityInfo,
        beats: _Beats,
        loop: asyncio.AbstractEventLoop,
        *,
        cancel: AttemptCancel,
    ) -> asyncio.Future[Any]:
        converter = self.converter
        if definition.is_async:

            def on_beat(details: Sequence[Any]) -> None:
                beats.record(converter.to_payloads(details))

            async def call_async() -> Any:
                with activity.running(info, on_beat, cancel.flag):
                    return await definition.fn(*args)

            return loop.create_task(call_async(), name=f"activity {info.idempotency_key}")

        def on_beat_threadsafe(details: Sequence[Any]) -> None:
            payloads = converter.to_payloads(details)  # errors surface in the caller
            loop.call_soon_threadsafe(beats.record, payloads)

        def call_sync() -> Any:
            with activity.running(info, on_beat_threadsafe, cancel.flag, raise_on_heartbeat=True):
                return definition.fn(*args)

        return loop.run_in_executor(self.thread_pool, call_sync)

    async def _watch(
        self,
        task: ActivityTask,
        future: asyncio.Future[Any],
        beats: _Beats,
        cancelled: asyncio.Future[None],
    ) -> str | None:
        """Wait for the attempt; the name of the timeout that stopped it (or
        ``"cancelled"``), if any."""
        start = time.monotonic()
        stc_s = (
            task.start_to_close_timeout_ms / 1000
            if task.start_to_close_timeout_ms
            else self.default_start_to_close_s
        )
        hb_s = task.heartbeat_timeout_ms / 1000 if task.heartbeat_timeout_ms else None
        while True:
            if cancelled.done():
                return _CANCELLED
            now = time.monotonic()
            if stc_s is not None and now >= start + stc_s:
                return START_TO_CLOSE
            if hb_s is not None and now >= beats.last_beat + hb_s:
                return HEARTBEAT
            if beats.pending is not None and now >= beats.last_sent + self.heartbeat_throttle_s:
                self._flush(task, beats)
            wake = [
                t
                for t in (
                    start + stc_s if stc_s is not None else None,
                    beats.last_beat + hb_s if hb_s is not None else None,
                    beats.last_sent + self.heartbeat_throttle_s
                    if beats.pending is not None
                    else None,
                )
                if t is not None
            ]
            # wake at least once per throttle period: a heartbeat recorded meanwhile
            # must be sent on time even though it does not wake this wait
            timeout = min([*(w - now for w in wake), self.heartbeat_throttle_s])
            await asyncio.wait(
                {future, cancelled}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if cancelled.done():  # even when the attempt returned in the same turn: the
                return _CANCELLED  # engine stopped waiting, so its outcome is a cancel
            if future.done():
                return None

    def _flush(self, task: ActivityTask, beats: _Beats) -> None:
        if beats.pending is None:
            return
        details, beats.pending = beats.pending, None
        beats.last_sent = time.monotonic()
        self.send_heartbeat(
            ActivityHeartbeat(
                workflow_id=task.workflow_id,
                run_id=task.run_id,
                activity_seq=task.activity_seq,
                attempt=task.attempt,
                details=details,
                token_signature=task.token_signature,
            )
        )

    def failed(self, task: ActivityTask, failure: Failure) -> ActivityTaskFailed:
        """The outcome reporting ``failure`` for ``task``."""
        return ActivityTaskFailed(
            workflow_id=task.workflow_id,
            run_id=task.run_id,
            activity_seq=task.activity_seq,
            attempt=task.attempt,
            failure=failure,
            identity=self.identity,
            token_signature=task.token_signature,
        )


async def _abandon(future: asyncio.Future[Any]) -> None:
    """Cancel a timed-out attempt; give a coroutine a moment to run its cleanup."""
    future.cancel()
    if isinstance(future, asyncio.Task):
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(future), _CANCEL_GRACE_S)
        if not future.done():
            log.warning("activity %s ignored its cancellation; abandoned", future.get_name())
    # a sync attempt's thread cannot be stopped: its result is simply never read
    if future.done() and not future.cancelled():
        future.exception()  # mark retrieved so asyncio does not log it


async def _stop_cancelled(future: asyncio.Future[Any]) -> None:
    """Stop a cancelled attempt. A coroutine gets CancelledError and a moment for its
    cleanup; a thread, already told through its flag, gets the same moment to return.
    Whatever either then returns or raises is dropped; one still running after the
    grace is abandoned (a thread keeps its pool slot until it returns)."""
    if isinstance(future, asyncio.Task):
        future.cancel()
    await asyncio.wait({future}, timeout=_CANCEL_GRACE_S)
    if future.done():
        _drop_result(future)
        return
    log.warning("activity did not stop within %.1fs of its cancel; abandoned", _CANCEL_GRACE_S)
    future.add_done_callback(_drop_result)


def _drop_result(future: asyncio.Future[Any]) -> None:
    """Mark the outcome retrieved, so asyncio does not log a dropped error."""
    if not future.cancelled():
        future.exception()


def _info(task: ActivityTask, heartbeat_details: Sequence[Any]) -> ActivityInfo:
    scheduled = datetime.fromtimestamp(task.scheduled_time / 1000, tz=UTC)
    return ActivityInfo(
        workflow_id=task.workflow_id,
        run_id=task.run_id,
        workflow_type="",  # not carried by saga.task.activity.v1
        activity_type=task.activity_type,
        activity_seq=task.activity_seq,
        attempt=task.attempt,
        task_queue=task.task_queue,
        scheduled_time=scheduled,
        attempt_started_time=scheduled,
        heartbeat_details=tuple(heartbeat_details),
        key=task.idempotency_key,
        token_signature=task.token_signature,
    )
