"""``python -m orchestrator.devstack {jars,up,smoke}``: the development stack from the shell."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from orchestrator.devstack import providers
from orchestrator.devstack.kafka_local import ensure_kafka_jars


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.devstack")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("jars", help="resolve Apache Kafka's jars from Maven Central into the cache")
    up = sub.add_parser(
        "up", help="run Kafka and PostgreSQL until Ctrl-C, printing their addresses"
    )
    up.add_argument("--kafka-nodes", type=int, default=1, choices=(1, 3))
    sub.add_parser("smoke", help="start the stack, send records through a transaction, report")
    args = parser.parse_args(argv)

    if args.command == "jars":
        print(ensure_kafka_jars())
        return 0
    if args.command == "smoke":
        from orchestrator.devstack.smoke import run

        return 0 if run() else 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with providers.kafka(args.kafka_nodes) as kafka, providers.postgres() as pg:
        print(f"export KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap_servers}")
        print(f"export DATABASE_URL={pg.dsn}")
        print("# Ctrl-C stops both", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
