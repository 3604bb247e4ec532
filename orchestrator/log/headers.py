"""Kafka record headers as the orchestrator handles them: (name, bytes) pairs."""

from __future__ import annotations

from typing import Any, TypeAlias

from confluent_kafka import Message

Headers: TypeAlias = list[tuple[str, bytes | None]]


def normalize_headers(raw: Any) -> Headers:
    """Headers as confluent-kafka gives them (list, dict or None) as (name, bytes) pairs."""
    if raw is None:
        return []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), v.encode() if isinstance(v, str) else v) for k, v in pairs]


def headers_of(msg: Message) -> Headers:
    """A message's headers as a list of (name, value) pairs (empty when it has none)."""
    return normalize_headers(msg.headers())
