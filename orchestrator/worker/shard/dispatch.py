"""Activity tasks sent as soon as they are decided, ahead of the transaction.

A task written inside the engine's transaction reaches the activity worker only
once that transaction commits (its consumer reads ``read_committed``): a commit,
often plus the rest of the one in flight, on every step of a saga. Tasks are
at-least-once by contract, and a decision made again after an aborted transaction
gives the same task (same workflow, run, activity sequence: the same idempotency
key), so the engine may send a task before the decision that scheduled it is
committed. What it may not do is lose one: a transaction commits only once the
broker has acknowledged every early task of its batch; a task it did not
acknowledge in time is written again inside the transaction (the activity may
then see it twice, as after any retry of a send).

An outcome of an early task counts only if its schedule is in history: outcomes
come back as commands, and a command's offset is committed in a later transaction
than the decision it answers (transactions commit in order); if that decision's
transaction fails, the shard is rebuilt from history and the outcome is read again
against what history holds (a late report of an unknown attempt is ignored).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from orchestrator.log.producing import PROMPT_PRODUCER
from orchestrator.worker.shard.records import OutRecord

#: the dispatch producer's own delivery timeout: a task it could not deliver by then
#: goes into the transaction instead (the transaction's timeout is 10 s by default)
_DELIVERY_TIMEOUT_MS = 5_000


class EarlyBatch:
    """The tasks sent early while one transaction's batch was gathered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[OutRecord] = []
        self._acked: set[int] = set()
        self._reported = 0

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: OutRecord) -> Callable[[KafkaError | None, Message], None]:
        """Count ``record`` in; the callback its delivery report must go to."""
        with self._lock:
            index = len(self._records)
            self._records.append(record)

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            with self._lock:
                self._reported += 1
                if err is None:
                    self._acked.add(index)

        return delivered

    def reported(self) -> bool:
        """Every task of the batch has its delivery report."""
        with self._lock:
            return self._reported >= len(self._records)

    def unacknowledged(self) -> list[OutRecord]:
        """Tasks the broker has not acknowledged (failed, or no report yet)."""
        with self._lock:
            return [r for i, r in enumerate(self._records) if i not in self._acked]


class EarlyDispatch:
    """An idempotent, non-transactional producer for the engine's activity tasks.

    The deciding thread calls :meth:`send`; the commit thread calls :meth:`settle`
    for the batch it commits. Delivery reports may be served on either thread (a
    full local queue makes :meth:`send` poll too): batches count them under a lock.
    """

    def __init__(self, kafka_config: dict[str, Any], task_topic_prefix: str) -> None:
        config = {k: v for k, v in kafka_config.items() if not k.startswith("transactional")}
        self._producer = Producer(
            {
                **config,
                **PROMPT_PRODUCER,
                "message.timeout.ms": _DELIVERY_TIMEOUT_MS,
                "queue.buffering.max.messages": 1_000_000,
            }
        )
        self._prefix = task_topic_prefix
        self.gathering = EarlyBatch()

    def is_task(self, record: OutRecord) -> bool:
        """Whether ``record`` is an activity task (the records this sends early)."""
        return record.topic.startswith(self._prefix)

    def send(self, record: OutRecord) -> None:
        """Produce ``record`` now, counted in the batch being gathered."""
        callback = self.gathering.add(record)
        kwargs: dict[str, Any] = {"key": record.key, "value": record.value}
        if record.headers:
            kwargs["headers"] = record.headers
        if record.partition is not None:
            kwargs["partition"] = record.partition
        while True:
            try:
                self._producer.produce(record.topic, on_delivery=callback, **kwargs)
            except BufferError:
                self._producer.poll(0.005)  # local queue full: serve deliveries, then retry
            else:
                break

    def take(self) -> EarlyBatch:
        """The batch gathered so far (it goes with the transaction being handed over)."""
        batch, self.gathering = self.gathering, EarlyBatch()
        return batch

    def settle(self, batch: EarlyBatch, timeout_s: float) -> list[OutRecord]:
        """Wait for the delivery reports of ``batch``; return the tasks the broker did
        not acknowledge within ``timeout_s`` (the transaction must carry them)."""
        deadline = time.monotonic() + timeout_s
        while not batch.reported() and time.monotonic() < deadline:
            self._producer.poll(0.001)
        self._producer.poll(0)
        return batch.unacknowledged()

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (bounded), then drop the producer."""
        self._producer.flush(timeout_s)
