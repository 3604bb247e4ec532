"""The built-in reads of a workflow id (``__describe``, ``__history``), answered from the
shard's store: no replay, no executor, and no scan of the history partition.

Reads go through the live view, so they see every decision made before them; their
reply leaves in the same transaction as the cycle's other records, so a client sees
it only once what it describes is committed.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.engine.events import Failure
from orchestrator.serde import records as rec
from orchestrator.serde.history_page import (
    DESCRIBE_QUERY,
    HistoryPage,
    PendingActivity,
    StoredRecord,
    read_after_seq,
)
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.shard import store as keys
from orchestrator.worker.shard.view import StoreView

#: a history page stops growing past this many bytes of records (a reply must stay
#: under Kafka's record limit; one event is at most that limit itself)
PAGE_BYTES = 256 * 1024
_REPLY_HEADROOM = 16 * 1024


class StoreReads:
    """Answers built-in read queries of one shard."""

    def __init__(
        self,
        view: StoreView,
        wire: WireFormat,
        pending: Callable[[str], list[PendingActivity]] | None = None,
    ) -> None:
        """``pending``: a workflow id's open run's unfinished activities (describe)."""
        self.view = view
        self.wire = wire
        self.pending = pending

    def answer(self, query: rec.QueryWorkflow) -> rec.Reply:
        """The reply to ``query`` (whose name is one of the built-in reads)."""
        run_id = query.run_id or self._current_run(query.workflow_id)
        try:
            if query.query_name == DESCRIBE_QUERY:
                page = self._describe(query.workflow_id, query.run_id)
            else:
                page = self._history(query.workflow_id, run_id, read_after_seq(query.args))
        except ValueError as exc:
            return _failed(query, run_id, str(exc), "InvalidArgument")
        if page is None:
            run = f" run {query.run_id!r}" if query.run_id else ""
            message = f"no such workflow run: {query.workflow_id!r}{run}"
            return _failed(query, None, message, "WorkflowNotFound")
        payload = self.wire.encode_page(page)
        if len(payload.data) > self.wire.max_record_bytes - _REPLY_HEADROOM:
            message = (
                f"event after seq {read_after_seq(query.args)} is too large for a reply "
                f"({len(payload.data)} bytes)"
            )
            return _failed(query, run_id, message, "RecordTooLarge")
        return rec.Reply(
            correlation_id=query.query_id,
            kind=rec.ReplyKind.QUERY,
            workflow_id=query.workflow_id,
            run_id=run_id,
            ok=True,
            result=payload,
        )

    def _current_run(self, workflow_id: str) -> str | None:
        raw = self.view.get(keys.current_run_key(workflow_id))
        return None if raw is None else raw.decode()

    def _describe(self, workflow_id: str, run_id: str | None) -> HistoryPage | None:
        if run_id is not None and run_id != self._current_run(workflow_id):
            return None  # the snapshot names the latest run only
        raw = self.view.get(keys.snapshot_key(workflow_id))
        if raw is None:
            return None
        pending = self.pending(workflow_id) if self.pending is not None else []
        return HistoryPage(records=[_stored(raw)], pending_activities=pending)

    def _history(self, workflow_id: str, run_id: str | None, after: int) -> HistoryPage | None:
        if run_id is None:
            return None
        prefix = b"e" + keys.run_prefix(workflow_id, run_id)
        records: list[StoredRecord] = []
        size, last_seq, found = 0, after, False
        for key, raw in self.view.scan(prefix):
            found = True
            seq = keys.read_u64(key, len(key) - 8)
            if seq <= after:
                continue
            if records and size + len(raw) > PAGE_BYTES:
                return HistoryPage(records=records, next_seq=last_seq)
            records.append(_stored(raw))
            size += len(raw)
            last_seq = seq
        if not found and run_id != self._current_run(workflow_id):
            return None  # an unknown run, or one whose retention ended
        return HistoryPage(records=records)


def _failed(query: rec.QueryWorkflow, run_id: str | None, message: str, kind: str) -> rec.Reply:
    return rec.Reply(
        correlation_id=query.query_id,
        kind=rec.ReplyKind.QUERY,
        workflow_id=query.workflow_id,
        run_id=run_id,
        ok=False,
        error=Failure(message=message, type=kind),
    )


def _stored(raw: bytes) -> StoredRecord:
    headers, value = keys.unframe(raw)
    return StoredRecord(headers=dict(headers), value=value)
