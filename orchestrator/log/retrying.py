"""Calls to Kafka retried while the cluster is briefly unreachable (a broker restarting,
a cut connection), for a bounded time."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaException

T = TypeVar("T")

log = logging.getLogger(__name__)


def retried(
    what: str,
    call: Callable[[], T],
    within_s: float,
    *,
    errors: tuple[type[BaseException], ...] = (KafkaException,),
    pause_s: float = 1.0,
) -> T:
    """``call()``, retried on ``errors`` for up to ``within_s`` (then the last one raised)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return call()
        except errors as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("%s failed (%s); retrying", what, exc)
            time.sleep(pause_s)
