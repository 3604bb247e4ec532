"""``saga``: run workers and manage topics from the shell.

Settings come from the environment (see ``orchestrator.config``): Kafka at
``KAFKA_BOOTSTRAP_SERVERS`` (security settings via ``SAGA_KAFKA_*``), topics named
``<SAGA_TOPIC_PREFIX>.*`` with ``SAGA_SHARDS`` shards.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import itertools
import json
import logging
import os
import re
import signal as os_signal
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from orchestrator.background import BackgroundRunner
from orchestrator.batch.spec import BATCH_TASK_QUEUE
from orchestrator.cli_errors import ExpectedErrors
from orchestrator.cli_text import failed_run_text, history_line, jsonable
from orchestrator.config import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_RETENTION_MS,
    Settings,
    default_state_dir,
)
from orchestrator.exceptions import WorkflowFailedError
from orchestrator.log.retrying import retried
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde.records import IdReusePolicy

if TYPE_CHECKING:  # the worker's modules load only when a worker runs
    from orchestrator.metrics import SagaMetrics
    from orchestrator.worker.activity_worker import ActivityWorker
    from orchestrator.worker.batch_worker import BatchWorker
    from orchestrator.worker.discovery import Discovered
    from orchestrator.worker.engine_worker import EngineWorker
    from orchestrator.worker.task_handoff import TaskHandoff

log = logging.getLogger("orchestrator.cli")


def _layout(settings: Settings) -> TopicLayout:
    return TopicLayout(prefix=settings.topic_prefix, shards=settings.shards)


EXTRA_OF_MODULE: dict[str, str] = {
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
    "aiohttp": "http",
    "aiokafka": "asyncio",
}
"""Modules of the optional parts, and the extra (pyproject.toml) that installs each."""


class _Main(ExpectedErrors):
    """``saga``: a command whose optional part is not installed names the extra to
    install, instead of ending in a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            extra = EXTRA_OF_MODULE.get((exc.name or "").partition(".")[0])
            if extra is None:
                raise
            raise click.ClickException(
                f"this command needs {exc.name}, which is not installed: "
                f"pip install 'saga-orchestrator[{extra}]' (or '[all]' for every part)"
            ) from exc


@click.group(cls=_Main)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
)
def main(log_level: str) -> None:
    """Durable sagas on Kafka."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # --sagas modules live in the user's project, not in the installed package: look in
    # the current folder first, as `python -m` does (an installed `saga` script's
    # sys.path[0] is its own bin folder)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


#: how long ``saga worker`` retries its start-up topic check while Kafka is unreachable
_TOPICS_RETRY_S = 120.0
#: the exit status of a worker that ended itself because a thread was stuck (the engine's
#: watchdog, or a stop past its deadline): a supervisor restarts it
WATCHDOG_EXIT = 70


def _ensure_topics_retried(
    settings: Settings, layout: TopicLayout, task_queues: tuple[str, ...]
) -> None:
    """Create or check the topics, retrying transient Kafka errors (a broker that is
    restarting, a cut connection) for a while; a layout mismatch fails at once."""
    retried(
        "checking the topics",
        lambda: ensure_topics(AdminClient(settings.kafka_config()), layout, task_queues),
        _TOPICS_RETRY_S,
        errors=(KafkaException, TimeoutError),
        pause_s=2.0,
    )


@main.command()
@click.option("--task-queue", "task_queues", multiple=True, help="Task queue topics to create.")
def topics(task_queues: tuple[str, ...]) -> None:
    """Create the orchestrator's topics (idempotent) and check their layout."""
    settings = Settings.from_env()
    layout = _layout(settings)
    ensure_topics(AdminClient(settings.kafka_config()), layout, task_queues)
    click.echo(f"topics ready: {', '.join(s.name for s in layout.specs(task_queues))}")


def _operation_activities() -> list[Any]:
    """The built-in operation activities, when SAGA_OPERATIONS_CONFIG names a
    configuration (docs/operations-api.md)."""
    from orchestrator.operations.activities import operation_activities
    from orchestrator.operations.config import ConfigError, OperationsConfig, load_config

    try:
        config = load_config()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    return [] if config == OperationsConfig() else operation_activities(config)


