"""Shard routing: the same function as Kafka's Java default partitioner.

A workflow's shard is ``murmur2(utf8(workflow_id)) & 0x7fffffff % shards``, so a
start command keyed by workflow id from any Java client (or librdkafka with
``partitioner=murmur2_random``) lands on the partition that owns the workflow.
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of ``data``, as a signed int like Java's ``Utils.murmur2``."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    whole = length & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK32
        k ^= k >> 24
        k = (k * _M) & _MASK32
        h = ((h * _M) & _MASK32) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[whole + 2] << 16
    if rest >= 2:
        h ^= data[whole + 1] << 8
    if rest >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def shard_for(workflow_id: str, shards: int) -> int:
    """The shard (partition of commands and history) that owns ``workflow_id``."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    return (murmur2(workflow_id.encode()) & 0x7FFFFFFF) % shards
