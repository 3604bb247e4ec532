"""Scenario e: transfers while engine workers are SIGKILLed and their shard stores
are damaged between the kill and the restart.

Three processes share the work, two of them keeping standby copies of the shards
they do not own. Every few seconds a chaos thread SIGKILLs one (transactions and
store writes in flight: a kill lands inside a checkpoint write sooner or later), then
does one thing to its state folder before starting it again with the same id:
nothing, delete it, truncate every file in it, or replace it with a copy of another
worker's stores. The worker must notice what it can no longer trust, rebuild from
the history topic, and lose or double nothing: every invariant is audited.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.log.topics import TopicLayout, ensure_topics
from tests.faults import harness as h

SOAK = h.soak()
STALL_S = 60.0
TRANSFERS = 800 * SOAK
CHAOS_S = 50.0 * SOAK

pytestmark = [pytest.mark.integration, pytest.mark.faults]


DAMAGES = ("truncated", "deleted", "copied", "kept")  # in turn: each is seen in a run


def damage(victim: h.WorkerProcess, donor: h.WorkerProcess, how: str) -> str:
    """Do ``how`` to the stopped victim's stores; returns the fault's name."""
    state = victim.state_dir
    if how == "deleted":
        shutil.rmtree(state, ignore_errors=True)
    elif how == "truncated":
        for f in state.rglob("*"):
            if f.is_file() and f.name != "LOCK":
                with f.open("r+b") as fh:
                    fh.truncate(f.stat().st_size // 2)
    elif how == "copied":
        # a copy of a running worker's files: possibly torn, possibly another shard set
        shutil.rmtree(state, ignore_errors=True)
        copy_as_it_is(donor.state_dir, state)
    return f"store_{how}"


def copy_as_it_is(source: Path, target: Path) -> None:
    """Copy a folder a live process is writing (files come and go meanwhile)."""
    for path in sorted(source.rglob("*")) if source.exists() else []:
        dest = target / path.relative_to(source)
        if path.name == "LOCK":
            continue
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            if path.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)


@pytest.mark.timeout(420 * SOAK)
def test_transfers_survive_kills_with_damaged_stores(
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
    transfers = h.make_transfers(TRANSFERS, seed=71)
    bootstrap = kafka_config["bootstrap.servers"]

    with h.running_workers(bootstrap, topic_prefix, database, tmp_path) as workers:
        pool = [
            workers.add("mixed-a", extra=("--standby",)),
            workers.add("mixed-b"),
            workers.add("engine-c", activities=False, extra=("--standby",)),
        ]

        def kill_and_damage(rng: random.Random) -> str:
            victim = rng.choice(pool)
            donor = rng.choice([w for w in pool if w is not victim])
            victim.kill()
            fault = damage(victim, donor, DAMAGES[sum(chaos.injected.values()) % len(DAMAGES)])
            time.sleep(rng.uniform(0.0, 1.5))
            victim.start()
            return fault

        h.send_paced(kafka_config, layout, transfers, len(transfers) / (CHAOS_S * 0.8))
        chaos = h.Chaos(kill_and_damage, interval_s=(3.0, 6.0), seed=72).start()
        chaos_until = time.monotonic() + CHAOS_S
        try:
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
    faults = dict(chaos.injected)
    assert sum(faults.values()) >= 5, f"only {faults} faults were injected"
    assert all(faults[f"store_{how}"] >= 1 for how in DAMAGES), f"not every damage: {faults}"

    result = h.audit(kafka_config, admin, layout, database, transfers, logs)
    h.summary("e/store-damage", result, faults, time.monotonic() - began)
