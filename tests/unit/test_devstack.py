"""The local stack explains what is missing instead of failing obscurely."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.devstack import kafka_local
from orchestrator.devstack.kafka_local import KafkaSetupError, LocalKafkaCluster, new_cluster_id


def test_missing_maven_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SAGA_CACHE_DIR", str(tmp_path))  # empty cache: jars must be resolved
    monkeypatch.setenv("PATH", str(tmp_path))  # and no mvn on PATH
    with pytest.raises(KafkaSetupError, match="apt-get install maven"):
        kafka_local.ensure_kafka_jars()


def test_missing_java_names_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-such-jdk"))
    with pytest.raises(KafkaSetupError, match="openjdk-17"):
        kafka_local._java()


def test_cluster_ids_are_kraft_shaped() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_three_node_configs_replicate_and_share_one_quorum(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(3, workdir=tmp_path)
    cluster._layout()
    configs = [n.config_path.read_text() for n in cluster.nodes]
    voters = {
        line for c in configs for line in c.splitlines() if line.startswith("controller.quorum")
    }
    assert len(voters) == 1  # every node lists the same three voters
    for text in configs:
        assert "min.insync.replicas=2" in text
        assert "transaction.state.log.replication.factor=3" in text
