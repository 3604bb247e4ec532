"""Dead-letter records: the original bytes, where they came from, and why they were refused."""

from __future__ import annotations

from confluent_kafka import Message

from orchestrator.log.dlq_tools import REASON_HEADER, SOURCE_HEADER
from orchestrator.worker.shard.records import OutRecord, headers_of

__all__ = ["REASON_HEADER", "SOURCE_HEADER", "dead_letter"]


def dead_letter(dlq_topic: str, msg: Message, reason: str) -> OutRecord:
    """A DLQ record keeping the original key, value and headers, plus the reason."""
    headers = headers_of(msg)
    headers.append((REASON_HEADER, reason.encode()[:4096]))
    headers.append((SOURCE_HEADER, f"{msg.topic()}/{msg.partition()}/{msg.offset()}".encode()))
    return OutRecord(dlq_topic, msg.key(), msg.value(), None, headers)