@main.command()
@click.option(
    "--sagas",
    "modules",
    multiple=True,
    required=True,
    help="Module(s) defining workflows and activities, e.g. sagas.payments.",
)
@click.option(
    "--task-queue",
    "task_queues",
    multiple=True,
    help="Run an activity worker for these task queues (repeatable).",
)
@click.option(
    "--engine/--no-engine",
    default=True,
    show_default=True,
    help="Run the engine (shard processor) in this process.",
)
@click.option(
    "--worker-id",
    default=None,
    help="Stable id: a restart under it fences its predecessor's transactions and takes its "
    "partitions back at once (static group membership). Unique per live process.",
)
@click.option(
    "--build-id", default="", help="Recorded on every decision, to find a bad build later."
)
@click.option(
    "--watchdog-seconds",
    default=45.0,
    show_default=True,
    help="Exit (status 70) when one engine cycle runs this long: a client call stuck past "
    "its own timeout. A supervisor restarts the worker; the same --worker-id fences the old "
    "producer. 0 disables.",
)
@click.option(
    "--max-in-flight",
    default=256,
    show_default=True,
    help="Activity attempts running at once per task queue: bounds load on downstreams.",
)
@click.option(
    "--retention-hours",
    default=DEFAULT_RETENTION_MS / 3_600_000,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="How long a closed run is kept (its id stays taken, its history readable) "
    "before its records are tombstoned. Each closed run keeps its snapshot in the shard "
    "store on disk (not in memory) for this long.",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_state_dir,
    envvar="SAGA_STATE_DIR",
    show_default="$SAGA_STATE_DIR, else $SAGA_CACHE_DIR/state, else "
    "~/.cache/saga-orchestrator/state",
    help="Where the engine keeps its shard stores (RocksDB). A restart on the same "
    "folder reads only the history written since; a new folder rebuilds from the topic.",
)
@click.option(
    "--standby/--no-standby",
    default=False,
    show_default=True,
    help="Keep warm copies of the shards other workers own (tailing their history into "
    "local stores), so taking one over after a failure reads only its last moments.",
)
@click.option(
    "--early-dispatch/--no-early-dispatch",
    default=True,
    show_default=True,
    help="Send activity tasks as soon as they are decided, ahead of the transaction that "
    "records them (a step skips a commit's wait). A transaction that then fails makes the "
    "decision again: the activity may run twice with one idempotency key.",
)
@click.option(
    "--task-handoff/--no-task-handoff",
    default=True,
    show_default=True,
    help="With the engine and --task-queue in one process: hand a task of a served queue "
    "whose activity has a start-to-close timeout of at most 10 s straight to this "
    "process's activity worker, without the queue's Kafka round trip. If the process dies "
    "with it, the engine's start-to-close timer retries the attempt.",
)
@click.option(
    "--cache-size",
    default=DEFAULT_CACHE_SIZE,
    show_default=True,
    type=click.IntRange(min=1),
    help="Executions kept in memory per shard (with their live coroutines) besides those "
    "in flight; the others are read from the store and replayed when needed.",
)
@click.option(
    "--store-cache-mb",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    help="RocksDB block cache shared by this process's shard stores (MiB).",
)
@click.option(
    "--projector/--no-projector",
    default=False,
    show_default=True,
    help="Also run the visibility projector (history -> PostgreSQL at DATABASE_URL); "
    "one is active per table, the others stand by.",
)
@click.option(
    "--batch/--no-batch",
    "batches",
    default=True,
    show_default=True,
    help="With the engine: also serve the saga.batch task queue, which runs batch jobs' "
    "pages against the visibility store at DATABASE_URL (docs/batch.md).",
)
@click.option(
    "--metrics-port",
    default=0,
    show_default=True,
    type=click.IntRange(min=0, max=65535),
    help="Serve Prometheus metrics on http://HOST:PORT/metrics (0: no endpoint).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics endpoint listens on (it has no authentication: keep it on "
    "a private network).",
)
def worker(
    modules: tuple[str, ...],
    task_queues: tuple[str, ...],
    *,
    engine: bool,
    projector: bool,
    batches: bool,
    worker_id: str | None,
    build_id: str,
    max_in_flight: int,
    watchdog_seconds: float,
    retention_hours: float,
    state_dir: Path,
    standby: bool,
    early_dispatch: bool,
    task_handoff: bool,
    cache_size: int,
    store_cache_mb: int,
    metrics_port: int,
    metrics_host: str,
) -> None:
    """Run the engine worker and/or activity workers until SIGTERM or Ctrl-C."""
    from orchestrator.worker.gc_policy import settle_heap
    from orchestrator.worker.task_handoff import TaskHandoff

    if not engine and not task_queues and not projector:
        raise click.UsageError("--no-engine without --task-queue or --projector runs nothing")
    settings = Settings.from_env()
    log.info("settings: %s", settings.redacted())
    found = _discovered(modules, workflows=engine, activities=bool(task_queues))
    layout = _layout(settings)
    batch_queue = [BATCH_TASK_QUEUE] if engine and batches else []
    metrics, close_metrics = _metrics_endpoint(metrics_host, metrics_port)  # port taken: refused
    _ensure_topics_retried(settings, layout, (*task_queues, *batch_queue))
    stop = threading.Event()
    os_signal.signal(os_signal.SIGTERM, lambda *_: stop.set())
    os_signal.signal(os_signal.SIGINT, lambda *_: stop.set())
    running: list[EngineWorker] = []
    handoff = TaskHandoff() if engine and task_queues and task_handoff else None
    if engine:
        running.append(
            _engine_worker(
                settings,
                layout,
                found,
                worker_id=worker_id,
                build_id=build_id,
                standby=standby,
                early_dispatch=early_dispatch,
                handoff=handoff,
                retention_hours=retention_hours,
                state_dir=state_dir,
                cache_size=cache_size,
                store_cache_mb=store_cache_mb,
                metrics=metrics,
            ).start()
        )
        log.info("engine worker running workflows %s", found.workflows.describe())
    activity_workers = [
        _activity_worker(
            settings, layout, found, queue,
            max_in_flight=max_in_flight, worker_id=worker_id, metrics=metrics, handoff=handoff,
        )
        for queue in task_queues
    ]
    batch_workers = _batch_workers(settings, layout, worker_id) if batch_queue else []
    projectors: list[BackgroundRunner] = []
    if projector:
        from orchestrator.visibility.projector import Projector

        projectors.append(Projector(settings.database_url, settings.kafka_config(), layout).start())
        log.info("visibility projector running")
    settle_heap()
    click.echo("ready", err=True)
    failed: BaseException | None = None
    while failed is None and not stop.wait(0.5):
        errors = [w.error for w in running] + [w.error for w in activity_workers]
        errors += [p.error for p in projectors] + [b.error for b in batch_workers]
        failed = next((e for e in errors if e is not None), None)
        stalled = max((w.processor.stalled_for() for w in running), default=0.0)
        if watchdog_seconds and stalled > watchdog_seconds:
            # a thread stuck inside librdkafka cannot be interrupted: crash-only
            log.critical("engine cycle stuck for %.0fs; exiting so a restart fences it", stalled)
            faulthandler.dump_traceback(sys.stderr, all_threads=True)  # where it was stuck
            os._exit(WATCHDOG_EXIT)
    _shut_down(activity_workers, batch_workers, running, projectors)
    close_metrics()
    if failed is not None:
        log.error("worker failed: %s", failed)
        sys.exit(1)


