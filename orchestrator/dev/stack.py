"""Run the dev stack's processes: one ``saga worker`` (engine, activities, projector),
one ``saga http`` (API and console) and a ``saga dispatcher`` per flow-controlled task
queue, each a child process of ``saga dev`` with its log in ``<state>/logs``."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from orchestrator.devstack.processes import spawn, stop_process, tail

if TYPE_CHECKING:
    from orchestrator.dev.dispatchers import DevDispatchers

__all__ = ["DevLayout", "DevProcesses", "admin_token"]


@dataclass(frozen=True)
class DevLayout:
    """Where ``saga dev`` keeps everything under its state folder."""

    root: Path

    @property
    def kafka(self) -> Path:
        return self.root / "kafka"

    @property
    def postgres(self) -> Path:
        return self.root / "postgres"

    @property
    def engine(self) -> Path:
        return self.root / "engine"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def ports(self) -> Path:
        return self.root / "ports.json"

    @property
    def token_file(self) -> Path:
        return self.root / "http-token"


def admin_token(path: Path) -> Path:
    """Create ``path`` with a random admin token (mode 600) unless it exists; return it."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    return path


@dataclass
class DevProcesses:
    """The worker, the HTTP server and the dispatchers, started and stopped together."""

    layout: DevLayout
    modules: tuple[str, ...]
    task_queues: tuple[str, ...]
    env: dict[str, str]
    http_host: str
    http_port: int
    build_id: str = ""
    worker: subprocess.Popen[bytes] | None = field(default=None, init=False)
    http: subprocess.Popen[bytes] | None = field(default=None, init=False)
    bank: subprocess.Popen[bytes] | None = field(default=None, init=False)
    dispatchers: DevDispatchers | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        host = f"[{self.http_host}]" if ":" in self.http_host else self.http_host  # IPv6
        return f"http://{host}:{self.http_port}"

    def _saga(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "orchestrator.cli", *args]
        return spawn(argv, self.layout.logs / f"{name}.log", env=self.env)

    def start_bank(self, port: int) -> str:
        """Start the demo bank (``orchestrator.devstack.bank``) on the dev database; its
        URL, also given to the worker as ``BANK_URL``."""
        dsn = self.env["DATABASE_URL"]
        argv = [sys.executable, "-m", "orchestrator.devstack.bank", "--dsn", dsn]
        self.bank = spawn([*argv, "--port", str(port)], self.layout.logs / "bank.log", env=self.env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _answers(f"{url}/health"):
            if self.bank.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the demo bank did not start" + tail(self.layout.logs / "bank.log")
                )
            time.sleep(0.2)
        self.env["BANK_URL"] = url
        _ensure_events_topic(self.env)
        return url

    def start_worker(self) -> None:
        """Start ``saga worker`` for the modules: engine, activity workers, projector."""
        args = ["worker", "--worker-id", "dev", "--projector"]
        args += ["--state-dir", str(self.layout.engine)]
        for module in self.modules:
            args += ["--sagas", module]
        for queue in self.task_queues:
            args += ["--task-queue", queue]
        if self.build_id:
            args += ["--build-id", self.build_id]
        self.worker = self._saga("worker", args)

    def start_http(self) -> None:
        """Start ``saga http`` with the dev stack's admin token file."""
        args = ["http", "--host", self.http_host, "--port", str(self.http_port)]
        args += ["--token-file", str(self.layout.token_file)]
        self.http = self._saga("http", args)

    def start_dispatchers(self) -> list[str]:
        """Follow the flow-control configs and start a ``saga dispatcher`` for each
        queue configured; the queues started. :meth:`check_dispatchers` starts those
        configured later."""
        from orchestrator.config import Settings
        from orchestrator.dev.dispatchers import DevDispatchers
        from orchestrator.flow.configs import FlowConfigWatcher
        from orchestrator.log.topics import TopicLayout

        settings = Settings.from_env(self.env)
        layout = TopicLayout(prefix=settings.topic_prefix, shards=settings.shards)
        watcher = FlowConfigWatcher(settings.kafka_config(), layout)
        self.dispatchers = DevDispatchers(self._saga, watcher)
        return self.dispatchers.check()[0]

    def check_dispatchers(self) -> tuple[list[str], dict[str, int]]:
        """Start the dispatchers of newly configured queues (and again those that
        exited a while ago); the queues started, and the exits noticed."""
        return self.dispatchers.check() if self.dispatchers is not None else ([], {})

    def dispatcher_log(self, queue: str) -> str:
        """The last lines of ``queue``'s dispatcher log, for a report."""
        from orchestrator.dev.dispatchers import DevDispatchers

        return tail(self.layout.logs / f"{DevDispatchers.log_name(queue)}.log")

    def restart_worker(self) -> None:
        """Stop the worker and start it again (new code for the modules)."""
        if self.worker is not None:
            stop_process(self.worker, grace_s=30)
        self.start_worker()

    def wait_http(self, timeout_s: float = 60.0) -> None:
        """Block until ``/healthz`` answers 200 (the server reached Kafka)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_http()
            if _answers(f"{self.url}/healthz"):
                return
            time.sleep(0.2)
        raise TimeoutError(f"saga http did not answer at {self.url}" + self.http_log())

    def check_http(self) -> None:
        """Raise when the HTTP server has exited."""
        if self.http is not None and self.http.poll() is not None:
            raise RuntimeError(f"saga http exited with {self.http.returncode}" + self.http_log())

    def http_log(self) -> str:
        return tail(self.layout.logs / "http.log")

    def worker_exited(self) -> int | None:
        """The worker's exit status once it has exited, else None."""
        return self.worker.poll() if self.worker is not None else None

    def worker_log(self) -> str:
        return tail(self.layout.logs / "worker.log")

    def stop(self) -> None:
        """Stop the HTTP server, the dispatchers, then the worker (it drains in-flight
        activities), then the bank."""
        if self.http is not None:
            stop_process(self.http, grace_s=30)
        if self.dispatchers is not None:
            self.dispatchers.stop()
        for proc in (self.worker, self.bank):
            if proc is not None:
                stop_process(proc, grace_s=30)


def _ensure_events_topic(env: dict[str, str]) -> None:
    """Create ``<prefix>.payments.events``, where the payments saga announces transfers
    (the broker creates no topic by itself); nothing when it exists."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    from orchestrator.config import Settings

    settings = Settings.from_env(env)
    name = f"{settings.topic_prefix}.payments.events"
    admin = AdminClient(settings.kafka_config())
    try:
        admin.create_topics([NewTopic(name, settings.shards, -1)])[name].result(30)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def _answers(url: str) -> bool:
    """True when ``GET url`` answers 200."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
