"""Real Apache Kafka (KRaft) started from its own jars, on loopback, no Docker.

The jars are resolved once by Maven from Maven Central (``compose/local/pom.xml``)
into a cache shared by every checkout. Each node runs combined broker+controller
on free loopback ports with its data in a temporary folder; logs are kept beside
the data for debugging. A node can be killed with SIGKILL and restarted with the
same ports and data, which is what the fault tests need.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from orchestrator.devstack.paths import kafka_libs_dir, local_infra_dir
from orchestrator.devstack.processes import free_port, spawn, stop_process, tail, wait_until

_READY_MARKER = "Kafka Server started"
_PORT_IN_USE = "Address already in use"
_JVM_OPTS = ["-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]


class KafkaSetupError(RuntimeError):
    """The local broker cannot be started; the message says what to install or fix."""


def ensure_kafka_jars() -> Path:
    """Return the folder of Kafka's runtime jars, resolving them with Maven if absent."""
    libs = kafka_libs_dir()
    if (libs / ".complete").exists():
        return libs
    if shutil.which("mvn") is None:
        raise KafkaSetupError(
            "Maven is needed to fetch Apache Kafka's jars from Maven Central: "
            "apt-get install maven, or point KAFKA_BOOTSTRAP_SERVERS at a running cluster"
        )
    shutil.rmtree(libs, ignore_errors=True)
    libs.mkdir(parents=True)
    result = subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        cwd=local_infra_dir(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise KafkaSetupError(
            f"Maven could not resolve Kafka's jars:\n{result.stdout}{result.stderr}"
        )
    (libs / ".complete").touch()
    return libs


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise KafkaSetupError(
            "Java 17+ is needed to run Kafka locally: apt-get install openjdk-17-jre-headless, "
            "or point KAFKA_BOOTSTRAP_SERVERS at a running cluster"
        )
    return java


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # the storage tool's parser reads a leading '-' as a flag
            return cid


@dataclass
class LocalKafkaNode:
    """One combined broker+controller JVM. Ports and data survive restarts."""

    node_id: int
    broker_port: int
    controller_port: int
    home: Path
    #: optional second client listener ``(listen port, advertised port)``: clients that
    #: bootstrap through a proxy on the advertised port keep talking to the proxy
    proxied: tuple[int, int] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_offset: int = field(default=0, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def config_path(self) -> Path:
        return self.home / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @property
    def proxied_address(self) -> str | None:
        """Where the proxied listener listens (the proxy forwards here), if configured."""
        return f"127.0.0.1:{self.proxied[0]}" if self.proxied is not None else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _java_argv(self, main: str, *args: str) -> list[str]:
        libs = ensure_kafka_jars()
        return [
            _java(),
            *_JVM_OPTS,
            f"-Dkafka.logs.dir={self.home}",
            f"-Dlog4j2.configurationFile={local_infra_dir() / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def format(self, cluster_id: str) -> None:
        argv = self._java_argv(
            "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config_path)
        )
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaSetupError(
                f"formatting node {self.node_id} failed:\n{result.stdout}{result.stderr}"
            )

    def start(self) -> None:
        """Launch the JVM (returns at once; call :meth:`wait_ready`)."""
        if self.is_running():
            return
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = spawn(self._java_argv("kafka.Kafka", str(self.config_path)), self.log_path)

    def _new_log_text(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def port_clash(self) -> bool:
        return _PORT_IN_USE in self._new_log_text()

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Block until the broker logs that it started (a TCP connect is not enough)."""

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise KafkaSetupError(
                    f"Kafka node {self.node_id} exited with {self.proc.returncode}"
                    + tail(self.log_path)
                )
            return _READY_MARKER in self._new_log_text()

        wait_until(
            ready,
            timeout_s,
            f"Kafka node {self.node_id} to start",
            on_timeout=lambda: tail(self.log_path),
        )

    def kill(self) -> None:
        """Crash the node: SIGKILL, no controlled shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL if it hangs."""
        if self.proc is not None:
            stop_process(self.proc, grace_s=20)

    def restart(self, timeout_s: float = 90.0) -> None:
        """Start again with the same config and data (never re-formatted)."""
        self.stop()
        self.start()
        self.wait_ready(timeout_s)


def _node_config(node: LocalKafkaNode, voters: str, size: int) -> str:
    replicas = min(size, 3)
    min_isr = 2 if size >= 3 else 1
    lines = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.broker_port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(node.data_dir),
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replicas),
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "log.cleaner.threads": "1",
        "log.cleaner.dedupe.buffer.size": "4194304",
        "log.cleaner.backoff.ms": "250",
        "log.cleaner.min.cleanable.ratio": "0.01",
        "log.cleaner.min.compaction.lag.ms": "0",
        "log.segment.delete.delay.ms": "1000",
        "log.retention.check.interval.ms": "1000",
    }
    if node.proxied is not None:
        # brokers keep talking to each other directly on PLAINTEXT; only clients that
        # bootstrap on the proxy see the proxy's port in metadata
        listen, advertised = node.proxied
        lines["listeners"] += f",PROXIED://127.0.0.1:{listen}"
        lines["advertised.listeners"] += f",PROXIED://127.0.0.1:{advertised}"
        lines["listener.security.protocol.map"] += ",PROXIED:PLAINTEXT"
    if size > 1:
        lines["broker.heartbeat.interval.ms"] = "500"
        lines["broker.session.timeout.ms"] = "3000"
    return "".join(f"{key}={value}\n" for key, value in lines.items())


class LocalKafkaCluster:
    """A one- or three-node KRaft cluster on loopback, started from Kafka's jars.

    Use as a context manager; :meth:`stop` removes the data and keeps the logs
    (their folder is :attr:`workdir`).
    """

    def __init__(
        self,
        size: int = 1,
        workdir: Path | None = None,
        advertised_ports: dict[int, int] | None = None,
    ) -> None:
        """``advertised_ports`` maps node ids to a proxy port: each such node gets an
        extra client listener (see :attr:`LocalKafkaNode.proxied_address`) that
        advertises the proxy, so a client bootstrapped on the proxy sends all its
        traffic through it. Other clients and the brokers are unaffected."""
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.size = size
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="saga-kafka-"))
        self.cluster_id = new_cluster_id()
        self.advertised_ports = dict(advertised_ports or {})
        self.nodes: list[LocalKafkaNode] = []
        self.started_in_s: float | None = None

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def node(self, node_id: int) -> LocalKafkaNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id}; nodes are {[n.node_id for n in self.nodes]}")

    def _layout(self) -> None:
        self.nodes = [
            LocalKafkaNode(
                node_id=i,
                broker_port=free_port(),
                controller_port=free_port(),
                home=self.workdir / f"node-{i}",
                proxied=(
                    (free_port(), self.advertised_ports[i]) if i in self.advertised_ports else None
                ),
            )
            for i in range(1, self.size + 1)
        ]
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        for node in self.nodes:
            shutil.rmtree(node.data_dir, ignore_errors=True)
            node.home.mkdir(parents=True, exist_ok=True)
            node.config_path.write_text(_node_config(node, voters, self.size))

    def start(self, attempts: int = 3, timeout_s: float = 120.0) -> LocalKafkaCluster:
        """Format and start every node, then wait for all (no node starts without quorum)."""
        began = time.monotonic()
        ensure_kafka_jars()
        for attempt in range(1, attempts + 1):
            self._layout()
            with ThreadPoolExecutor(max_workers=self.size) as pool:
                list(pool.map(lambda n: n.format(self.cluster_id), self.nodes))
            for node in self.nodes:
                node.start()
            try:
                for node in self.nodes:
                    node.wait_ready(timeout_s)
            except (KafkaSetupError, TimeoutError):
                clash = any(node.port_clash() for node in self.nodes)
                self.stop(keep_workdir=True)
                if clash and attempt < attempts:
                    continue  # another process took a port between probe and bind
                raise
            self.started_in_s = time.monotonic() - began
            return self
        raise KafkaSetupError("unreachable: start attempts exhausted")

    def stop(self, keep_workdir: bool = True) -> None:
        """Stop every node; drop data folders, keep logs unless asked not to."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.nodes))) as pool:
            list(pool.map(lambda n: n.stop(), self.nodes))
        for node in self.nodes:
            shutil.rmtree(node.data_dir, ignore_errors=True)
        if not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalKafkaCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
