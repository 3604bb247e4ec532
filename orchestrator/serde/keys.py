"""Kafka record keys of every topic, as UTF-8 bytes.

History keys never collide: an event key ends in its decimal ``seq``, a snapshot
key in ``/snapshot``; run ids never contain ``/``. Compaction therefore keeps every
event of a run and one snapshot per workflow id, whatever the workflow ids are.
"""

from __future__ import annotations

SNAPSHOT_SUFFIX = "/snapshot"


def command_key(workflow_id: str) -> bytes:
    """Key of a record on ``<prefix>.commands``: the workflow id."""
    return workflow_id.encode()


def task_key(workflow_id: str) -> bytes:
    """Key of an activity task: the workflow id, so one run's tasks stay in order."""
    return workflow_id.encode()


def pause_key(task_queue: str, activity_type: str) -> bytes:
    """Key of an activity-type pause: ``{task_queue}/{activity_type}`` (queue names
    have no ``/``, so the first one splits the key)."""
    return f"{task_queue}/{activity_type}".encode()


def cancel_key(task_queue: str, workflow_id: str) -> bytes:
    """Key of an activity cancel: ``{task_queue}/{workflow_id}``. Queue names have no
    ``/``, so a worker skips other queues' cancels by the key alone."""
    return f"{task_queue}/{workflow_id}".encode()


def reply_key(correlation_id: str) -> bytes:
    """Key of a reply: its correlation id."""
    return correlation_id.encode()


def event_key(workflow_id: str, run_id: str, seq: int) -> bytes:
    """Key of a history event: ``{workflow_id}/{run_id}/{seq}``."""
    return f"{workflow_id}/{run_id}/{seq}".encode()


def snapshot_key(workflow_id: str) -> bytes:
    """Key of a workflow's snapshot on the history topic: ``{workflow_id}/snapshot``."""
    return (workflow_id + SNAPSHOT_SUFFIX).encode()
