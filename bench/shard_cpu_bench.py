"""CPU per run of one engine shard, in process, without a broker.

    PYTHONPATH=. .venv/bin/python bench/shard_cpu_bench.py --mode storm --runs 5000
    PYTHONPATH=. .venv/bin/python bench/shard_cpu_bench.py --mode recover --runs 5000
    PYTHONPATH=. .venv/bin/python bench/shard_cpu_bench.py --mode saga --runs 5000
    PYTHONPATH=. .venv/bin/python bench/shard_cpu_bench.py --mode idle --runs 20000

One shard over a real RocksDB store (tests/unit/worker/shard_harness.py plays the
processor: a list for the history partition, transactions that commit at once).

* ``storm``: N runs of ``bench.sleep_until`` all due at one instant, evicted from
  memory (as after a long sleep), then fired in the engine's slices, each slice
  committed: what one firing costs (read the run, replay it, fire, close, encode).
* ``saga``: N three-step sagas (``bench.three_step``, task-queue steps), 100 started
  per transaction, each step's task answered by an ``ActivityTaskCompleted`` command:
  what the engine's deciding thread spends on one saga (start, three outcomes, close),
  the maximum rate's bound on one core.
* ``idle``: the shards' part of one engine cycle when nothing is due, N cycles over
  8 shards each holding 100 sleeping runs (what the processor asks of every shard in
  every cycle: its next due time, its due work, a seal and its commit): the fixed
  cost every cycle pays before any record is decided.
* ``recover``: N runs of ``bench.sleep_30d`` rebuilt from their history into a new
  store (written in slices of 500 records) and recovered (their timers indexed): what
  a rebuild costs per run once the records are read from Kafka.

It prints the deciding thread's CPU time per run (``time.thread_time``: the GIL
holder's work, less sensitive to a loaded machine than wall time) and wall time, the
median of ``--repeat`` rounds. Compare two builds by running it from each checkout
(``PYTHONPATH=<checkout>``), alternating. Kafka's share (producing, the broker) is
not in these figures: bench/scale_bench.py measures the whole worker. With ``--gc
worker`` the storm's measured phase runs under the engine worker's collector settings
(start-up heap frozen, young generation every 20,000 allocations): the harness's own
lists then cost no full collections, whose timing otherwise moves a round by ~20%.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH: another checkout can be measured

from bench import bench_sagas, sleepers  # noqa: E402
from orchestrator.serde import records as rec  # noqa: E402
from orchestrator.worker.gc_policy import YOUNG_THRESHOLD  # noqa: E402
from orchestrator.worker.shard.engine_shard import ShardTuning  # noqa: E402
from tests.unit.worker.shard_harness import CONV, T0, WIRE, Harness  # noqa: E402

DAY_MS = 86_400_000


def _seed(harness: Harness, workflow_type: str, n: int, arg: int | None) -> None:
    for i in range(n):
        harness.start(f"s-{i}", workflow_type, i if arg is None else arg, request_id=f"r-{i}")
        if i % 200 == 199:
            harness.commit()
    harness.commit()


#: ``--gc worker``: the engine worker's collector settings (orchestrator/worker/gc_policy.py)
#: from the measured phase on, so a full collection over the harness's own lists (the
#: history "partition", replies) does not land in some rounds and not in others
_WORKER_GC = False


def _settle() -> None:
    if _WORKER_GC:
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _unsettle() -> None:
    if _WORKER_GC:
        gc.unfreeze()
        gc.set_threshold(700, *gc.get_threshold()[1:])


def storm(n: int) -> tuple[float, float]:
    """Per firing: (thread CPU s, wall s)."""
    harness = Harness(
        Path(tempfile.mkdtemp()), [sleepers.sleep_until], tuning=ShardTuning(idle_evict_ms=0)
    )
    due = T0 + 3_600_000
    _seed(harness, "bench.sleep_until", n, due)
    harness.run(1000)  # every run evicted: asleep in the store only
    harness.clock.now = due + 1
    _settle()
    wall, cpu = time.perf_counter(), time.thread_time()
    while harness.tick():
        harness.commit()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    fired = sum(1 for r in harness.replies if r.kind.name == "RESULT")
    if fired != n:
        raise SystemExit(f"{fired} of {n} fired")
    _unsettle()
    harness.stop()
    return cpu / n, wall / n


def saga(n: int) -> tuple[float, float]:
    """Per three-step saga: (thread CPU s, wall s)."""
    harness = Harness(Path(tempfile.mkdtemp()), [bench_sagas.three_step])
    wall, cpu = time.perf_counter(), time.thread_time()
    for first in range(0, n, 100):
        for i in range(first, min(n, first + 100)):
            harness.start(f"b-{i}", "bench.three_step", i, request_id=f"r-{i}")
        harness.commit()
        while harness.tasks:
            tasks, harness.tasks = harness.tasks, []
            for record in tasks:
                task = WIRE.decode_task(record.headers, record.value).record
                n_in = CONV.from_payload(task.args[0])
                harness.send(
                    rec.ActivityTaskCompleted(
                        workflow_id=task.workflow_id,
                        run_id=task.run_id,
                        activity_seq=task.activity_seq,
                        attempt=task.attempt,
                        result=CONV.to_payload(n_in + 1),
                    )
                )
            harness.commit()
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    done = harness.results()
    if len(done) != n or done.get("b-0") != 3:
        raise SystemExit(f"{len(done)} of {n} completed (b-0: {done.get('b-0')!r})")
    harness.stop()
    return cpu / n, wall / n


def recover(n: int) -> tuple[float, float]:
    """Per run recovered after a rebuild: (thread CPU s, wall s)."""
    first = Harness(
        Path(tempfile.mkdtemp()), [sleepers.sleep_30d], tuning=ShardTuning(idle_evict_ms=0)
    )
    _seed(first, "bench.sleep_30d", n, None)
    first.stop()
    tuning = ShardTuning(idle_evict_ms=0, timer_budget_ms=1e9, recoveries_per_cycle=n)
    fresh = Harness(Path(tempfile.mkdtemp()), [sleepers.sleep_30d], tuning=tuning)
    fresh.history, fresh.commands_offset = first.history, first.commands_offset
    wall, cpu = time.perf_counter(), time.thread_time()
    fresh.restore(batch=500)  # the processor's slices hold about this many records
    fresh.run(rounds=10_000)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    due = fresh.shard.next_due_ms()
    if due is None or due - fresh.clock.now < 29 * DAY_MS:
        raise SystemExit(f"timers not recovered: next due {due}")
    fresh.stop()
    return cpu / n, wall / n


def idle(n: int) -> tuple[float, float]:
    """Per engine cycle with nothing due, 8 shards: (thread CPU s, wall s)."""
    harnesses = [
        Harness(Path(tempfile.mkdtemp()), [sleepers.sleep_30d], tuning=ShardTuning())
        for _ in range(8)
    ]
    for harness in harnesses:
        _seed(harness, "bench.sleep_30d", 100, None)
    shards = [h.shard for h in harnesses]
    now = T0 + 1
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(n):
        due = [d for d in (s.next_due_ms() for s in shards) if d is not None]
        until = time.monotonic() + 0.025
        out = [r for s in shards for r in s.fire_due(now, until)]
        for shard, sealed in [(s, s.seal()) for s in shards]:
            shard.committed(sealed, None)
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    if out or min(due) < now + 29 * DAY_MS:
        raise SystemExit(f"not idle: {len(out)} records, next due {min(due)}")
    for harness in harnesses:
        harness.stop()
    return cpu / n, wall / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["storm", "recover", "saga", "idle"], required=True)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--gc", choices=["default", "worker"], default="default",
        help="storm: keep CPython's collector settings, or the engine worker's",
    )
    args = parser.parse_args()
    global _WORKER_GC  # noqa: PLW0603 - a command-line switch of this script
    _WORKER_GC = args.gc == "worker"
    measure = {"storm": storm, "recover": recover, "saga": saga, "idle": idle}[args.mode]
    rounds = [measure(args.runs) for _ in range(args.repeat)]
    cpu = statistics.median(r[0] for r in rounds) * 1e6
    wall = statistics.median(r[1] for r in rounds) * 1e6
    each = ", ".join(f"{r[0] * 1e6:.0f}" for r in rounds)
    unit = "cycle" if args.mode == "idle" else "run"
    print(f"{args.mode} {args.runs}: thread CPU per {unit} {cpu:.0f} us (rounds: {each}), "
          f"wall {wall:.0f} us; command: {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
