"""``saga dev --sagas MODULE``: Kafka, PostgreSQL, a worker, the projector, the HTTP API
and the console, in one command, with every run kept in one folder."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.config import DEFAULT_HTTP_PORT
from orchestrator.devstack.paths import cache_root

if TYPE_CHECKING:  # loaded when `saga dev` runs, not by every `saga` command
    from orchestrator.dev.stack import DevProcesses
    from orchestrator.dev.watch import ModuleWatch
    from orchestrator.devstack.persistent import PortBook

__all__ = ["register"]

_POLL_S = 1.0


def _default_state_dir() -> Path:
    return cache_root() / "dev"


def _module_task_queue(module: str) -> str | None:
    """The module's ``TASK_QUEUE`` constant; None when it has none or does not import
    (the worker then reports why)."""
    try:
        found = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a broken module is the worker's to report, with its log
        return None
    queue = getattr(found, "TASK_QUEUE", None)
    return queue if isinstance(queue, str) else None


@contextlib.contextmanager
def _kafka(home: Path, ports: PortBook) -> Iterator[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` when set, else the state folder's broker."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    from orchestrator.devstack.persistent import persistent_kafka

    with persistent_kafka(home, ports) as servers:
        yield servers


@contextlib.contextmanager
def _postgres(home: Path, ports: PortBook) -> Iterator[str]:
    """``DATABASE_URL`` when set, else the state folder's PostgreSQL."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    from orchestrator.devstack.persistent import persistent_postgres

    with persistent_postgres(home, ports) as dsn:
        yield dsn


class _Stopping(BaseException):
    """Ctrl-C or SIGTERM while the stack was still starting (a BaseException, as
    KeyboardInterrupt is, so no `except Exception` on the way swallows it)."""


