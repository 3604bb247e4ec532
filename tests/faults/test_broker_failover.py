"""Scenario b: a three-broker cluster loses a broker, then its active controller.

The cluster (RF 3, min ISR 2) is the session's ``kafka_cluster``; every topic of
this deployment is created with replication factor 3. While transfers run, one
broker that leads some of our partitions is SIGKILLed and restarted; then, with a
fresh wave in flight, the node that is the active KRaft controller is SIGKILLed
and restarted. Each node is
combined broker+controller, so the second fault also takes a broker and a quorum
voter away and forces a controller election. Invariants are audited at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.devstack import providers
from orchestrator.devstack.kafka_local import LocalKafkaCluster
from orchestrator.log.topics import TopicLayout, ensure_topics
from tests.faults import harness as h

SOAK = h.soak()
STALL_S = 60.0  # no saga finished for this long after the faults: a worker is stuck
TRANSFERS = 300 * SOAK
DOWN_S = 5.0
PACE_PER_S = 30.0  # a paced wave of 75 arrives over 3-4 s, so a kill at LEAD_S lands mid-wave
LEAD_S = 1.5

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.faults]


@pytest.fixture
def cluster(kafka_cluster: providers.KafkaHandle) -> Iterator[LocalKafkaCluster]:
    """The session cluster, every node running again afterwards (also on failure)."""
    assert kafka_cluster.cluster is not None
    yield kafka_cluster.cluster
    for node in kafka_cluster.cluster.nodes:
        if not node.is_running():
            node.restart()


def quorum_leader(cluster: LocalKafkaCluster) -> int:
    """The active controller as the KRaft quorum itself records it (highest epoch wins)."""
    best = (-1, -1)
    for node in cluster.nodes:
        state = node.data_dir / "__cluster_metadata-0" / "quorum-state"
        try:
            data = json.loads(state.read_text())
        except (OSError, ValueError):
            continue
        epoch, leader = int(data.get("leaderEpoch", -1)), int(data.get("leaderId", -1))
        if leader >= 0 and epoch > best[0]:
            best = (epoch, leader)
    return best[1]


def partition_leaders(admin: AdminClient, layout: TopicLayout) -> dict[int, int]:
    """How many of our partitions each broker leads."""
    counts: dict[int, int] = {}
    meta = admin.list_topics(timeout=30).topics
    for topic in (layout.commands, layout.history, layout.replies, layout.task_queue(h.QUEUE)):
        for part in meta[topic].partitions.values():
            counts[part.leader] = counts.get(part.leader, 0) + 1
    return counts


@pytest.mark.timeout(300 * SOAK)
def test_transfers_survive_broker_and_controller_loss(
    cluster: LocalKafkaCluster, topic_prefix: str, database: str, tmp_path: Path
) -> None:
    began = time.monotonic()
    config: dict[str, Any] = {"bootstrap.servers": cluster.bootstrap_servers}
    admin = AdminClient(config)
    h.prepare_ledger(database)
    layout = TopicLayout(prefix=topic_prefix, shards=h.SHARDS, replication_factor=3)
    ensure_topics(admin, layout, [h.QUEUE])
    meta = admin.list_topics(layout.history, timeout=30).topics[layout.history]
    assert all(len(p.replicas) == 3 for p in meta.partitions.values()), "history is not RF 3"
    transfers = h.make_transfers(TRANSFERS, seed=66)
    faults: dict[str, int] = {}
    notes: list[str] = []
    at_kill: list[tuple[int, int]] = []
    quarter = len(transfers) // 4
    waves = [transfers[i * quarter : (i + 1) * quarter] for i in range(3)]
    waves.append(transfers[3 * quarter :])

    with h.running_workers(cluster.bootstrap_servers, topic_prefix, database, tmp_path) as w:
        w.add("first")
        w.add("second")
        h.send(config, layout, waves[0][:1])
        h.wait_for_outcomes(config, layout, 1, 90)  # the workers are up
        # the rest of the wave is paced: sagas finish in well under a second now, so a
        # wave sent at once could be done before the kill (it was, once, in CI)
        sender = h.send_paced(config, layout, waves[0][1:], per_s=PACE_PER_S)
        time.sleep(LEAD_S)

        # 1. a broker that leads some of our partitions (not the controller, that is next)
        controller = quorum_leader(cluster)
        leaders = partition_leaders(admin, layout)
        victim = max(
            (n.node_id for n in cluster.nodes if n.node_id != controller),
            key=lambda n: leaders.get(n, 0),
        )
        at_kill.append((h.finished(config, layout), len(waves[0])))
        cluster.node(victim).kill()
        faults["broker_sigkill"] = 1
        still_sending = [sender.is_alive()]
        sender.join(120)
        notes.append(f"broker {victim} (leading {leaders.get(victim, 0)} partitions)")
        h.send(config, layout, waves[1])  # written with one broker down
        time.sleep(DOWN_S)
        cluster.node(victim).restart()

        # 2. the active controller, with a fresh (paced) wave in flight
        sender = h.send_paced(config, layout, waves[2], per_s=PACE_PER_S)
        time.sleep(LEAD_S)
        described = admin.describe_cluster(request_timeout=30).result(30).controller
        controller = quorum_leader(cluster)
        assert controller >= 0, "no KRaft leader recorded in quorum-state"
        at_kill.append((h.finished(config, layout), sum(map(len, waves[:3]))))
        cluster.node(controller).kill()
        faults["controller_sigkill"] = 1
        still_sending.append(sender.is_alive())
        notes.append(
            f"controller {controller} (describe_cluster said {described.id}); "
            f"new controller {_wait_new_leader(cluster, controller)}"
        )
        sender.join(120)
        h.send(config, layout, waves[3])
        time.sleep(DOWN_S)
        cluster.node(controller).restart()
        done = h.wait_for_outcomes(config, layout, len(transfers), 180.0 * SOAK, stall_s=STALL_S)
        stacks = w.stacks() if done < len(transfers) else ""
        codes = w.stop_all()
        logs = w.log_tail()
    assert done == len(transfers), f"only {done}/{len(transfers)} sagas finished\n{logs}\n{stacks}"
    assert all(code == 0 for code in codes.values()), f"unclean exits {codes}\n{logs}"
    # outcomes counted just before each kill fall short of the sagas sent: some were in flight
    assert all(done_then < sent for done_then, sent in at_kill), f"not mid-run: {at_kill}"
    assert all(still_sending), f"a wave was fully sent before its kill: {still_sending}"
    notes.append(f"(finished, sent) at each kill: {at_kill}")

    result = h.audit(config, admin, layout, database, transfers, logs)
    print("faults:", "; ".join(notes))
    h.summary("b/broker-and-controller", result, faults, time.monotonic() - began)


def _wait_new_leader(cluster: LocalKafkaCluster, old: int, timeout_s: float = 30) -> int:
    """The node the remaining voters elected (bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leader = quorum_leader(cluster)
        if leader not in (old, -1):
            return leader
        time.sleep(0.2)
    raise AssertionError(f"no new KRaft leader within {timeout_s}s after killing {old}")
