"""Record the schedule workflow's histories: ``python -m tests.replay.record_schedule_histories
[--kafka] [--overwrite]``.

Only on purpose: the saved files stand for schedules already running in production.
``--kafka`` also records on real Kafka (started by the project's providers).
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from confluent_kafka.admin import AdminClient

from orchestrator.client import Client
from orchestrator.devstack import providers
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.replay import schedule_scenarios as sc
from tests.replay.record_histories import save


def main(argv: list[str] | None = None) -> None:
    """Write the histories not saved yet (all of them with ``--overwrite``)."""
    args = sys.argv[1:] if argv is None else argv
    overwrite = "--overwrite" in args
    save(asyncio.run(sc.in_memory_histories()), overwrite=overwrite)
    if "--kafka" not in args:
        return
    prefix = f"rec{uuid.uuid4().hex[:8]}"
    with providers.kafka() as kafka:
        config = {"bootstrap.servers": kafka.bootstrap_servers}
        layout = TopicLayout(prefix=prefix, shards=2)
        ensure_topics(AdminClient(config), layout)
        options = ProcessorOptions(worker_id=f"{prefix}-engine")
        with (
            EngineWorker(config, layout, sc.WORKFLOWS, options=options),
            Client(config, layout=layout) as client,
        ):
            save(sc.kafka_histories(client, prefix), overwrite=overwrite)


if __name__ == "__main__":
    main()
