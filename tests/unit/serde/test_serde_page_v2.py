"""History page v2: the answer to ``__describe`` carries the open run's unfinished
activities, each with ``paused``; a v1 page (an engine older than this) decodes with
none, and a writer pinned to v1 during a rolling upgrade still writes v1."""

from __future__ import annotations

from orchestrator.serde.history_page import HistoryPage, PendingActivity, StoredRecord
from orchestrator.serde.registry import SchemaRegistry
from orchestrator.serde.wire import WireFormat

WIRE = WireFormat()
PAGE = HistoryPage(
    records=[StoredRecord(headers={"ce_type": b"saga.history.snapshot.v6"}, value=b"\x01")],
    pending_activities=[
        PendingActivity(activity_seq=1, activity_type="charge", task_queue="q", attempt=3,
                        paused=True),
        PendingActivity(activity_seq=2, activity_type="notify", task_queue="q", attempt=1),
    ],
)


def test_a_describe_page_round_trips_its_pending_activities() -> None:
    payload = WIRE.encode_page(PAGE)
    assert payload.encoding == "avro/saga.reply.history-page.v2"
    assert WIRE.decode_page(payload) == PAGE


def test_a_v1_page_decodes_with_no_pending_activities() -> None:
    pinned = WireFormat(SchemaRegistry(write_versions={"saga.reply.history-page": 1}))
    payload = pinned.encode_page(PAGE)
    assert payload.encoding == "avro/saga.reply.history-page.v1"
    decoded = WIRE.decode_page(payload)
    assert decoded.records == PAGE.records and decoded.pending_activities == []
