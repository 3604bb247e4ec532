"""Heartbeats of running activity attempts, kept in the shard store.

History records no heartbeat (one per attempt every few seconds would swamp it), so
a replayed executor knows nothing of them: its heartbeat timeout would count from
the attempt's start again, and a retry would lose the details the attempt reported.
The shard keeps the latest heartbeat of each activity of a run in its store, written
with the transaction of the decision that took it in, and gives it back to the
executor after every replay (eviction, restart on the same disk). A store rebuilt
from the topic has none: then running attempts get their heartbeat timeout counted
from the restore at the earliest (:meth:`WorkflowExecutor.heartbeat_grace`).
"""

from __future__ import annotations

from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.shard import store as keys
from orchestrator.worker.shard.view import StoreView


class HeartbeatStore:
    """The ``h`` key space: ``h`` + wf + run + activity seq -> time + heartbeat record."""

    def __init__(self, view: StoreView, wire: WireFormat) -> None:
        self.view = view
        self.wire = wire

    def record(self, heartbeat: rec.ActivityHeartbeat, at_ms: int) -> None:
        """Keep ``heartbeat`` (received at ``at_ms``) as its activity's latest."""
        key = self._prefix(heartbeat.workflow_id, heartbeat.run_id) + keys.u64(
            heartbeat.activity_seq
        )
        encoded = self.wire.encode_command(heartbeat)
        headers: list[tuple[str, bytes | None]] = list(encoded.headers)
        self.view.put(key, keys.u64(at_ms) + keys.frame(headers, encoded.value))

    def restore(self, workflow_id: str, run_id: str, executor: WorkflowExecutor) -> None:
        """Give a replayed executor the heartbeats kept for its run."""
        for _, raw in self.view.scan(self._prefix(workflow_id, run_id)):
            at = keys.read_u64(raw)
            beat = self.wire.decode_command(*keys.unframe(raw[8:])).record
            if isinstance(beat, rec.ActivityHeartbeat):
                executor.restore_heartbeat(
                    beat.activity_seq, beat.attempt, at, list(beat.details)
                )

    def clear_run(self, workflow_id: str, run_id: str) -> None:
        """The run closed: its heartbeats are of no more use."""
        self.view.clear(self._prefix(workflow_id, run_id))

    @staticmethod
    def _prefix(workflow_id: str, run_id: str) -> bytes:
        return b"h" + keys.run_prefix(workflow_id, run_id)
