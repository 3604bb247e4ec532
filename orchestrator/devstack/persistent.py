"""Kafka and PostgreSQL for ``saga dev``: local servers whose data outlives a restart.

The test fixtures' servers (:mod:`kafka_local`, :mod:`postgres_local`) are throwaway:
fresh ports, a fresh data folder, deleted on stop. ``saga dev`` keeps one folder
instead, so every run survives a restart: the broker is formatted once (its cluster id
is kept in its data folder), PostgreSQL is initialised once, and the ports chosen on
the first start are reused while they are free (``ports.json``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from orchestrator.devstack.kafka_local import LocalKafkaNode, _node_config, new_cluster_id
from orchestrator.devstack.postgres_local import LocalPostgres
from orchestrator.devstack.processes import free_port

__all__ = ["PortBook", "persistent_kafka", "persistent_postgres"]


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as the servers bind: a port whose old connections linger in TIME_WAIT is free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PortBook:
    """Ports by name, kept in a JSON file: the same port on every start while it is free."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._ports: dict[str, int] = json.loads(path.read_text())
        except (OSError, ValueError):
            self._ports = {}

    def port(self, name: str) -> int:
        """The port kept for ``name``, or a new free one (then kept)."""
        known = self._ports.get(name)
        if known is None or not _is_free(known):
            known = free_port()
            self._ports[name] = known
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self._ports, indent=2, sort_keys=True))
        return known


@contextlib.contextmanager
def persistent_kafka(home: Path, ports: PortBook) -> Iterator[str]:
    """A one-node KRaft broker whose data lives in ``home``; yields its bootstrap address."""
    node = LocalKafkaNode(
        node_id=1,
        broker_port=ports.port("kafka"),
        controller_port=ports.port("kafka-controller"),
        home=home,
    )
    home.mkdir(parents=True, exist_ok=True)
    voters = f"1@127.0.0.1:{node.controller_port}"
    node.config_path.write_text(_node_config(node, voters, 1))
    if not (node.data_dir / "meta.properties").exists():
        node.format(new_cluster_id())
    node.start()
    try:
        node.wait_ready(120.0)
        yield node.address
    finally:
        node.stop()


def _others_can_enter(path: Path) -> bool:
    """True when every folder above ``path`` lets other accounts pass (``o+x``)."""
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.resolve().parents)


def postgres_home(workdir: Path) -> Path:
    """Where the PostgreSQL data for ``workdir`` lives.

    As root the server runs as the ``postgres`` account, which cannot enter a folder
    under ``/root``; then the data goes under ``/var/lib/saga-orchestrator`` (one folder
    per state folder) and ``workdir`` becomes a symlink to it.
    """
    if os.geteuid() != 0 or workdir.is_symlink() or _others_can_enter(workdir.parent):
        return workdir
    digest = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:12]
    target = Path("/var/lib/saga-orchestrator") / f"dev-{digest}"
    target.mkdir(parents=True, exist_ok=True)
    target.parent.chmod(0o755)
    workdir.parent.mkdir(parents=True, exist_ok=True)
    workdir.symlink_to(target, target_is_directory=True)
    return target


@contextlib.contextmanager
def persistent_postgres(workdir: Path, ports: PortBook) -> Iterator[str]:
    """A PostgreSQL server whose data lives in ``workdir``; yields its DSN."""
    workdir.parent.mkdir(parents=True, exist_ok=True)
    home = postgres_home(workdir).resolve()
    home.mkdir(parents=True, exist_ok=True)
    server = LocalPostgres(workdir=home, port=ports.port("postgres"))
    server.start()
    try:
        yield server.dsn
    finally:
        server.stop()  # not close(): that deletes the data