def _shut_down(
    activity_workers: list[ActivityWorker],
    batch_workers: list[BatchWorker],
    running: list[EngineWorker],
    projectors: list[BackgroundRunner],
) -> None:
    from orchestrator.worker.exit_deadline import STOP_DEADLINE_S, exit_after

    exit_after(STOP_DEADLINE_S, WATCHDOG_EXIT)  # whatever this stop finds stuck
    for aw in activity_workers:
        aw.stop()  # stop fetching, drain in-flight attempts, commit
    for b in batch_workers:  # before the engine: their pages wait for its answers
        b.stop()
    for w in running:
        w.stop()
    for p in projectors:
        p.stop()
    for aw in activity_workers:
        aw.join(60)


def _batch_workers(
    settings: Settings, layout: TopicLayout, worker_id: str | None
) -> list[BatchWorker]:
    """The batch jobs' activity worker beside an engine (docs/batch.md), started; none
    without the ``postgres`` extra (batches page through the visibility store)."""
    try:
        from orchestrator.worker.batch_worker import BatchWorker
    except ModuleNotFoundError as exc:
        log.warning("no batch jobs here: %s (pip install 'saga-orchestrator[postgres]')", exc)
        return []

    started = BatchWorker(
        settings.kafka_config(), layout, settings.database_url, worker_id=worker_id
    ).start()
    log.info("batch worker on queue %r", started.activity_worker.task_queue)
    return [started]


