"""What a worker does when the group fences one of its static consumers.

A static member (``group.instance.id``) is fenced when another consumer joins the group
under the same instance id. That is a duplicate ``--worker-id``, or librdkafka itself:
when the group coordinator moves (a broker failure), the consumer can lose its member
id, and its rejoin under the same instance id then fences the member it was. The fenced
consumer is dead for good (librdkafka raises a fatal error: it fetches and commits
nothing more), while the worker is fine: it replaces the consumer with a new one that
joins again. :class:`FenceLimit` tells the two causes apart: fenced over and over means
another live process has this worker id, and the worker stops rather than fence it back
forever.

Measured on Kafka 4.3 with librdkafka 2.16 (tests/integration/test_worker_fencing.py):
the fenced consumer's ``poll``/``consume`` serve the fatal error once and then return
empty; ``commit`` and ``unsubscribe`` raise ``_FATAL`` at once; its assignment is
dropped without a revocation callback; ``close`` returns at once. Even so the closing
is done off the caller's thread (:func:`close_in_background`): a librdkafka close can
block on a broker that is down (confluent-kafka-python #1667, librdkafka #1002), and a
worker's deciding thread must never wait on a consumer it no longer uses. Served only
once, the fatal error must not be lost with a fetched batch that is dropped to be read
again after a failed commit: :func:`fencing_error` finds it among what was fetched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

__all__ = [
    "FenceLimit",
    "close_in_background",
    "fences_the_consumer",
    "fencing_error",
    "finish_within",
]

log = logging.getLogger(__name__)


def fences_the_consumer(err: KafkaError) -> bool:
    """Whether ``err`` says the group fenced our consumer: as a transaction's offsets
    commit (FENCED_INSTANCE_ID), or as the fatal error a fenced consumer serves (librdkafka
    reports it as ``_FATAL``, naming the fencing only in its text)."""
    if err.code() == KafkaError.FENCED_INSTANCE_ID:
        return True
    return err.code() == KafkaError._FATAL and "consumer" in err.str().lower()


def fencing_error(msgs: list[Message]) -> KafkaError | None:
    """The error among fetched ``msgs`` that says the group fenced the consumer, if any.
    A fenced consumer serves it once: a caller that drops a fetched batch (to read it
    again after a rewind) must look for it first, or keep a dead consumer for good."""
    for msg in msgs:
        err = msg.error()
        if err is not None and fences_the_consumer(err):
            return err
    return None


class FenceLimit:
    """Counts fencings; more than ``most`` within ``window_s`` is a duplicate worker id."""

    def __init__(
        self, what: str, instance: str | None, most: int = 3, window_s: float = 60.0
    ) -> None:
        self.what = what
        self.instance = instance
        self.most = most
        self.window_s = window_s
        self._at: list[float] = []

    def fenced(self, err: KafkaError) -> None:
        """Count one fencing; raise RuntimeError if there were too many lately."""
        now = time.monotonic()
        self._at = [t for t in self._at if now - t < self.window_s] + [now]
        if len(self._at) > self.most:
            raise RuntimeError(
                f"{self.what} was fenced {len(self._at)} times in {self.window_s:.0f} s "
                f"({err.str()}): is another live consumer using group.instance.id "
                f"{self.instance!r} (two workers with one --worker-id)?"
            )
        log.error("%s fenced (%s); joining the group again with a new one", self.what, err.str())


def finish_within(work: Callable[[], object], what: str, timeout_s: float) -> bool:
    """Run ``work`` (a close, a last commit) on a daemon thread and wait for it at most
    ``timeout_s``; True if it finished. One stuck in librdkafka is left behind: a daemon
    thread does not keep the process from exiting."""
    thread = _start(work, what)
    thread.join(timeout_s)
    if thread.is_alive():
        log.error("%s still blocked after %.1fs; going on without it", what, timeout_s)
        return False
    return True


def close_in_background(consumer: Consumer, what: str) -> None:
    """Close a consumer the caller no longer uses, without waiting for the close."""
    _start(consumer.close, what)


def _start(work: Callable[[], object], what: str) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except (KafkaException, RuntimeError) as exc:  # a failed or already closed client
            log.warning("%s: %s", what, exc)

    thread = threading.Thread(target=run, name=what, daemon=True)
    thread.start()
    return thread
