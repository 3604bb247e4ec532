"""What tracing costs a saga when no OpenTelemetry SDK is installed (the API only).

    PYTHONPATH=. .venv/bin/python bench/tracing_overhead.py --cpu-ms-per-saga 4.3

Without an SDK every hop of a saga runs the same code as with one up to the check
``tracing.recording()``, which answers False from a cache; a few hops build their
span attributes before the check. This times those steps as the code runs them
(``timeit``, best of 5) and counts them for one three-step saga with task-queue
steps started and awaited by the client:

* client: one ``saga send`` hop (attributes, check, a new traceparent) and one
  reply check when the result is taken;
* engine: one check per decision (start, three outcomes);
* activity worker: one ``saga activity`` hop per attempt (attributes, check).

The sum is compared with ``--cpu-ms-per-saga``, the CPU one saga costs the engine
and the activity worker together (measured separately, e.g. from their process CPU
times over a max-rate run of bench/engine_bench.py). The end-to-end figures of
tracing with an SDK come from ``bench/engine_bench.py --tracing sdk``.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from orchestrator import tracing  # noqa: E402
from orchestrator.client._common import new_traceparent  # noqa: E402

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _check() -> None:
    tracing.recording()


def _activity_hop() -> None:  # as orchestrator/worker/activity_attempts.py runs it
    if tracing.recording():
        raise AssertionError("an SDK is installed")
    attributes: dict[str, str | int | bool] = {}
    with tracing.hop("saga activity bench.step", tracing.CONSUMER, PARENT, attributes) as hop:
        _ = hop.traceparent or PARENT


def _activity_hop_eager() -> None:  # before: attributes built whether recorded or not
    attributes = tracing.kafka_attributes(
        "saga.tasks.q",
        "process",
        **{
            "messaging.destination.partition.id": "3",
            "messaging.kafka.offset": 12345,
            "saga.workflow_id": "wf-1",
            "saga.run_id": "run-1",
            "saga.activity_type": "bench.step",
            "saga.activity_seq": 2,
            "saga.attempt": 1,
        },
    )
    with tracing.hop("saga activity bench.step", tracing.CONSUMER, PARENT, attributes) as hop:
        _ = hop.traceparent or PARENT


def _client_send() -> None:
    attributes = tracing.kafka_attributes(
        "saga.commands", "send", **{"saga.workflow_id": "wf-1", "saga.command": "StartWorkflow"}
    )
    with tracing.hop(
        "saga send StartWorkflow", tracing.PRODUCER, None, attributes, current=True
    ) as hop:
        _ = hop.traceparent or new_traceparent()


def _best_us(fn: object, number: int = 20_000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-ms-per-saga", type=float, required=True)
    args = parser.parse_args()
    if tracing.recording():
        raise SystemExit("an SDK is installed: this measures the API-only path")
    check, hop, send = _best_us(_check), _best_us(_activity_hop), _best_us(_client_send)
    eager = _best_us(_activity_hop_eager)
    print(f"(an activity hop that builds its attributes first, as before: {eager:.2f} us)")
    per_saga = {
        "client send hop": (1, send),
        "client reply check": (1, check),
        "engine decision checks": (4, check),
        "activity attempt hops": (3, hop),
    }
    total = sum(n * us for n, us in per_saga.values())
    for name, (n, us) in per_saga.items():
        print(f"{name:<24} {n} x {us:6.2f} us = {n * us:6.2f} us")
    share = total / (args.cpu_ms_per_saga * 1000) * 100
    print(f"per saga: {total:.1f} us = {share:.2f}% of {args.cpu_ms_per_saga} ms of CPU per saga")
    print(f"command: bench/tracing_overhead.py --cpu-ms-per-saga {args.cpu_ms_per_saga}")


if __name__ == "__main__":
    main()