def _discovered(modules: tuple[str, ...], *, workflows: bool, activities: bool) -> Discovered:
    """What ``modules`` define, checked before anything starts (a worker refused later
    would leave its group, and its shards, behind it)."""
    from orchestrator.worker.discovery import discover

    try:
        found = discover(modules)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import it: {exc}", param_hint="--sagas") from exc
    if workflows and not found.workflows:
        raise click.UsageError(f"no @workflow.defn found in {', '.join(modules)}")
    if activities and not found.activities:
        raise click.UsageError(f"no @activity.defn found in {', '.join(modules)}")
    found.activities.extend(_operation_activities())
    return found


def _metrics_endpoint(host: str, port: int) -> tuple[SagaMetrics | None, Callable[[], None]]:
    """The process's metrics, and what stops their endpoint; no metrics when ``port`` is 0."""
    from orchestrator.metrics import SagaMetrics, serve

    if not port:
        return None, lambda: None
    metrics = SagaMetrics()
    try:
        return metrics, serve(metrics.registry, host, port).close
    except OSError as exc:
        raise click.UsageError(f"cannot serve metrics on {host}:{port}: {exc}") from exc


def _activity_worker(
    settings: Settings,
    layout: TopicLayout,
    found: Discovered,
    queue: str,
    *,
    max_in_flight: int,
    worker_id: str | None,
    metrics: SagaMetrics | None,
    handoff: TaskHandoff | None,
) -> ActivityWorker:
    """A started activity worker of ``queue``, as ``saga worker --task-queue`` runs it."""
    from orchestrator.worker.activity_worker import ActivityWorker, ActivityWorkerOptions
    from orchestrator.worker.membership import instance_id

    started = ActivityWorker(
        settings.kafka_config(),
        queue,
        found.activities,
        layout=layout,
        options=ActivityWorkerOptions(
            max_in_flight=max_in_flight,
            group_instance_id=instance_id(worker_id, f"tasks.{queue}"),
        ),
        metrics=metrics.activities if metrics is not None else None,
        handoff=handoff,
    ).start()
    log.info("activity worker on queue %r running %d activities", queue, len(found.activities))
    return started


def _engine_worker(
    settings: Settings,
    layout: TopicLayout,
    found: Discovered,
    *,
    worker_id: str | None,
    build_id: str,
    standby: bool,
    early_dispatch: bool = True,
    handoff: TaskHandoff | None = None,
    retention_hours: float,
    state_dir: Path,
    cache_size: int,
    store_cache_mb: int,
    metrics: SagaMetrics | None,
) -> EngineWorker:
    """The engine worker ``saga worker`` runs, from its options."""
    from orchestrator.worker.engine_worker import EngineWorker
    from orchestrator.worker.shard.engine_shard import ShardTuning
    from orchestrator.worker.shard.processor import ProcessorOptions
    from orchestrator.worker.shard.store import StoreOptions

    options = ProcessorOptions(standby=standby, early_dispatch=early_dispatch)
    if worker_id:
        options = dataclasses.replace(options, worker_id=worker_id)
    return EngineWorker(
        settings.kafka_config(),
        layout,
        found.workflows,
        build_id=build_id,
        options=options,
        activities=found.activities,
        retention_ms=max(1, round(retention_hours * 3_600_000)),
        store=StoreOptions(state_dir, block_cache_bytes=store_cache_mb << 20),
        tuning=ShardTuning(cache_size=cache_size),
        metrics=metrics.engine if metrics is not None else None,
        flow_control=True,
        task_token_key=settings.task_token_key.encode() or None,
        handoff=handoff,
    )


@main.group()
def dlq() -> None:
    """Inspect and redrive dead letters (<prefix>.dlq)."""


