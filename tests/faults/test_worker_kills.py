"""Scenario a: transfers while engine and activity worker processes are SIGKILLed.

Three processes share the work: one runs engine + activity worker, one only the
engine, one only the activity worker. A chaos thread SIGKILLs one of them at a
random moment every few seconds (transactions, activity attempts and offset
commits in flight) and starts it again with the same worker id. Start commands
keep arriving in waves while this goes on. Afterwards every invariant is audited.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.log.topics import TopicLayout, ensure_topics
from tests.faults import harness as h

SOAK = h.soak()
STALL_S = 60.0  # no saga finished for this long after the faults: a worker is stuck
TRANSFERS = 1_000 * SOAK
CHAOS_S = 60.0 * SOAK

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@pytest.mark.timeout(420 * SOAK)
def test_transfers_survive_worker_sigkills(
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    database: str,
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    h.prepare_ledger(database)
    layout = TopicLayout(prefix=topic_prefix, shards=h.SHARDS)
    ensure_topics(admin, layout, [h.QUEUE])
    transfers = h.make_transfers(TRANSFERS, seed=61)
    bootstrap = kafka_config["bootstrap.servers"]

    with h.running_workers(bootstrap, topic_prefix, database, tmp_path) as workers:
        pool = [
            workers.add("mixed"),
            workers.add("engine", activities=False),
            workers.add("activities", engine=False),
        ]

        def kill_one(rng: random.Random) -> str:
            victim = rng.choice(pool)
            victim.kill()
            time.sleep(rng.uniform(0.0, 1.5))  # sometimes the group notices first
            victim.start()
            return f"sigkill_{victim.name}"

        waves = 4
        per_wave = len(transfers) // waves
        h.send(kafka_config, layout, transfers[:per_wave])
        chaos = h.Chaos(kill_one, interval_s=(2.0, 5.0), seed=62).start()
        chaos_until = time.monotonic() + CHAOS_S
        try:
            for w in range(1, waves):
                time.sleep(CHAOS_S / waves)
                batch = transfers[w * per_wave : (w + 1) * per_wave if w < waves - 1 else None]
                h.send(kafka_config, layout, batch)
            # keep killing until the chaos window closes (or all sagas are done)
            h.wait_for_outcomes(
                kafka_config, layout, len(transfers), max(0.0, chaos_until - time.monotonic())
            )
        finally:
            chaos.stop()
        done = h.wait_for_outcomes(
            kafka_config, layout, len(transfers), 240.0 * SOAK, stall_s=STALL_S
        )
        stacks = workers.stacks() if done < len(transfers) else ""
        codes = workers.stop_all()
        logs = workers.log_tail()
    assert done == len(transfers), f"only {done}/{len(transfers)} sagas finished\n{logs}\n{stacks}"
    assert all(code == 0 for code in codes.values()), f"unclean exits {codes}\n{logs}"
    kills = sum(chaos.injected.values())
    assert kills >= 5, f"only {kills} kills were injected"

    result = h.audit(kafka_config, admin, layout, database, transfers, logs)
    faults = dict(chaos.injected)
    faults["sigkill_total"] = kills
    h.summary("a/worker-sigkill", result, faults, time.monotonic() - began)
