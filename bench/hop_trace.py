"""Where a saga's start-to-complete time goes, hop by hop, from the records themselves.

Every record carries its producer's create time, so the history topic (engine
decisions) and the commands topic (activity results) give, per saga, the moment of
each decision and each result. With the moment the load generator sent the start and
the moment it saw the reply, the critical path splits into:

* ``engine picks up start``: start sent -> engine decides (WorkflowStarted produced)
* ``task -> result``: engine decided (ActivityScheduled produced) -> activity worker
  produced the result: the engine's commit, the task becoming visible
  (read_committed), the activity worker's fetch and the activity itself
* ``result -> decision``: activity result produced -> engine decides the next step:
  the result's delivery, the engine's fetch, and any cycle (commit) already running
* ``reply``: engine decided completion -> load generator sees the reply: the commit
  and the read_committed fetch

Only for one broker on this machine: all clocks are the same clock.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Message

from orchestrator.engine import events as ev
from orchestrator.log.reading import read_committed
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat

WIRE = WireFormat()


def _headers(msg: Message) -> list[tuple[str, bytes | None]]:
    return [(k, v if isinstance(v, bytes) else None) for k, v in (msg.headers() or [])]


def hop_breakdown(
    bootstrap: str,
    commands_topic: str,
    history_topic: str,
    shards: int,
    sent_ms: dict[str, float],
    seen_ms: dict[str, float],
) -> dict[str, list[float]]:
    """Per-hop durations (ms) over every saga that completed, keyed by hop name."""
    config = {"bootstrap.servers": bootstrap}
    decisions: dict[str, list[float]] = defaultdict(list)  # wf -> create times of decisions
    results: dict[str, list[float]] = defaultdict(list)  # wf -> create times of results
    for msg in read_committed(config, history_topic, shards, 60):
        if msg.value() is None:
            continue
        record = WIRE.decode_history(_headers(msg), msg.value()).record
        if isinstance(record, rec.WorkflowSnapshot):
            continue
        if isinstance(record.event, ev.WorkflowStarted | ev.ActivityCompleted):
            decisions[record.workflow_id].append(float(msg.timestamp()[1]))
    for msg in read_committed(config, commands_topic, shards, 60):
        try:
            command = WIRE.decode_command(_headers(msg), msg.value()).record
        except Exception:  # noqa: BLE001 - the trace skips what it cannot read
            continue
        if isinstance(command, rec.ActivityTaskCompleted):
            results[command.workflow_id].append(float(msg.timestamp()[1]))
    hops: dict[str, list[float]] = defaultdict(list)
    for wf_id, seen in seen_ms.items():
        made, done = sorted(decisions.get(wf_id, [])), sorted(results.get(wf_id, []))
        if wf_id not in sent_ms or not made or len(made) != len(done) + 1:
            continue
        hops["engine picks up start"].append(made[0] - sent_ms[wf_id])
        for decided, result in zip(made, done, strict=False):
            hops["task -> result"].append(result - decided)
        for result, decided in zip(done, made[1:], strict=True):
            hops["result -> decision"].append(decided - result)
        hops["reply"].append(seen - made[-1])
    return hops


def print_breakdown(hops: dict[str, Iterable[float]], out: Any = None) -> None:
    """One line per hop: count, p50, p90, p99, mean."""
    for name, values in hops.items():
        data = sorted(values)
        if len(data) < 2:
            continue
        q = statistics.quantiles(data, n=100)
        print(
            f"  {name:<22} n={len(data):<6} p50 {q[49]:6.1f} ms  p90 {q[89]:6.1f} ms  "
            f"p99 {q[98]:6.1f} ms  mean {statistics.fmean(data):6.1f} ms",
            file=out,
        )
