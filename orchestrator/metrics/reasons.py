"""A small, fixed set of labels for DLQ reasons (the reason texts name ids and offsets)."""

from __future__ import annotations

from typing import Final

from orchestrator.serde.errors import DecodeFailure

__all__ = ["DLQ_REASONS", "dlq_reason_label"]

_PREFIXES: Final = (
    ("workflow is parked", "parked"),
    ("unknown workflow type", "unknown_workflow_type"),
    ("handler error", "handler_error"),
    ("command has no key", "no_key"),
    ("command key is not utf-8", "bad_key"),
)
_DECODE: Final = {f.value: f"undecodable_{f.value.replace('-', '_')}" for f in DecodeFailure}

DLQ_REASONS: Final = frozenset(
    {label for _, label in _PREFIXES} | set(_DECODE.values()) | {"other"}
)
"""Every value the ``reason`` label of ``saga_dead_letters_total`` takes."""


def dlq_reason_label(reason: str) -> str:
    """The label of a DLQ reason text (see :mod:`orchestrator.worker.shard.dlq`)."""
    lowered = reason.lower()
    for prefix, label in _PREFIXES:
        if lowered.startswith(prefix):
            return label
    code = lowered.split(":", 1)[0].split(" ", 1)[0]  # RecordDecodeError: "<code> (type): ..."
    return _DECODE.get(code, "other")
