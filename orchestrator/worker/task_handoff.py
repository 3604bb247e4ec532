"""Activity tasks handed by the engine to an activity worker of the same process.

When a ``saga worker`` process runs the engine and also serves a task queue, a task
the engine decides for that queue need not travel through Kafka to reach a worker
in the very same process: the engine's deciding thread hands the encoded task record
to the worker's :class:`HandoffInbox`, and the worker runs it as if it had fetched
it (same decoding, cancels, pauses, spans, outcome record). This is what Temporal
calls eager activity execution. It saves a task's two Kafka trips (produce, fetch)
on each step of a saga.

Only a task that can be lost without harm is handed: one whose attempt has a
start-to-close timeout of at most :data:`MAX_START_TO_CLOSE_MS`. The engine's timer
for it is in history with the schedule, so if the process dies with the attempt,
the next owner of the shard times it out and retries it under its policy (the task
was never on the queue for another worker to pick up), no later than a queued task
of a dead worker is redelivered. Any other task goes through the queue.

A worker takes a task only while it is awake (it fetched, was handed or finished a
task in the last second, so its loop polls briefly and sees the inbox within a
millisecond) and has a free slot; otherwise the engine sends the task through the
queue as before, whose arrival wakes the worker. A worker that stops sends what it was handed
and had not started to the queue.

The outcome comes back the same way: the worker gives it to the engine, which decides
it as if it had read it from the shard's commands (against what history holds, like
every outcome), if it still serves that shard; otherwise the outcome goes through the
commands topic. An outcome taken back that does not get committed (its transaction
failed) is sent through the commands topic then, to be read again after the rewind;
if the process dies first, the start-to-close timer retries the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

from orchestrator.serde.wire import EncodedRecord
from orchestrator.worker.shard.records import OutRecord

__all__ = ["HANDED", "MAX_START_TO_CLOSE_MS", "HandoffInbox", "TaskHandoff"]

#: the partition and offset a handed task runs under (it was never on the queue)
HANDED = -1

#: the longest start-to-close timeout of a task that may be handed over: a handed
#: attempt lost with its process is retried when that timeout runs out, so this keeps
#: the wait no longer than a queued task of a dead worker waits for its redelivery
#: (the activity group's session timeout, 10 s)
MAX_START_TO_CLOSE_MS = 10_000
#: an outcome of a task handed over comes back within this long of the offer, or in
#: memory never (its attempt timed out, or it went through Kafka)
_OUTCOME_WINDOW_S = MAX_START_TO_CLOSE_MS / 1000 + 1.0
#: how long a worker stays awake (polling briefly) after its last task
AWAKE_S = 1.0
#: an offer within this much of the end of the awake window goes through the queue:
#: the worker may already be deciding to block for long
_AWAKE_MARGIN_S = 0.1


class HandoffInbox:
    """Tasks handed to one activity worker. The engine's thread offers; the worker's
    loop takes. ``free_slots`` tells how many more attempts the worker would start."""

    def __init__(self, topic: str, free_slots: Callable[[], int]) -> None:
        self.topic = topic
        self._free_slots = free_slots
        self._tasks: deque[OutRecord] = deque()
        self._awake_until = 0.0
        self._closed = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived: asyncio.Event | None = None
        self.handed = 0  # tasks taken over, for the worker's stats

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The worker's loop, woken by each offer (call from that loop)."""
        self._loop, self._arrived = loop, asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        """Wait until a task is handed over, at most ``timeout_s`` (the worker's loop)."""
        arrived = self._arrived
        if arrived is None:
            await asyncio.sleep(timeout_s)
            return
        if not self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), timeout_s)
        arrived.clear()

    def offer(self, record: OutRecord) -> bool:
        """Take ``record`` if the worker is awake, open and has a free slot."""
        now = time.monotonic()
        with self._lock:
            if self._closed or now >= self._awake_until - _AWAKE_MARGIN_S:
                return False
            if self._free_slots() - len(self._tasks) <= 0:
                return False
            self._tasks.append(record)
            self._awake_until = now + AWAKE_S
            self.handed += 1
        loop, arrived = self._loop, self._arrived
        if loop is not None and arrived is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing waits
                loop.call_soon_threadsafe(arrived.set)
        return True

    def take(self) -> list[OutRecord]:
        """The tasks handed since the last call (the worker's loop, every turn: no lock
        while there is none)."""
        if not self._tasks:
            return []
        with self._lock:
            out = list(self._tasks)
            self._tasks.clear()
        return out

    def wake(self) -> None:
        """The worker got or finished a task: it polls briefly for the next second (a
        float store: no lock, an offer racing with it extends the window either way)."""
        self._awake_until = time.monotonic() + AWAKE_S

    def awake(self) -> bool:
        """Whether the worker should poll briefly (a handed task may come any time)."""
        return time.monotonic() < self._awake_until

    def close(self) -> list[OutRecord]:
        """Take no more; the tasks handed and not taken yet (to send to the queue)."""
        with self._lock:
            self._closed = True
            out = list(self._tasks)
            self._tasks.clear()
        return out


