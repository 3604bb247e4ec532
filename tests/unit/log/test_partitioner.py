"""shard_for agrees with Kafka's Java Utils.murmur2 / default partitioner.

The vectors below were printed by Kafka 4.3.1's own ``Utils.murmur2`` and
``Utils.toPositive(h) % n`` (a single-file Java program run against the
kafka-clients jar the devstack caches); tests/integration/test_shard_routing.py
checks the same against librdkafka's Java-compatible partitioner on a real broker.
"""

from __future__ import annotations

import pytest

from orchestrator.log.partitioner import murmur2, shard_for

JAVA_VECTORS = [
    # key, Utils.murmur2, partition of 8, partition of 12
    ("", 275646681, 1, 9),
    ("a", -1563381124, 4, 4),
    ("ab", 316155434, 2, 2),
    ("abc", 479470107, 3, 3),
    ("abcd", -1323649548, 4, 8),
    ("abcde", 461995741, 5, 1),
    ("transfer-1", -563448662, 2, 6),
    ("transfer-42", -1225600255, 1, 1),
    ("order/2026/11/25#7", -873796340, 4, 0),
    ("ünïcødé-wf", 1038487325, 5, 5),
    ("wf-000000000000000000000000000000000000001", 1251709185, 1, 9),
]


@pytest.mark.parametrize(("key", "hash_", "p8", "p12"), JAVA_VECTORS)
def test_matches_kafka_java(key: str, hash_: int, p8: int, p12: int) -> None:
    assert murmur2(key.encode()) == hash_
    assert shard_for(key, 8) == p8
    assert shard_for(key, 12) == p12


def test_rejects_zero_shards() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shard_for("x", 0)
