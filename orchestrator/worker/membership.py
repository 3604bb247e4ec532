"""Consumer group membership of the workers: static for a stable worker id, and a prompt leave.

A worker restarted with the same ``--worker-id`` should take its partitions back at
once. A dynamic member cannot: its predecessor (SIGKILLed, so it never left) keeps
its partitions until the group's session timeout expires, and only then does the
group rebalance. With static membership (KIP-345, librdkafka ``group.instance.id``)
the restarted consumer joins under the same instance id, the coordinator replaces
the dead member with it, and it gets its partitions back without waiting.

Static membership is only for a stable id: a generated ``hostname-pid`` id is new
on every restart, so each incarnation would be another static member, and the dead
one would hold its partitions until the session timeout, as a dynamic member does.

Static members do not leave the group when they close (KIP-345; librdkafka skips
the LeaveGroup on close for them), so a cleanly stopped static worker would hold
its partitions until the session timeout too. :class:`GroupConsumer` therefore
leaves before it closes: it unsubscribes, which in librdkafka's classic protocol
revokes the assignment (through the worker's own revocation callback) and then
sends a LeaveGroup, and it closes once that is sent.

Why the classic protocol and not KIP-848 (``group.protocol=consumer``): see
docs/architecture.md ("Workers are static group members").
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time

from confluent_kafka import Consumer, KafkaException

__all__ = ["GroupConsumer", "generated_worker_id", "instance_id", "member_config"]

log = logging.getLogger(__name__)

#: how long a close waits for the group to be left (it normally takes milliseconds)
LEAVE_TIMEOUT_S = 5.0
_LEAVE_POLL_S = 0.05
#: what the broker accepts in a group.instance.id (as in a topic name)
_NOT_ALLOWED = re.compile(r"[^a-zA-Z0-9._-]")


def generated_worker_id() -> str:
    """The id of a worker that was given none: new on every restart."""
    return f"{socket.gethostname()}-{os.getpid()}"


def instance_id(worker_id: str | None, role: str) -> str | None:
    """The ``group.instance.id`` of one consumer of a worker; None: stay a dynamic member.

    Only a stable id makes a static member (not a missing or generated one). Each
    consumer of a process needs its own id: the engine and one activity worker per
    task queue share the worker id, so the role is appended (``<worker-id>.engine``,
    ``<worker-id>.tasks.<queue>``); both parts survive a restart. Characters the
    broker refuses in an instance id become ``_``.
    """
    if not worker_id or worker_id == generated_worker_id():
        return None
    return _NOT_ALLOWED.sub("_", f"{worker_id}.{role}")


def member_config(group_instance_id: str | None) -> dict[str, str]:
    """Consumer settings for ``group_instance_id`` (none for a dynamic member)."""
    return {"group.instance.id": group_instance_id} if group_instance_id else {}


class GroupConsumer(Consumer):
    """A consumer whose ``close()`` leaves the group first, static member or not.

    ``close()`` alone does not leave for a static member, and ``unsubscribe()``
    right before ``close()`` is not enough either: librdkafka sends the LeaveGroup
    only once the revocation is done, and by then the close has marked the consumer
    as terminating, which suppresses it. So the close serves the consumer until
    librdkafka has left (it clears the member id then). Records served meanwhile
    are dropped: their offsets are not committed, so the next owner reads them.
    """

    def close(self) -> None:
        try:
            self._leave(LEAVE_TIMEOUT_S)
        except (KafkaException, RuntimeError) as exc:  # a failed or closed consumer
            log.warning("could not leave the group before closing: %s", exc)
        super().close()

    def _leave(self, timeout_s: float) -> None:
        if not self.memberid():
            return  # never joined, or already left
        self.unsubscribe()
        deadline = time.monotonic() + timeout_s
        while self.memberid() and time.monotonic() < deadline:
            self.poll(_LEAVE_POLL_S)
        if self.memberid():
            log.warning("group not left within %.0fs; closing anyway", timeout_s)
