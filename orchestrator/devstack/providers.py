"""Pick where Kafka and PostgreSQL come from: environment, Docker, or local binaries.

Order, for both: an explicit address in the environment (``KAFKA_BOOTSTRAP_SERVERS``,
``DATABASE_URL``); else testcontainers when a Docker engine answers and the package's
``docker`` extra (testcontainers) is installed; else a server started here from Apache
Kafka's jars / Debian's PostgreSQL binaries.
``SAGA_DEVSTACK=local`` or ``=docker`` forces the second choice.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.devstack.kafka_local import LocalKafkaCluster
from orchestrator.devstack.postgres_local import LocalPostgres

Source = Literal["env", "docker", "local"]

# Images used when a Docker engine answers (kept in step with compose/docker-compose.yml).
KAFKA_TESTCONTAINERS_IMAGE = "confluentinc/cp-kafka:7.9.1"
POSTGRES_IMAGE = "postgres:16.6-alpine"


@dataclass
class KafkaHandle:
    """A running Kafka: where to connect, where it came from, and (local only) its nodes."""

    bootstrap_servers: str
    source: Source
    cluster: LocalKafkaCluster | None = None


@dataclass
class PostgresHandle:
    """A running PostgreSQL: its DSN, where it came from, and (local only) the server."""

    dsn: str
    source: Source
    server: LocalPostgres | None = None


def docker_available() -> bool:
    """True when Docker is to be used: forced by ``SAGA_DEVSTACK=docker``, or the
    ``docker`` extra is installed and a Docker engine answers ``GET /_ping`` within
    two seconds."""
    forced = os.environ.get("SAGA_DEVSTACK", "auto")
    if forced in ("local", "docker"):
        return forced == "docker"
    if importlib.util.find_spec("testcontainers") is None:
        return False  # without the extra, the local servers (no Docker needed)
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").partition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port or 2375))
        else:
            return False
        with sock:
            sock.settimeout(2)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            answer = sock.recv(256)
    except (OSError, ValueError):
        return False
    return answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0]


@contextlib.contextmanager
def kafka(nodes: int = 1) -> Iterator[KafkaHandle]:
    """Yield a running Kafka. ``nodes=3`` always means a local cluster with kill handles."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if nodes == 1 and external:
        yield KafkaHandle(external, "env")
        return
    if nodes == 1 and docker_available():
        with _kafka_container() as servers:
            yield KafkaHandle(servers, "docker")
        return
    with LocalKafkaCluster(nodes) as cluster:
        yield KafkaHandle(cluster.bootstrap_servers, "local", cluster)


@contextlib.contextmanager
def postgres() -> Iterator[PostgresHandle]:
    """Yield a running PostgreSQL."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield PostgresHandle(external, "env")
        return
    if docker_available():
        with _postgres_container() as dsn:
            yield PostgresHandle(dsn, "docker")
        return
    with LocalPostgres() as server:
        yield PostgresHandle(server.dsn, "local", server)


@contextlib.contextmanager
def _kafka_container() -> Iterator[str]:  # pragma: no cover - needs a Docker engine
    _require_testcontainers()
    from testcontainers.community.kafka import KafkaContainer

    container: Any = (
        KafkaContainer(KAFKA_TESTCONTAINERS_IMAGE)
        .with_kraft()
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    with container as running:
        yield str(running.get_bootstrap_server())


@contextlib.contextmanager
def _postgres_container() -> Iterator[str]:  # pragma: no cover - needs a Docker engine
    _require_testcontainers()
    from testcontainers.community.postgres import PostgresContainer

    with PostgresContainer(POSTGRES_IMAGE, driver=None) as running:
        yield str(running.get_connection_url())


def _require_testcontainers() -> None:
    if importlib.util.find_spec("testcontainers") is None:
        raise RuntimeError(
            "SAGA_DEVSTACK=docker needs testcontainers: pip install 'saga-orchestrator[docker]'"
        )