@dlq.command("show")
@click.option("--from-offset", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
def dlq_show(from_offset: int, limit: int) -> None:
    """Print dead letters with their reason and origin."""
    from orchestrator.log.dlq_tools import DeadLettersNotReadError, read_dead_letters

    settings = Settings.from_env()
    letters = read_dead_letters(settings.kafka_config(), _layout(settings).dlq, from_offset)
    try:
        for letter in itertools.islice(letters, limit):
            key = letter.key.decode(errors="replace") if letter.key else "-"
            click.echo(
                f"{letter.offset}\t{letter.source_topic}/{letter.source_partition}/"
                f"{letter.source_offset}\tkey={key}\t{letter.reason}"
            )
    except DeadLettersNotReadError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        letters.close()


@dlq.command("redrive")
@click.option("--reason", "reason_pattern", default="", help="Regex the reason must match.")
@click.option("--from-offset", default=0, show_default=True)
@click.option("--to-offset", default=None, type=int, help="Exclusive end offset.")
def dlq_redrive(reason_pattern: str, from_offset: int, to_offset: int | None) -> None:
    """Send matching dead letters back to where they came from."""
    from orchestrator.log.dlq_tools import DeadLettersNotReadError, redrive

    try:
        re.compile(reason_pattern)
    except re.error as exc:
        raise click.BadParameter(
            f"not a regular expression: {exc}", param_hint="--reason"
        ) from None
    settings = Settings.from_env()
    try:
        sent = redrive(
            settings.kafka_config(),
            _layout(settings).dlq,
            reason_pattern=reason_pattern,
            start_offset=from_offset,
            end_offset=to_offset,
        )
    except DeadLettersNotReadError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"redriven: {sent}")


from orchestrator.migration.cli import register as _register_migration  # noqa: E402

_register_migration(main)

from orchestrator.visibility.cli import register as _register_visibility  # noqa: E402

_register_visibility(main)

from orchestrator.http.cli import register as _register_http  # noqa: E402

_register_http(main)

from orchestrator.dev.cli import register as _register_dev  # noqa: E402

_register_dev(main)

from orchestrator.schedules.cli import register as _register_schedules  # noqa: E402

_register_schedules(main)

from orchestrator.activity_cli import register as _register_activity  # noqa: E402

_register_activity(main)


def _client() -> Any:
    from orchestrator.client import Client

    settings = Settings.from_env()
    return Client(settings, layout=_layout(settings))


def _json_arg(text: str | None) -> Any:
    try:
        return json.loads(text) if text is not None else None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from exc


@main.command()
@click.argument("workflow_type")
@click.option("--id", "workflow_id", required=True, help="Workflow id (the business key).")
@click.option("--task-queue", required=True)
@click.option("--input", "input_json", default=None, help="The workflow's input, as JSON.")
@click.option("--args", "args_json", default=None, help="Several arguments, as a JSON list.")
@click.option(
    "--id-reuse-policy",
    type=click.Choice([p.name for p in IdReusePolicy], case_sensitive=False),
    default=IdReusePolicy.ALLOW_DUPLICATE.name,
    show_default=True,
    help="What a start of an id whose last run closed (or runs) does.",
)
@click.option("--search-attr", "search_attrs", multiple=True, metavar="KEY=VALUE",
              help="A search attribute (repeatable); JSON if it parses, else a string.")
@click.option("--memo", "memo_terms", multiple=True, metavar="KEY=VALUE",
              help="A memo entry (repeatable); JSON if it parses, else a string.")
@click.option("--execution-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds after which the run is cancelled and ends TIMED_OUT.")
@click.option("--priority", type=int, default=0, show_default=True,
              help="The run's priority on flow-controlled queues (higher first); its "
              "activities and children that name none take it.")
@click.option("--fairness-key", default="",
              help="The run's fairness key on flow-controlled queues (e.g. a tenant), "
              "taken as --priority is.")
@click.option("--wait/--no-wait", default=False, help="Wait for the outcome and print it.")
def start(
    workflow_type: str,
    *,
    workflow_id: str,
    task_queue: str,
    input_json: str | None,
    args_json: str | None,
    id_reuse_policy: str,
    search_attrs: tuple[str, ...],
    memo_terms: tuple[str, ...],
    execution_timeout: float | None,
    priority: int,
    fairness_key: str,
    wait: bool,
) -> None:
    """Start a workflow (a no-op if one with this id is already running)."""
    from orchestrator.cli_ops import json_list, key_values

    if input_json is not None and args_json is not None:
        raise click.UsageError("give the input as --input or as --args, not both")
    inputs: dict[str, Any] = {}  # neither: the workflow is started with no argument
    if args_json is not None:
        inputs["args"] = json_list(args_json)
    elif input_json is not None:
        inputs["input"] = _json_arg(input_json)
    policy = IdReusePolicy[id_reuse_policy.upper()]
    options: dict[str, Any] = {
        "id": workflow_id,
        "task_queue": task_queue,
        "id_reuse_policy": policy,
        # the shard's answer says whether the policy let the run start (else a run that
        # was refused would look started), and --wait must not take an older run's result
        "wait_started": 30.0 if wait or policy is not IdReusePolicy.ALLOW_DUPLICATE else None,
        "search_attributes": key_values(search_attrs, "--search-attr") or None,
        "memo": key_values(memo_terms, "--memo") or None,
        "execution_timeout": timedelta(seconds=execution_timeout)
        if execution_timeout is not None
        else None,
        "priority": priority,
        "fairness_key": fairness_key,
    }
    client = _client()
    try:
        handle = client.start(workflow_type, **inputs, **options)
        click.echo(f"started {workflow_id}")
        if wait:
            try:
                result = handle.result()
            except WorkflowFailedError as exc:
                # the run's own failure is the answer, not a bug in the CLI: no traceback
                raise click.ClickException(failed_run_text(workflow_id, exc)) from exc
            click.echo(json.dumps(result, default=jsonable))
    finally:
        client.close()


