"""What a start command does to a workflow id, given the id's latest run.

Pure functions over the start and the latest run (:class:`Execution`, from the
store); the shard carries out the verdict. In order:

1. **A repeat** is a start whose request id (``request_id``, else the CloudEvents
   ``ce_id``) is the request id of the start that began the latest run (or the first
   run of its continue-as-new chain). Whatever the run's state, it is answered with
   that start's START reply again (same run id) and starts, signals and terminates
   nothing. The request id is kept in the workflow id's snapshot, so this holds
   across restarts and store rebuilds, until retention tombstones the closed run.
   Only the latest run is compared: once another start made a newer run, an old
   request counts as new.
2. A start for a **running** id joins the running run (a signal-with-start signals
   it). Under ``TERMINATE_IF_RUNNING`` the running run is terminated instead (its
   reason names the start) and the new run starts, in the same decision, so one
   transaction holds both or neither. A child's start never terminates: its id
   policy is always the default.
3. A start for a **closed** id starts a new run if the id reuse policy allows it,
   else it is refused.
"""

from __future__ import annotations

import enum
import logging

from orchestrator.engine.status import WorkflowStatus as EngineStatus
from orchestrator.serde import records as rec
from orchestrator.worker.shard.executions import Execution
from orchestrator.worker.shard.replies import started_reply

log = logging.getLogger(__name__)

__all__ = [
    "StartVerdict",
    "repeat_reply",
    "replaced_reason",
    "request_id_of",
    "reuse_allowed",
    "verdict",
]


class StartVerdict(enum.Enum):
    """What the shard does with a start (see the module docstring)."""

    START = "start"  # no run yet, or a closed one the reuse policy lets go
    REPEAT = "repeat"  # the latest run's own start again: its reply, nothing else
    JOIN = "join"  # a running id: the running run answers
    REPLACE = "replace"  # a running id under TERMINATE_IF_RUNNING: terminate it, then start
    REFUSE = "refuse"  # a closed id the reuse policy keeps


def request_id_of(start: rec.StartWorkflow, ce_id: str) -> str:
    """The id that makes two sends of a start one request (also its reply's correlation id)."""
    return start.request_id or ce_id


def verdict(start: rec.StartWorkflow, ce_id: str, latest: Execution | None) -> StartVerdict:
    """What a start does to its workflow id, whose latest run is ``latest``."""
    if latest is None:
        return StartVerdict.START
    request_id = request_id_of(start, ce_id)
    if latest.start_request_id is not None and latest.start_request_id == request_id:
        log.info("start of %s (request %s) is a repeat", start.workflow_id, request_id)
        return StartVerdict.REPEAT
    if latest.is_open:
        if start.id_reuse_policy is rec.IdReusePolicy.TERMINATE_IF_RUNNING:
            return StartVerdict.REPLACE
        return StartVerdict.JOIN
    return StartVerdict.START if reuse_allowed(start, latest) else StartVerdict.REFUSE


def reuse_allowed(start: rec.StartWorkflow, closed: Execution) -> bool:
    """Whether the start's id reuse policy lets a new run follow the ``closed`` one."""
    policy = start.id_reuse_policy
    if policy is rec.IdReusePolicy.REJECT_DUPLICATE:
        return False
    if policy is rec.IdReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY:
        return closed.status is not EngineStatus.COMPLETED
    return True


def repeat_reply(start: rec.StartWorkflow, ce_id: str, latest: Execution) -> rec.Reply:
    """The START reply the original send of this start got: the run it created."""
    run_id = latest.start_run_id or latest.run_id
    return started_reply(start, request_id_of(start, ce_id), run_id)


def replaced_reason(start: rec.StartWorkflow, ce_id: str) -> str:
    """The termination reason of a run that a ``TERMINATE_IF_RUNNING`` start replaced."""
    return (
        f"terminated by a start of {start.workflow_id!r} (request {request_id_of(start, ce_id)}) "
        "with id reuse policy TERMINATE_IF_RUNNING"
    )
