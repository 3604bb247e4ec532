"""Retention of closed runs: when it ends, the run's records are tombstoned on the
history topic (compaction then reclaims them) and leave the shard's store.

A run's retention starts when it closes (its last event's time) and lasts the
shard's ``retention_ms``; the entry waits in the store's expiry index. The latest run
of a workflow id takes the id's snapshot with it, which frees the id.
"""

from __future__ import annotations

from orchestrator.log.topics import TopicLayout
from orchestrator.serde.keys import event_key, snapshot_key
from orchestrator.worker.shard import store as keys
from orchestrator.worker.shard.due import ExpiryIndex
from orchestrator.worker.shard.executions import Execution, ExecutionTable
from orchestrator.worker.shard.records import OutRecord
from orchestrator.worker.shard.view import StoreView


class Retention:
    """Schedules and carries out the end of closed runs' retention on one shard."""

    def __init__(
        self,
        view: StoreView,
        executions: ExecutionTable,
        layout: TopicLayout,
        partition: int,
        retention_ms: int,
    ) -> None:
        self.view = view
        self.executions = executions
        self.expiries = ExpiryIndex(view)
        self.layout = layout
        self.partition = partition
        self.retention_ms = retention_ms

    def closed(self, closed_at: int, workflow_id: str, run_id: str, last_seq: int) -> None:
        """A run closed at ``closed_at`` with ``last_seq`` events: schedule its end."""
        self.expiries.add(closed_at + self.retention_ms, workflow_id, run_id, last_seq)

    def next_due(self) -> int | None:
        return self.expiries.next_due()

    def expire(self, now_ms: int, limit: int) -> list[OutRecord]:
        """Tombstones of up to ``limit`` runs whose retention ended by ``now_ms``."""
        out: list[OutRecord] = []
        for due in self.expiries.pop_due(now_ms, limit):
            current = self.executions.get(due.workflow_id)
            latest = current is not None and current.run_id == due.run_id
            if latest and current is not None and current.is_open:
                continue  # the entry of a close that was rolled back: the run goes on
            if latest and current is not None and _reopened_since(current, due.last_seq):
                continue  # repaired after this close: its later close has its own entry
            for seq in range(1, due.last_seq + 1):
                self.view.delete(keys.event_key(due.workflow_id, due.run_id, seq))
                out.append(self._tombstone(event_key(due.workflow_id, due.run_id, seq)))
            if latest:
                self.executions.remove(due.workflow_id)
                out.append(self._tombstone(snapshot_key(due.workflow_id)))
        return out

    def _tombstone(self, key: bytes) -> OutRecord:
        return OutRecord(self.layout.history, key, None, self.partition)


def _reopened_since(execution: Execution, last_seq: int) -> bool:
    """Whether the run has events after the close ``last_seq`` ended it (an operator's
    repair reopened it since)."""
    snapshot = execution.snapshot
    return snapshot is not None and snapshot.last_seq > last_seq
