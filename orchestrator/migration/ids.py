"""Workflow ids and request ids derived by the migration tools.

THESE FORMATS ARE PERMANENT. The engine deduplicates starts by workflow id, so the
id a row or a message maps to is what makes a re-publish harmless; changing a
format would make every row or message published before the change start a
second saga when it is replayed. Add a new function instead of editing one.

========================  =================================  ===========================
source                    workflow id                        request id (reply correlation)
========================  =================================  ===========================
outbox row                ``<business_key>`` (verbatim)      ``outbox/<table>/<row id>``
legacy message, key fn    ``<business key>`` (verbatim)      ``bridge/<topic>/<partition>/<offset>``
legacy message, no key    ``<topic>/<partition>/<offset>``   ``bridge/<topic>/<partition>/<offset>``
========================  =================================  ===========================

A business key is used verbatim so the same payment gets the same workflow id
whichever path starts it (outbox, bridge, or a native ``client.start``).
"""

from __future__ import annotations

__all__ = [
    "bridge_request_id",
    "bridge_workflow_id",
    "outbox_request_id",
    "outbox_workflow_id",
]


def _check_key(business_key: str) -> str:
    if not business_key or business_key != business_key.strip():
        raise ValueError(f"business key must be non-empty without outer spaces: {business_key!r}")
    return business_key


def outbox_workflow_id(business_key: str) -> str:
    """Workflow id of an outbox row: its business key, verbatim (permanent)."""
    return _check_key(business_key)


def outbox_request_id(table: str, row_id: int) -> str:
    """Request id of the start command for an outbox row (permanent)."""
    return f"outbox/{table}/{row_id}"


def bridge_workflow_id(
    topic: str, partition: int, offset: int, business_key: str | None = None
) -> str:
    """Workflow id of a legacy message: the business key if given, else
    ``<topic>/<partition>/<offset>`` (permanent)."""
    if business_key is not None:
        return _check_key(business_key)
    return f"{topic}/{partition}/{offset}"


def bridge_request_id(topic: str, partition: int, offset: int) -> str:
    """Request id of the start command for a legacy message (permanent)."""
    return f"bridge/{topic}/{partition}/{offset}"