_WAIT_HELP = "Seconds to wait for the shard to take it (0: send and return)."


@main.command("signal")
@click.argument("workflow_id")
@click.argument("name")
@click.option("--args", "args_json", default="[]", help="Signal arguments, a JSON list.")
@click.option("--wait", default=10.0, show_default=True, help=_WAIT_HELP)
@click.option("--request-id", default=None,
              help="The signal's request id: a run applies one signal per id, so a re-run "
              "with the same id is acknowledged and not applied again (default: a fresh id).")
def signal_command(
    workflow_id: str, name: str, args_json: str, wait: float, request_id: str | None
) -> None:
    """Send a signal to a running workflow."""
    from orchestrator.cli_ops import json_list

    args = json_list(args_json)
    client = _client()
    try:
        client.get_handle(workflow_id).signal(
            name, *args, wait=wait or None, request_id=request_id
        )
    finally:
        client.close()


@main.command()
@click.argument("workflow_id")
@click.option("--reason", default="")
@click.option("--wait", default=10.0, show_default=True, help=_WAIT_HELP)
def cancel(workflow_id: str, reason: str, wait: float) -> None:
    """Ask a workflow to cancel (it compensates, then ends CANCELLED)."""
    client = _client()
    try:
        client.get_handle(workflow_id).cancel(reason, wait=wait or None)
    finally:
        client.close()


@main.command()
@click.argument("workflow_id")
@click.option("--reason", required=True)
@click.option("--wait", default=10.0, show_default=True, help=_WAIT_HELP)
def terminate(workflow_id: str, reason: str, wait: float) -> None:
    """End a workflow at once, running no more of its code (no compensation)."""
    client = _client()
    try:
        client.get_handle(workflow_id).terminate(reason, wait=wait or None)
    finally:
        client.close()


