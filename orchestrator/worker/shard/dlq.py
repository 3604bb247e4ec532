"""Dead-letter records: the original bytes, where they came from, and why they were refused."""

from __future__ import annotations

from orchestrator.log.dlq_tools import OMITTED_HEADER, REASON_HEADER, SOURCE_HEADER
from orchestrator.worker.shard.records import InRecord, OutRecord

__all__ = [
    "MAX_DLQ_RECORD_BYTES",
    "OMITTED_HEADER",
    "REASON_HEADER",
    "SOURCE_HEADER",
    "dead_letter",
]

# well under the broker's default message.max.bytes (1,048,588) with batch overhead
MAX_DLQ_RECORD_BYTES = 900_000


def dead_letter(dlq_topic: str, msg: InRecord, reason: str) -> OutRecord:
    """A DLQ record keeping the original key, value and headers, plus the reason.

    A value too large to fit beside the DLQ headers under the broker's record limit
    is left out (``saga.dlq.value-omitted`` gives its size): the source header still
    points at the original, which stays on its topic for that topic's retention. A
    copy the broker refuses would fail the transaction again and again.
    """
    headers = list(msg.headers)
    headers.append((REASON_HEADER, reason.encode()[:4096]))
    headers.append((SOURCE_HEADER, f"{msg.topic}/{msg.partition}/{msg.offset}".encode()))
    value, key = msg.value, msg.key
    size = len(value or b"") + len(key or b"") + sum(len(k) + len(v or b"") for k, v in headers)
    if value is not None and size > MAX_DLQ_RECORD_BYTES:
        headers.append((OMITTED_HEADER, str(len(value)).encode()))
        value = None
    return OutRecord(dlq_topic, key, value, None, headers)
