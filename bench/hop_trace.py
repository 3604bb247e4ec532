"""Where a saga's start-to-complete time goes, hop by hop, from the records themselves.

Every record carries its producer's create time: the tasks topic gives the moment
each activity task went out (at the decision with early dispatch, at the commit
without), the commands topic the moment each activity result was produced, and the
history topic the moment the completion was written (by the commit thread, so after
any commit already in flight). With the moment the load generator sent the start
and the moment it saw the reply, the critical path splits into:

* ``start -> first task``: start sent -> the first task produced: the start's
  delivery, the engine's fetch and decision (and, without early dispatch, commits)
* ``task -> result``: task produced -> activity worker produced the result: the
  task's delivery (a commit first, without early dispatch), the activity worker's
  fetch and the activity itself
* ``result -> next task``: result produced -> the next task produced
* ``result -> completion``: the last result -> the completion written to history:
  the engine's fetch and decision and the wait for the commit in flight
* ``completion -> reply seen``: the commit and the read_committed fetch of the reply

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
from orchestrator.serde.history import HistoryRecord
from orchestrator.serde.wire import WireFormat

WIRE = WireFormat()


def _headers(msg: Message) -> list[tuple[str, bytes | None]]:
    return [(k, v if isinstance(v, bytes) else None) for k, v in (msg.headers() or [])]


def _created(msg: Message) -> float:
    return float(msg.timestamp()[1])


def hop_breakdown(
    bootstrap: str,
    topics: tuple[str, str, str],
    shards: int,
    sent_ms: dict[str, float],
    seen_ms: dict[str, float],
) -> dict[str, list[float]]:
    """Per-hop durations (ms) over every saga that completed, keyed by hop name.
    ``topics``: the commands, history and task queue topics."""
    commands_topic, history_topic, tasks_topic = topics
    config = {"bootstrap.servers": bootstrap}
    tasks: dict[str, dict[int, float]] = defaultdict(dict)  # wf -> activity seq -> first out
    results: dict[str, list[float]] = defaultdict(list)  # wf -> create times of results
    completed: dict[str, float] = {}
    for msg in read_committed(config, tasks_topic, shards, 60):
        task = WIRE.decode_task(_headers(msg), msg.value()).record
        sent = tasks[task.workflow_id]
        sent[task.activity_seq] = min(sent.get(task.activity_seq, _created(msg)), _created(msg))
    for msg in read_committed(config, history_topic, shards, 60):
        if msg.value() is None:
            continue
        record = WIRE.decode_history(_headers(msg), msg.value()).record
        if isinstance(record, HistoryRecord) and isinstance(record.event, ev.WorkflowCompleted):
            completed[record.workflow_id] = _created(msg)
    for msg in read_committed(config, commands_topic, shards, 60):
        try:
            command = WIRE.decode_command(_headers(msg), msg.value()).record
        except Exception:  # noqa: BLE001 - the trace skips what it cannot read
            continue
        if isinstance(command, rec.ActivityTaskCompleted):
            results[command.workflow_id].append(_created(msg))
    hops: dict[str, list[float]] = defaultdict(list)
    for wf_id, seen in seen_ms.items():
        out = [at for _, at in sorted(tasks.get(wf_id, {}).items())]
        done = sorted(results.get(wf_id, []))
        if wf_id not in sent_ms or wf_id not in completed or not out or len(out) != len(done):
            continue
        hops["start -> first task"].append(out[0] - sent_ms[wf_id])
        for task_out, result in zip(out, done, strict=True):
            hops["task -> result"].append(result - task_out)
        for result, task_out in zip(done, out[1:], strict=False):
            hops["result -> next task"].append(task_out - result)
        hops["result -> completion"].append(completed[wf_id] - done[-1])
        hops["completion -> reply seen"].append(seen - completed[wf_id])
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
