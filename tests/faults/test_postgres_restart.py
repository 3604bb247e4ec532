"""Scenario c: the ledger's PostgreSQL crashes and restarts while transfers run.

A dedicated server (not the session one, which other tests share) is first killed
with SIGKILL and left down for a few seconds, later shut down cleanly and left
down again. Meanwhile activities fail to connect (a retryable error), the engine
schedules retries under each step's policy, and they succeed once the server is
back. Invariants are audited at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.devstack.postgres_local import LocalPostgres
from orchestrator.log.topics import TopicLayout, ensure_topics
from tests.faults import harness as h

SOAK = h.soak()
STALL_S = 60.0  # no saga finished for this long after the faults: a worker is stuck
TRANSFERS = 300 * SOAK
DOWN_S = 3.0

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    server = LocalPostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.mark.timeout(300 * SOAK)
def test_transfers_survive_postgres_restarts(
    own_postgres: LocalPostgres,
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    pg = own_postgres
    h.prepare_ledger(pg.dsn)
    layout = TopicLayout(prefix=topic_prefix, shards=h.SHARDS)
    ensure_topics(admin, layout, [h.QUEUE])
    transfers = h.make_transfers(TRANSFERS, seed=63)
    faults: dict[str, int] = {"postgres_sigkill": 0, "postgres_clean_restart": 0}
    at_fault: list[tuple[int, int]] = []  # (sagas finished, sagas sent) just after a fault

    with h.running_workers(kafka_config["bootstrap.servers"], topic_prefix, pg.dsn, tmp_path) as w:
        w.add("first")
        w.add("second")
        for round_ in range(SOAK):
            batch = transfers[round_ * 300 : (round_ + 1) * 300]
            # paced, so both faults land while sagas still arrive (they finish in ~1 s now)
            sender = h.send_paced(kafka_config, layout, batch, per_s=40)
            sent = round_ * 300 + len(batch)
            h.wait_for_outcomes(kafka_config, layout, round_ * 300 + len(batch) // 10, 90)
            pg.kill()  # crash: open transactions and connections die with it
            faults["postgres_sigkill"] += 1
            at_fault.append((h.finished(kafka_config, layout), sent))
            time.sleep(DOWN_S)  # activities meanwhile fail to connect and are retried
            pg.start()
            h.wait_for_outcomes(kafka_config, layout, round_ * 300 + len(batch) // 2, 90)
            pg.stop()  # clean shutdown: clients are disconnected
            faults["postgres_clean_restart"] += 1
            at_fault.append((h.finished(kafka_config, layout), sent))
            time.sleep(DOWN_S)
            pg.start()
            sender.join(60)
        done = h.wait_for_outcomes(
            kafka_config, layout, len(transfers), 180.0 * SOAK, stall_s=STALL_S
        )
        stacks = w.stacks() if done < len(transfers) else ""
        codes = w.stop_all()
        logs = w.log_tail()
    assert done == len(transfers), f"only {done}/{len(transfers)} sagas finished\n{logs}\n{stacks}"
    assert all(code == 0 for code in codes.values()), f"unclean exits {codes}\n{logs}"
    assert all(done_then < sent for done_then, sent in at_fault), f"not mid-run: {at_fault}"
    print(f"(finished, sent) at each outage: {at_fault}")

    result = h.audit(kafka_config, admin, layout, pg.dsn, transfers, logs)
    assert result.retried_attempts > 0, "no activity attempt failed while the database was down"
    h.summary("c/postgres-restart", result, faults, time.monotonic() - began)
