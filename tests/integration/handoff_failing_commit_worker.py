"""``saga`` whose engine fails one transaction: the first that would commit the outcome
of step 2 of the run ``victim``, given back in memory by the activity worker of the same process
(orchestrator/worker/task_handoff.py). ``commit_transaction`` raises instead of
committing, as it does when the broker refuses the commit; the processor must abort,
rebuild its shards and send the outcome through the commands topic, where the rewind
reads it again.

    python -m tests.integration.handoff_failing_commit_worker worker --sagas ...
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

from orchestrator.cli import main
from orchestrator.serde.records import ActivityTaskCompleted
from orchestrator.serde.wire import WireFormat
from orchestrator.worker.shard import processor

#: the run, and its step, whose outcome given back in memory the failed commit carries
VICTIM, STEP = "victim", 2
WIRE = WireFormat()


class _FailsOnce:
    """A producer whose commit fails once, for the batch holding the victim's outcome."""

    failed = False

    def __init__(self, producer: Any, owner: processor.ShardProcessor) -> None:
        self._producer = producer
        self._owner = owner

    def commit_transaction(self, *args: Any) -> Any:
        if not _FailsOnce.failed and self._carries_victim():
            _FailsOnce.failed = True
            print("commit fails once", flush=True)
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "injected: commit fails"))
        return self._producer.commit_transaction(*args)

    def _carries_victim(self) -> bool:
        in_flight = self._owner._handed._in_flight  # the batch this commit writes
        for _, outcome in in_flight:
            record = WIRE.decode_command(outcome.headers, outcome.value).record
            if isinstance(record, ActivityTaskCompleted) and (
                record.workflow_id, record.activity_seq
            ) == (VICTIM, STEP):
                return True
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


_new_producer = processor.ShardProcessor._new_producer


def _failing_producer(self: processor.ShardProcessor, init_timeout_s: float = 30.0) -> Any:
    return _FailsOnce(_new_producer(self, init_timeout_s), self)


processor.ShardProcessor._new_producer = _failing_producer  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
