"""The activity worker of batch jobs: serves the ``saga.batch`` task queue with the
page and count activities (:mod:`orchestrator.batch.pages`).

``saga worker`` runs one beside its engine (docs/batch.md), so every deployment that
runs workflows runs batches. Its activities wait for the answers of the shards they
send operations to, which is why they run here, on a task queue, and not as local
activities inside an engine cycle.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from orchestrator.batch.pages import BatchPages
from orchestrator.batch.spec import BATCH_TASK_QUEUE
from orchestrator.client import Client
from orchestrator.log.topics import TopicLayout
from orchestrator.visibility import DEFAULT_TABLE
from orchestrator.worker.activity_worker import ActivityWorker, ActivityWorkerOptions
from orchestrator.worker.membership import instance_id

__all__ = ["BatchWorker"]


class BatchWorker:
    """An activity worker for ``saga.batch`` and the client and database it applies
    operations with. A context manager; ``worker_id`` makes it a static group member
    (a restart under the same id takes its tasks back at once)."""

    def __init__(
        self,
        kafka_config: dict[str, Any],
        layout: TopicLayout,
        dsn: str,
        *,
        worker_id: str | None = None,
        table: str = DEFAULT_TABLE,
    ) -> None:
        self.pages = BatchPages(
            lambda: Client(kafka_config, layout=layout, source="/saga/batch"), dsn, table=table
        )
        options = ActivityWorkerOptions(
            max_in_flight=16, group_instance_id=instance_id(worker_id, f"tasks.{BATCH_TASK_QUEUE}")
        )
        self.activity_worker = ActivityWorker(
            kafka_config, BATCH_TASK_QUEUE, self.pages.activities(), layout=layout, options=options
        )

    @property
    def error(self) -> BaseException | None:
        """What ended the activity worker, if anything did."""
        return self.activity_worker.error

    def start(self) -> BatchWorker:
        """Start serving the queue in a background thread."""
        self.activity_worker.start()
        return self

    def stop(self, timeout_s: float = 45.0) -> None:
        """Drain the attempts under way, then close the client."""
        self.activity_worker.stop()
        self.activity_worker.join(timeout_s)
        self.pages.close()

    def __enter__(self) -> BatchWorker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