class _Signals:
    """Ctrl-C and SIGTERM: while starting they abort the start (everything started so
    far is stopped on the way out); once running they set :attr:`stop`."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.interrupting = True  # while starting
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, *_: object) -> None:
        self.stop.set()
        if self.interrupting:
            self.interrupting = False  # once: the way out must not be interrupted
            raise _Stopping


@click.command("dev")
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
    help="Task queues the activity worker serves [default: each module's TASK_QUEUE, "
    "else 'default'].",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=_default_state_dir,
    show_default="$SAGA_CACHE_DIR/dev or ~/.cache/saga-orchestrator/dev",
    help="Folder for Kafka's and PostgreSQL's data, the engine's stores, the logs and the "
    "admin token; a restart on it keeps every run.",
)
@click.option(
    "--http-host", default="127.0.0.1", show_default=True, help="Address the API listens on."
)
@click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_HTTP_PORT,
    show_default=True,
    help="Port of the API and the console; 0 picks a free one, kept for the next start.",
)
@click.option(
    "--demo-bank",
    is_flag=True,
    help="For sagas.payments: also run the demo bank (orchestrator.devstack.bank) on the dev "
    "database, give the worker its BANK_URL, and create the <prefix>.payments.events topic.",
)
@click.option(
    "--build-id",
    default="",
    help="Passed to the worker (saga worker --build-id): recorded on every decision, so "
    "a run can be reset to just before a build's first decision.",
)
@click.option(
    "--reload/--no-reload",
    default=True,
    show_default=True,
    help="Restart the worker when a sagas module's file changes.",
)
def dev_command(
    modules: tuple[str, ...],
    task_queues: tuple[str, ...],
    *,
    state_dir: Path,
    http_host: str,
    http_port: int,
    demo_bank: bool,
    build_id: str,
    reload: bool,
) -> None:
    """Run the whole stack for MODULE until Ctrl-C: Kafka, PostgreSQL, an engine and
    activity worker, the visibility projector, the HTTP API and the web console."""
    from orchestrator.http.auth import is_loopback

    if not is_loopback(http_host):  # refused by `saga http` too, once all had started
        raise click.BadParameter(
            f"the dev server serves plain HTTP on a loopback host only (127.0.0.1, ::1), "
            f"not {http_host!r}; run `saga http` with TLS to serve others",
            param_hint="--http-host",
        )
    if demo_bank and importlib.util.find_spec("orchestrator.devstack.bank") is None:
        raise click.UsageError(
            "--demo-bank runs the demo bank of a checkout of the repository (it backs the "
            "sagas.payments example; neither is in the wheel): run saga dev from a clone"
        )
    from orchestrator.dev.stack import DevLayout, DevProcesses, admin_token
    from orchestrator.dev.watch import ModuleWatch
    from orchestrator.devstack.persistent import PortBook

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per health check
    sys.path.insert(0, os.getcwd())  # as `python -m` does for the worker it starts
    queues = task_queues or tuple(
        dict.fromkeys(_module_task_queue(m) or "default" for m in modules)
    )
    layout = DevLayout(state_dir.resolve())
    layout.root.mkdir(parents=True, exist_ok=True)
    ports = PortBook(layout.ports)
    token_file = admin_token(layout.token_file)
    signals = _Signals()
    click.echo(f"saga dev: state in {layout.root}; starting Kafka and PostgreSQL ...")
    try:
        with (
            _kafka(layout.kafka, ports) as bootstrap,
            _postgres(layout.postgres, ports) as dsn,
        ):
            env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DATABASE_URL": dsn}
            port = http_port or ports.port("http")
            procs = DevProcesses(layout, modules, queues, env, http_host, port, build_id)
            try:
                bank = procs.start_bank(ports.port("bank")) if demo_bank else None
                procs.start_worker()
                procs.start_http()
                procs.wait_http()
                dispatched = procs.start_dispatchers()
                click.echo(
                    f"\nconsole:  {procs.url}/console/\n"
                    f"token:    the admin token for the console's login is in {token_file}\n"
                    f"logs:     {layout.logs}\n"
                    f"sagas:    {', '.join(modules)} (task queues: {', '.join(queues)})\n"
                    f"dispatch: {', '.join(dispatched) or 'no flow-controlled queue'} "
                    "(queues put under flow control later get a dispatcher too)\n\n"
                    f"export KAFKA_BOOTSTRAP_SERVERS={bootstrap}\n"
                    f"export DATABASE_URL={dsn}\n"
                    + (f"export BANK_URL={bank}\n" if bank else "")
                    + "\n"
                    "Ctrl-C stops everything; the runs stay in the state folder.",
                )
                signals.interrupting = False
                if not signals.stop.is_set():
                    _supervise(procs, ModuleWatch(modules) if reload else None, signals.stop)
            finally:
                signals.interrupting = False  # a second Ctrl-C does not interrupt the stop
                click.echo("saga dev: stopping ...")
                procs.stop()
    except _Stopping:
        pass  # interrupted while starting; what had started is stopped
    click.echo("saga dev: stopped")


def _supervise(procs: DevProcesses, watch: ModuleWatch | None, stop: threading.Event) -> None:
    """Until ``stop``: restart the worker when the modules change; report a worker that
    exits (it is started again on the next change); start a dispatcher for each queue
    put under flow control; fail when the HTTP server exits."""
    reported = False
    while not stop.wait(_POLL_S):
        procs.check_http()
        _check_dispatchers(procs)
        changed = watch.changed() if watch is not None else []
        if changed:
            click.echo(f"saga dev: {', '.join(map(str, changed))} changed; restarting the worker")
            procs.restart_worker()
            reported = False
            continue
        status = procs.worker_exited()
        if status is not None and not reported:
            click.echo(
                f"saga dev: the worker exited with {status}"
                + procs.worker_log()
                + (
                    "\nsaga dev: fix the module; the worker starts again when it changes"
                    if watch is not None
                    else ""
                ),
                err=True,
            )
            reported = True


def _check_dispatchers(procs: DevProcesses) -> None:
    started, exited = procs.check_dispatchers()
    for queue, status in exited.items():
        click.echo(
            f"saga dev: the dispatcher of {queue} exited with {status}"
            + procs.dispatcher_log(queue)
            + "\nsaga dev: it starts again in a few seconds",
            err=True,
        )
    for queue in started:
        click.echo(f"saga dev: {queue} is under flow control; started its dispatcher")


def register(main: click.Group) -> None:
    """Add ``saga dev`` to the CLI."""
    main.add_command(dev_command)