def _operator(given: str | None) -> str:
    """Who runs the command: ``--operator``, else the local user name and host."""
    if given:
        return given
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (a bare container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@main.command()
@click.argument("workflow_id")
@click.option("--reason", default="", help="Why, recorded in the run's history.")
@click.option("--operator", default=None, help="Who asks (default: user@host).")
@click.option("--wait", default=10.0, show_default=True, help=_WAIT_HELP)
def pause(workflow_id: str, reason: str, operator: str | None, wait: float) -> None:
    """Pause a running workflow: it decides nothing until unpaused; signals, activity
    results and timers that come meanwhile are recorded and applied on unpause."""
    client = _client()
    try:
        client.get_handle(workflow_id).pause(
            reason, operator=_operator(operator), wait=wait or None
        )
    finally:  # a refusal or no answer in time: reported with a hint (cli_errors.py)
        client.close()
    click.echo(f"paused {workflow_id}" if wait else f"pause of {workflow_id} sent")


@main.command()
@click.argument("workflow_id")
@click.option("--reason", default="", help="Why, recorded in the run's history.")
@click.option("--operator", default=None, help="Who asks (default: user@host).")
@click.option("--wait", default=10.0, show_default=True, help=_WAIT_HELP)
def unpause(workflow_id: str, reason: str, operator: str | None, wait: float) -> None:
    """Unpause a paused workflow: what it held is applied, in order, and it goes on."""
    client = _client()
    try:
        client.get_handle(workflow_id).unpause(
            reason, operator=_operator(operator), wait=wait or None
        )
    finally:  # a refusal or no answer in time: reported with a hint (cli_errors.py)
        client.close()
    click.echo(f"unpaused {workflow_id}" if wait else f"unpause of {workflow_id} sent")


@main.command()
@click.argument("workflow_id", required=False)
@click.option(
    "--to-event",
    "event_seq",
    type=int,
    default=None,
    help="Reset point: the new run starts with events 1..N (see `saga history`). "
    "Default: the last decision point, just before the run's latest decisions.",
)
@click.option(
    "--bad-build",
    default=None,
    help="Reset to just before the first decision a worker of this build made; "
    "without WORKFLOW_ID, every run the visibility store lists for the build.",
)
@click.option(
    "--exclude-signals", is_flag=True, help="Do not deliver the signals received after the point."
)
@click.option("--dry-run", is_flag=True, help="With --bad-build: list the runs, reset nothing.")
@click.option("--reason", required=True, help="Why, recorded in both runs.")
@click.option("--operator", default=None, help="Who asks (default: user@host).")
@click.option("--wait", default=30.0, show_default=True, help="Seconds to wait for the reset.")
@click.option("--rate", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="With --bad-build: resets per second at most (0: unpaced).")
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="With --bad-build: show the batch's progress until it ends.")
@click.option("--database-url", default=None, help="PostgreSQL DSN (default: $DATABASE_URL).")
def reset(  # noqa: PLR0917 - click passes the options by position
    workflow_id: str | None,
    event_seq: int | None,
    bad_build: str | None,
    exclude_signals: bool,
    dry_run: bool,
    reason: str,
    operator: str | None,
    wait: float,
    rate: float,
    follow: bool,
    database_url: str | None,
) -> None:
    """Reset a workflow's current run to a point: a new run replays its history up to
    there with the deployed code and goes on; an open run is terminated for it.
    ``--bad-build B`` without an id starts a batch job (`saga batch`) that resets every
    run build B decided for."""
    if event_seq is not None and bad_build is not None:
        raise click.UsageError("give either --to-event or --bad-build, not both")
    if workflow_id is not None:
        _refuse_given(("dry_run", "rate", "follow", "database_url"), "with a WORKFLOW_ID: "
                      "they apply to a build's runs (--bad-build without a WORKFLOW_ID)")
    if workflow_id is None:
        if bad_build is None:
            raise click.UsageError("give a WORKFLOW_ID, or --bad-build to reset a build's runs")
        _reset_bad_build(
            bad_build, reason, _operator(operator), rate, database_url, dry_run, follow,
            exclude_signals=exclude_signals,
        )
        return
    client = _client()
    try:
        new_run = client.get_handle(workflow_id).reset(
            reason,
            event_seq=event_seq,
            before_build=bad_build,
            exclude_signals=exclude_signals,
            operator=_operator(operator),
            timeout=wait,
        )
    finally:  # a refusal (bad point, no such run) or no answer: reported with a hint
        client.close()
    click.echo(f"reset {workflow_id}: new run {new_run}")


def _refuse_given(names: tuple[str, ...], why: str) -> None:
    """A UsageError if any of the current command's options ``names`` was given."""
    ctx = click.get_current_context()
    given = [
        f"--{name.replace('_', '-')}"
        for name in names
        if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)
    ]
    if given:
        raise click.UsageError(f"{', '.join(given)} cannot be given {why}")


def _reset_bad_build(  # noqa: PLR0917 - the command's options, passed on
    build_id: str,
    reason: str,
    operator: str,
    rate: float,
    database_url: str | None,
    dry_run: bool,
    follow: bool,
    *,
    exclude_signals: bool = False,
) -> None:
    """A batch job (docs/batch.md) that resets every run of ``build_id`` to just before
    the build's first decision in it, by run id: a run no longer current is skipped."""
    from orchestrator.batch.cli import bad_build_batch_id, dry_run_rows, start_and_report
    from orchestrator.batch.spec import BatchFilter, BatchOp, BatchOperation

    filter_ = BatchFilter(build_id=build_id)
    if dry_run:
        dsn = database_url or Settings.from_env().database_url
        rows = dry_run_rows(dsn, filter_)
        for row in rows:
            click.echo(f"would reset {row.workflow_id} run {row.run_id} ({row.status})")
        click.echo(f"{len(rows)} run(s) of build {build_id}")
        return
    operation = BatchOperation(BatchOp.RESET, reason=reason, operator=operator,
                               bad_build=build_id, exclude_signals=exclude_signals)
    batch_id = bad_build_batch_id(build_id)
    done = start_and_report(batch_id, operation, filter_, rate=rate, page_size=100,
                            follow=follow)
    if done is None:
        click.echo(f"follow it with: saga batch describe {batch_id} --follow")
        return
    t = done.totals
    click.echo(f"build {build_id}: {t.done} reset, {t.skipped} skipped, {t.failed} failed "
               f"(batch {batch_id}, {done.status.value})")


