"""The engine's side of the task handoff (orchestrator/worker/task_handoff.py): which
outcomes given back in memory belong to the batch being gathered and to the one being
committed, and how long the gathered batch waits for the handed tasks' outcomes.

An outcome given back in memory has no offset: nothing would read it again if its
transaction failed. So the processor keeps those of each batch until the batch is
committed, and sends them through the commands topic if it is not.
"""

from __future__ import annotations

import time

from orchestrator.serde.wire import EncodedRecord

__all__ = ["HOLD_S", "HandoffBatches"]

#: a batch whose handed tasks have not come back yet waits for them this long at most
#: before it commits, so that a run's next steps join the same transaction
HOLD_S = 0.005

#: an outcome given back: the shard (commands partition) it belongs to, and its record
Returned = tuple[int, EncodedRecord]


class HandoffBatches:
    """Handed tasks and their returned outcomes, per batch (the deciding thread only)."""

    def __init__(self, hold_s: float = HOLD_S) -> None:
        self.hold_s = hold_s
        self._gathering: list[Returned] = []
        self._in_flight: list[Returned] = []
        #: runs (workflow id) with tasks handed since the last hand-over whose outcome
        #: has not come back
        self._awaiting: dict[bytes, int] = {}
        self._hold_since: float | None = None

    def handed(self, key: bytes | None) -> None:
        """A task of the run keyed ``key`` was handed over for the batch being gathered."""
        if key is not None:
            self._awaiting[key] = self._awaiting.get(key, 0) + 1

    def returned(self, outcome: Returned) -> None:
        """``outcome`` joins the batch being gathered."""
        self._gathering.append(outcome)
        key = outcome[1].key
        left = self._awaiting.get(key, 0) - 1
        if left > 0:
            self._awaiting[key] = left
        else:
            self._awaiting.pop(key, None)

    def hold_left(self) -> float:
        """How much longer the gathered batch waits for the outcomes of the tasks it
        handed over (0: commit now); the wait starts at the first call."""
        if not self._awaiting:
            return 0.0
        now = time.monotonic()
        if self._hold_since is None:
            self._hold_since = now
        return max(0.0, self.hold_s - (now - self._hold_since))  # exact at the first look

    def hand_over(self) -> None:
        """The gathered batch goes to be committed; a new one starts."""
        self._in_flight, self._gathering = self._gathering, []
        self._awaiting, self._hold_since = {}, None

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