class TaskHandoff:
    """The inboxes of a process's activity workers, by task topic; the engine offers
    tasks here, and takes back the outcomes of the tasks it handed. Workers join and
    leave while the engine runs (thread-safe)."""

    def __init__(self) -> None:
        self._inboxes: dict[str, HandoffInbox] = {}
        self._lock = threading.Lock()
        self._owns: Callable[[int], bool] | None = None
        self._serving = threading.Lock()
        self._returned: deque[tuple[int, EncodedRecord]] = deque()
        self._returned_event = threading.Event()
        self._last_offer = 0.0
        #: tasks handed whose outcome has not come back in memory (the engine's thread)
        self._outstanding = 0

    def serve(self, owns: Callable[[int], bool]) -> None:
        """The engine takes outcomes back for the shards ``owns`` says it serves now."""
        self._owns = owns

    def stop_serving(self) -> None:
        """The engine stops: no outcome comes back in memory any more (all go through
        Kafka). One given back before this call is still in :meth:`returned`."""
        with self._serving:
            self._owns = None

    def give_back(self, shard: int, outcome: EncodedRecord) -> bool:
        """Return a handed task's outcome (a command of ``shard``) to the engine of this
        process, if it still serves that shard; False: send it through Kafka."""
        with self._serving:  # not after stop_serving: nothing would take it
            owns = self._owns
            if owns is None or not owns(shard):
                return False
            self._returned.append((shard, outcome))
        self._returned_event.set()
        return True

    def returned(self) -> list[tuple[int, EncodedRecord]]:
        """The outcomes given back since the last call (the engine's thread)."""
        out: list[tuple[int, EncodedRecord]] = []
        self._returned_event.clear()  # before taking: a later give_back sets it again
        while self._returned:
            out.append(self._returned.popleft())
        self._outstanding = max(0, self._outstanding - len(out))
        return out

    def has_returned(self) -> bool:
        return bool(self._returned)

    def wait_returned(self, timeout_s: float) -> None:
        """Wait until an outcome is given back, at most ``timeout_s`` (engine's thread)."""
        self._returned_event.wait(timeout_s)

    def handed_within(self, seconds: float) -> bool:
        """Whether a task was handed over in the last ``seconds``."""
        return time.monotonic() - self._last_offer < seconds

    def awaiting_outcomes(self) -> bool:
        """Whether an outcome of a task handed over may come back any moment (the
        engine then polls Kafka briefly, waiting for it between polls). A task's outcome
        that went through Kafka instead (its shard moved, its worker stopped) is not
        counted as back: it stops counting once no task has been handed for longer than
        an attempt may run."""
        if self._outstanding and not self.handed_within(_OUTCOME_WINDOW_S):
            self._outstanding = 0
        return self._outstanding > 0

    def join(self, inbox: HandoffInbox) -> None:
        """Let the engine hand ``inbox``'s topic's tasks to it."""
        with self._lock:
            self._inboxes = {**self._inboxes, inbox.topic: inbox}

    def leave(self, inbox: HandoffInbox) -> None:
        with self._lock:
            if self._inboxes.get(inbox.topic) is inbox:
                self._inboxes = {t: i for t, i in self._inboxes.items() if t != inbox.topic}

    def offer(self, record: OutRecord) -> bool:
        """Hand ``record`` (an activity task whose attempt may be lost without harm) to a
        worker of this process; False: send it through its queue."""
        inbox = self._inboxes.get(record.topic)  # a copy-on-write dict: no lock to read
        if inbox is None or not inbox.offer(record):
            return False
        self._last_offer = time.monotonic()
        self._outstanding += 1
        return True