@main.command()
@click.argument("workflow_id")
def describe(workflow_id: str) -> None:
    """Print a workflow's latest status, with an open run's unfinished activities
    (`paused` when an operator paused the type: the attempt is held) and, for those,
    the pause's reason, operator and time."""
    from orchestrator.client._pauses import waiting_on_paused

    client = _client()
    try:
        described = client.get_handle(workflow_id).describe()
        out = dataclasses.asdict(described)
        paused = []
        if described.is_open:
            try:
                paused = client.paused_activity_types()
            except RuntimeError as exc:  # e.g. a deployment without the pauses topic
                log.debug("paused activity types unknown: %s", exc)
        if paused:
            waiting = waiting_on_paused(described.pending_activities, paused)
            if waiting:
                out["waiting_on_paused_activity_types"] = waiting
        click.echo(json.dumps(out, default=jsonable, indent=2))
    finally:
        client.close()


@main.command()
@click.argument("workflow_id")
@click.option("--run-id", default=None)
@click.option("--json", "as_json", is_flag=True, help="Export as JSON (replayable).")
def history(workflow_id: str, run_id: str | None, as_json: bool) -> None:
    """Print a run's history events (the latest run by default)."""
    from orchestrator.engine.replayer import history_to_json

    client = _client()
    try:
        found = client.fetch_history(workflow_id, run_id)
    finally:
        client.close()
    if as_json:
        click.echo(history_to_json(found.events))
        return
    if found.snapshot is not None:
        snap = found.snapshot
        parked = f" PARKED: {snap.parked}" if snap.parked else ""
        if snap.paused is not None:
            parked += f" PAUSED by {snap.paused.operator}: {snap.paused.reason}"
        click.echo(f"{workflow_id} run {snap.run_id} {snap.status.name}{parked}")
    activity_names: dict[int, str] = {}
    for event in found.events:
        click.echo(history_line(event, activity_names))


@main.command()
@click.argument("workflow_id")
@click.option(
    "--sagas",
    "modules",
    multiple=True,
    required=True,
    help="Module(s) with the current workflow code.",
)
@click.option("--run-id", default=None)
def replay(workflow_id: str, modules: tuple[str, ...], run_id: str | None) -> None:
    """Replay a run's recorded history against the current code (exit 1 on a mismatch)."""
    from orchestrator.engine.replayer import Replayer
    from orchestrator.exceptions import NonDeterminismError
    from orchestrator.worker.discovery import discover

    client = _client()
    try:
        found = client.fetch_history(workflow_id, run_id)
    finally:
        client.close()
    if not found.events:
        raise click.ClickException(f"no history for {workflow_id!r} (run {found.run_id})")
    from orchestrator.batch.spec import BATCH_WORKFLOW
    from orchestrator.batch.workflow import BatchWorkflow
    from orchestrator.schedules.workflow import SCHEDULE_WORKFLOW, ScheduleWorkflow

    workflows = discover(modules).workflows
    # schedule and batch runs replay without naming a module: every engine hosts them
    builtin = {SCHEDULE_WORKFLOW: ScheduleWorkflow, BATCH_WORKFLOW: BatchWorkflow}
    replayer = Replayer(workflows=[*workflows.all(), *(
        cls for name, cls in builtin.items() if name not in workflows)])
    try:
        result = replayer.replay(found.events)
    except NonDeterminismError as exc:
        click.echo(f"NOT deterministic: {exc}", err=True)
        sys.exit(1)
    click.echo(f"replayed {result.events} events of {result.workflow_type}: {result.status.name}")


from orchestrator.cli_ops import register as _register_ops  # noqa: E402

_register_ops(main, _client, _operator)

from orchestrator.batch.cli import register as _register_batch  # noqa: E402

_register_batch(main, _operator)

from orchestrator.cli_flow import register as _register_flow  # noqa: E402

_register_flow(main, _layout)


if __name__ == "__main__":
    main()
