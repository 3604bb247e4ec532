"""A static, cooperative member of a consumer group, run as its own process by
tests/integration/test_group_watch.py:

    python -m tests.integration.group_member BOOTSTRAP GROUP TOPIC INSTANCE SECONDS [die]

With ``die`` it SIGKILLs itself as soon as the group asks it to give partitions up: in
the middle of a cooperative rebalance, before the rejoin that would let the group
assign them.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from confluent_kafka import Consumer


def main(argv: list[str]) -> None:
    bootstrap, group, topic, instance, seconds = argv[:5]
    die = argv[5:] == ["die"]
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.instance.id": instance,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 6000,
            "enable.auto.commit": False,
        }
    )

    def revoked(_consumer: Any, partitions: list[Any]) -> None:
        if die and partitions:
            print(f"{instance} asked to give up {len(partitions)}: dying", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    consumer.subscribe([topic], on_revoke=revoked)
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        consumer.poll(0.2)
    consumer.close()


if __name__ == "__main__":
    main(sys.argv[1:])
