"""Test helpers that read topics to their end (read_committed)."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Message

from orchestrator.log.reading import read_committed


def read_topic(
    config: dict[str, Any], topic: str, partitions: int, timeout_s: float = 30
) -> list[Message]:
    """Every committed record of ``topic`` at the time of the call."""
    return read_committed(config, topic, partitions, timeout_s)
