"""Peer benchmark: a Temporal workflow of three no-op activities on the dev server.

    bench/peers/setup_temporal.sh               # builds the Temporal CLI from the Go proxy, once
    .venv/bin/pip install -e '.[bench]'         # temporalio
    .venv/bin/python bench/peers/temporal_bench.py --workflows 1000               # max rate
    .venv/bin/python bench/peers/temporal_bench.py --workflows 1000 --rate 50     # latency
    .venv/bin/python bench/peers/temporal_bench.py --workflows 1000 --rate 50 --db-file

Starts ``temporal server start-dev`` (Temporal CLI v1.5.1, which embeds Temporal Server
1.29.1; ``TEMPORAL_CLI`` or .cache/peers/temporal/bin/temporal) as a child with
``--ip 127.0.0.1 --headless`` and free ports, and one Python worker process (the
``temporalio`` SDK: the workflow and the activities on one task queue, the SDK's default
worker settings, so workflows run in its sandbox; ``--unsandboxed`` uses
``UnsandboxedWorkflowRunner`` instead, to show what the sandbox costs on this CPU), both
stopped at the end, also on SIGTERM.

What is durable, in this configuration: the dev server is all of Temporal's services in
one process on SQLite. Every state change of a workflow (started, each workflow task
completed with its commands, each activity scheduled, started and completed, the workflow
completed) is written to its history in a SQLite transaction before the server acts on
it: an activity is dispatched only after the workflow task that scheduled it is stored,
the next workflow task only after the activity's completion is stored, and the client's
result comes from the stored completion event. Where that SQLite lives is the point: by
default (no ``--db-file``) start-dev keeps it **in memory**, so everything is lost when
the server process dies (durable against a worker crash only). With ``--db-file`` it is a
file in a temporary directory with the dev server's default SQLite pragmas (no
``--sqlite-pragma``), which is what a restart of the server would recover from.

Measured: ``BenchThreeStep.run(n)`` awaits ``execute_activity(noop, ...)`` three times
(each fed the previous result; ``async def noop(n) -> n + 1``,
``start_to_close_timeout`` 30 s). Latency is from just before
``Client.execute_workflow`` (start) to the moment it returns the result.

- max rate (no ``--rate``): ``--concurrency`` asyncio clients each run a workflow and wait
  for it, in a loop (closed loop), until ``--workflows`` have completed.
- ``--rate R``: workflows are started on a fixed schedule of R/s (open loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow

TASK_QUEUE = "bench-three-step"


@activity.defn(name="bench_noop")
async def noop(n: int) -> int:
    return n + 1


@workflow.defn(name="BenchThreeStep")
class BenchThreeStep:
    @workflow.run
    async def run(self, n: int) -> int:
        for _ in range(3):
            n = await workflow.execute_activity(
                noop, n, start_to_close_timeout=timedelta(seconds=30)
            )
        return n


def root() -> Path:  # not at import: the workflow sandbox re-imports this module
    return Path(__file__).resolve().parents[2]


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[q - 1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def connect(target: str, deadline_s: float) -> Any:
    from temporalio.client import Client

    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return await Client.connect(target)
        except Exception as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"temporal dev server not ready at {target}: {exc}") from exc
            await asyncio.sleep(0.5)


async def run_worker(target: str, unsandboxed: bool) -> None:
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    client = await connect(target, 60)
    extra: dict[str, Any] = {"workflow_runner": UnsandboxedWorkflowRunner()} if unsandboxed else {}
    worker = Worker(
        client, task_queue=TASK_QUEUE, workflows=[BenchThreeStep], activities=[noop], **extra
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        await stop.wait()


async def one(client: Any, n: int, run_id: str) -> float:
    began = time.monotonic()
    result = await client.execute_workflow(
        BenchThreeStep.run, n, id=run_id, task_queue=TASK_QUEUE
    )
    if result != n + 3:
        raise AssertionError(f"{run_id}: got {result}, expected {n + 3}")
    return (time.monotonic() - began) * 1000


async def closed_loop(client: Any, tag: str, total: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def loop() -> None:
        for n in counter:
            latencies.append(await one(client, n, f"{tag}-{n}"))

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return latencies


async def open_loop(client: Any, tag: str, total: int, rate: float) -> list[float]:
    pending = []
    start = time.monotonic()
    for n in range(total):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(one(client, n, f"{tag}-{n}")))
    return list(await asyncio.wait_for(asyncio.gather(*pending), 300))


async def measure(target: str, args: argparse.Namespace) -> tuple[list[float], float]:
    client = await connect(target, 60)
    tag = f"b{os.getpid()}"
    began_warm = time.monotonic()
    warm = closed_loop(client, f"{tag}-warm", args.warmup, min(args.concurrency, 8))
    await asyncio.wait_for(warm, 300)
    print(f"warm-up: {args.warmup} workflows in {time.monotonic() - began_warm:.1f}s")
    began = time.monotonic()
    if args.rate:
        latencies = await open_loop(client, f"{tag}-run", args.workflows, args.rate)
    else:
        run = closed_loop(client, f"{tag}-run", args.workflows, args.concurrency)
        latencies = await asyncio.wait_for(run, 600)
    return latencies, time.monotonic() - began


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=0, help="starts/s (0: max, closed loop)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients at max rate")
    parser.add_argument("--warmup", type=int, default=100, help="workflows run first, not timed")
    parser.add_argument(
        "--db-file", action="store_true", help="SQLite in a file (default: in memory)"
    )
    parser.add_argument(
        "--unsandboxed", action="store_true", help="worker without the workflow sandbox"
    )
    parser.add_argument("--worker-target", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_target:
        asyncio.run(run_worker(args.worker_target, args.unsandboxed))
        return
    cli = os.environ.get("TEMPORAL_CLI", str(root() / ".cache/peers/temporal/bin/temporal"))
    if not Path(cli).exists():
        raise SystemExit(f"no Temporal CLI at {cli}: bench/peers/setup_temporal.sh")

    def on_term(*_: Any) -> None:
        raise SystemExit("terminated")

    signal.signal(signal.SIGTERM, on_term)
    workdir = Path(tempfile.mkdtemp(prefix="temporal-bench-"))
    port = free_port()
    target = f"127.0.0.1:{port}"
    argv = [cli, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless"]
    argv += ["--http-port", str(free_port()), "--metrics-port", str(free_port())]
    argv += ["--log-level", "warn"]
    if args.db_file:
        argv += ["--db-filename", str(workdir / "temporal.db")]
    server: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    try:
        with (workdir / "server.log").open("ab") as log:
            server = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        with (workdir / "worker.log").open("ab") as log:
            worker = subprocess.Popen(
                # as a module: the workflow sandbox re-imports the workflow's module
                [sys.executable, "-m", "bench.peers.temporal_bench", "--worker-target", target]
                + (["--unsandboxed"] if args.unsandboxed else []),
                cwd=root(),
                env={**os.environ, "PYTHONPATH": str(root())},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        latencies, elapsed = asyncio.run(measure(target, args))
        latencies.sort()
        mode = f"rate={args.rate:g}/s" if args.rate else f"max (closed loop, {args.concurrency})"
        version = subprocess.run(
            [cli, "--version"], check=False, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        print(
            f"{version} temporalio {importlib.metadata.version('temporalio')} "
            f"workflow=3 no-op activities workflows={len(latencies)} {mode} "
            f"sqlite={'file' if args.db_file else 'in memory (start-dev default)'}"
            f"{' worker unsandboxed' if args.unsandboxed else ''}"
        )
        print(f"throughput: {len(latencies) / elapsed:.0f} workflows/s over {elapsed:.1f}s")
        print(
            f"latency start->complete: p50 {pct(latencies, 50):.1f} ms, "
            f"p99 {pct(latencies, 99):.1f} ms, max {latencies[-1]:.1f} ms"
        )
    except BaseException:
        for name in ("server.log", "worker.log"):
            path = workdir / name
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-80:]
                print(f"--- last lines of {name}", *lines, sep="\n", file=sys.stderr)
        raise
    finally:
        stop(worker)
        stop(server)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
