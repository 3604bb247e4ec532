"""The engine's side of the task handoff (orchestrator/worker/task_handoff.py): which
outcomes given back in memory belong to the batch being gathered and to the one being
committed, and how long the gathered batch waits for the handed tasks' outcomes.
The same wait covers tasks sent through a queue ahead of their transaction (early
dispatch): while their outcomes are on their way and nothing in the batch is awaited
by a client or another run, the batch waits for them, so that a run's steps share
one transaction and its last outcome finds no commit of the engine's own in flight
before its close (docs/architecture.md, "Batches wait for the outcomes on their way").

An outcome given back in memory has no offset: nothing would read it again if its
transaction failed. So the processor keeps those of each batch until the batch is
committed, and sends them through the commands topic if it is not.
"""

from __future__ import annotations

import time

from orchestrator.serde.wire import EncodedRecord

__all__ = ["HOLD_S", "QUEUED_HOLD_MAX_S", "QUEUED_HOLD_S", "HandoffBatches"]

#: a batch whose handed tasks have not come back yet waits for them this long at most
#: before it commits, so that a run's next steps join the same transaction
HOLD_S = 0.005
#: a batch that no client or other run waits for waits this long for the outcome of
#: the last task its runs sent through a queue (so that the engine's own commit does
#: not stand between a run's last outcome and its close), each task sent restarting
#: the wait, and no longer than :data:`QUEUED_HOLD_MAX_S` from its first look
QUEUED_HOLD_S = 0.005
QUEUED_HOLD_MAX_S = 0.020

#: an outcome given back: the shard (commands partition) it belongs to, and its record
Returned = tuple[int, EncodedRecord]


class HandoffBatches:
    """Handed tasks and their returned outcomes, per batch (the deciding thread only)."""

    def __init__(
        self,
        hold_s: float = HOLD_S,
        queued_hold_s: float = QUEUED_HOLD_S,
        queued_hold_max_s: float = QUEUED_HOLD_MAX_S,
    ) -> None:
        self.hold_s = hold_s
        self.queued_hold_s = queued_hold_s
        self.queued_hold_max_s = queued_hold_max_s
        self._gathering: list[Returned] = []
        self._in_flight: list[Returned] = []
        #: runs (workflow id) with tasks handed since the last hand-over whose outcome
        #: has not come back
        self._awaiting: dict[bytes, int] = {}
        self._hold_since: float | None = None
        #: runs with tasks sent through a queue for this batch whose outcome has not
        #: been read yet: how many, and when the last was sent
        self._queued: dict[bytes, int] = {}
        self._last_queued = 0.0
        #: whether the batch holds a record a client or another run waits for (a reply,
        #: a command), or is large: it does not wait for outcomes of queued tasks
        self.answering = False

    def queued(self, key: bytes | None) -> None:
        """A task of the run keyed ``key`` was sent through its queue ahead of the batch
        being gathered."""
        if key is not None:
            self._queued[key] = self._queued.get(key, 0) + 1
            self._last_queued = time.monotonic()

    def heard_from(self, key: bytes | None) -> None:
        """A command of the run keyed ``key`` was read from Kafka: most likely the
        outcome of a task it sent through a queue (a heartbeat ends the wait as well:
        early rather than late)."""
        if key is not None:
            _count_down(self._queued, key)

    def handed(self, key: bytes | None) -> None:
        """A task of the run keyed ``key`` was handed over for the batch being gathered."""
        if key is not None:
            self._awaiting[key] = self._awaiting.get(key, 0) + 1

    def returned(self, outcome: Returned) -> None:
        """``outcome`` joins the batch being gathered."""
        self._gathering.append(outcome)
        key = outcome[1].key
        if key is not None:
            _count_down(self._awaiting, key)

    def hold_left(self) -> float:
        """How much longer the gathered batch waits for the outcomes of the tasks it
        handed over or sent through a queue (0: commit now); the wait starts at the
        first call."""
        queued = bool(self._queued) and not self.answering
        if not self._awaiting and not queued:
            return 0.0
        now = time.monotonic()
        if self._hold_since is None:
            self._hold_since = now
        held = now - self._hold_since
        left = self.hold_s - held if self._awaiting else 0.0  # exact at the first look
        if queued:
            since_sent = now - self._last_queued
            left = max(left, min(self.queued_hold_s - since_sent, self.queued_hold_max_s - held))
        return max(0.0, left)

    def hand_over(self) -> None:
        """The gathered batch goes to be committed; a new one starts."""
        self._in_flight, self._gathering = self._gathering, []
        self._awaiting, self._hold_since = {}, None
        self._queued, self.answering = {}, False

    def committed(self) -> None:
        """The batch in flight committed: its outcomes are in history."""
        self._in_flight = []

    def uncommitted(self) -> list[Returned]:
        """Outcomes of the batch in flight and of the one gathered (after a failure,
        to send through the commands topic)."""
        return self._in_flight + self._gathering

    def drop(self) -> None:
        """Forget both batches (their outcomes were sent through Kafka)."""
        self._gathering, self._in_flight = [], []
        self._awaiting, self._hold_since = {}, None
        self._queued, self.answering = {}, False


def _count_down(counts: dict[bytes, int], key: bytes) -> None:
    """One fewer outcome awaited for the run keyed ``key`` (none left: forgotten)."""
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
