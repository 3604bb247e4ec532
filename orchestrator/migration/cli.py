"""``saga outbox ...`` and ``saga bridge ...``: run the migration tools from the shell.

Settings come from the environment like every ``saga`` command (``DATABASE_URL``,
``KAFKA_BOOTSTRAP_SERVERS``, ``SAGA_TOPIC_PREFIX``, ``SAGA_SHARDS``, ``SAGA_KAFKA_*``).
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from typing import Any

import click

from orchestrator.config import Settings
from orchestrator.log.topics import TopicLayout
from orchestrator.migration import DEFAULT_OUTBOX_TABLE as DEFAULT_TABLE

__all__ = ["bridge", "outbox", "register"]

log = logging.getLogger("orchestrator.migration.cli")


def _layout(settings: Settings) -> TopicLayout:
    return TopicLayout(prefix=settings.topic_prefix, shards=settings.shards)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


@click.group()
def outbox() -> None:
    """Transactional outbox: the table, and the relay that turns rows into sagas."""


@outbox.command("migrate")
@click.option("--table", default=DEFAULT_TABLE, show_default=True)
def outbox_migrate(table: str) -> None:
    """Create the outbox table, index and NOTIFY trigger in DATABASE_URL (idempotent)."""
    import psycopg

    from orchestrator.migration.outbox import migrate

    with psycopg.connect(Settings.from_env().database_url) as conn:
        migrate(conn, table)
    click.echo(f"outbox table {table} ready")


@outbox.command("relay")
@click.option("--table", default=DEFAULT_TABLE, show_default=True)
@click.option("--batch-size", default=100, show_default=True)
@click.option("--poll-interval", default=1.0, show_default=True, help="Seconds.")
@click.option("--workflow-type", default=None, help="For rows whose workflow_type is NULL.")
@click.option("--task-queue", default="default", show_default=True)
def outbox_relay(
    table: str, batch_size: int, poll_interval: float, workflow_type: str | None, task_queue: str
) -> None:
    """Relay committed outbox rows to saga starts until SIGTERM or Ctrl-C."""
    from orchestrator.migration.outbox import OutboxRelay

    settings = Settings.from_env()
    relay = OutboxRelay(
        settings.database_url,
        settings.kafka_config(),
        _layout(settings),
        table=table,
        batch_size=batch_size,
        poll_interval_s=poll_interval,
        default_workflow_type=workflow_type,
        default_task_queue=task_queue,
    )
    stop = _stop_on_signals()
    click.echo("ready", err=True)
    relay.run(stop)
    m = relay.metrics
    click.echo(f"published={m.rows_published} batches={m.batches} max_lag_s={m.max_lag_s:.3f}")


@click.group()
def bridge() -> None:
    """Queue bridge: one saga per message of an existing Kafka topic."""


def _load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    if not name:
        raise click.BadParameter(f"expected module:function, got {spec!r}")
    return getattr(importlib.import_module(module), name)


@bridge.command("run")
@click.option("--topic", required=True, help="The legacy topic.")
@click.option("--group", required=True, help="Consumer group id of the bridge.")
@click.option("--workflow-type", required=True)
@click.option("--task-queue", default="default", show_default=True)
@click.option("--key-field", default=None, help="JSON field holding the business key.")
@click.option("--translator", default=None, help="module:function returning a BridgeStart.")
def bridge_run(
    *,
    topic: str,
    group: str,
    workflow_type: str,
    task_queue: str,
    key_field: str | None,
    translator: str | None,
) -> None:
    """Start one saga per legacy message until SIGTERM or Ctrl-C."""
    from orchestrator.migration.bridge import QueueBridge, json_translator

    if key_field and translator:
        raise click.UsageError("pass --key-field or --translator, not both")
    settings = Settings.from_env()
    qb = QueueBridge(
        settings.kafka_config(),
        _layout(settings),
        topic,
        group,
        workflow_type=workflow_type,
        task_queue=task_queue,
        translate=_load(translator) if translator else json_translator(key_field),
    )
    stop = _stop_on_signals()
    qb.start()
    click.echo("ready", err=True)
    while qb.error is None and not stop.wait(0.5):
        pass
    qb.stop()
    m = qb.metrics
    click.echo(f"messages={m.messages} started={m.started} dead_lettered={m.dead_lettered}")
    if qb.error is not None:
        log.error("bridge failed: %s", qb.error)
        sys.exit(1)


def register(main: click.Group) -> None:
    """Add the ``outbox`` and ``bridge`` groups to the ``saga`` command."""
    main.add_command(outbox)
    main.add_command(bridge)
