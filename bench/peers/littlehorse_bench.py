"""Peer benchmark: a LittleHorse workflow of three no-op task nodes, on the shared Kafka.

    bench/peers/setup_littlehorse.sh            # server jars from Maven Central, once
    .venv/bin/pip install -e '.[bench]'         # littlehorse-client (matches the server)
    .venv/bin/python bench/peers/littlehorse_bench.py --workflows 3000              # max rate
    .venv/bin/python bench/peers/littlehorse_bench.py --workflows 1500 --rate 50    # latency
    .venv/bin/python bench/peers/littlehorse_bench.py --workflows 1500 --rate 50 \\
        --commit-interval-ms 100

Starts one LittleHorse server (``io.littlehorse.App`` from io.littlehorse:littlehorse-server
1.2.1, Java 25: ``LH_JAVA`` or /usr/lib/jvm/temurin-25-jdk-amd64/bin/java) as a child on
free ports, pointed at ``KAFKA_BOOTSTRAP_SERVERS`` (unset: a local broker from the
jars) with a cluster id of its own per run (``LHS_CLUSTER_ID=sagabench-lh-<time>-<pid>``:
its topics and consumer groups carry that prefix and are deleted at the end), RocksDB state in a
temporary directory, and one Python task worker process (``littlehorse-client`` 1.2.1,
asyncio, ``LHW_NUM_WORKER_THREADS`` = 8) holding ``--pollers`` (default 4)
``LHTaskWorker`` instances for the TaskDef: the Python SDK keeps one ``PollTask`` in
flight per worker, which alone capped the rate (30/s with one, 45/s with four).
Everything is stopped at the end, also on SIGTERM. The server's gRPC listeners are
advertised on 127.0.0.1, but LittleHorse binds them on all interfaces (it has no
bind-address setting); the ports are random.

Server settings are LittleHorse's defaults except the ports, the state directory and the
cluster id; ``--commit-interval-ms`` sets ``LHS_CORE_STREAMS_COMMIT_INTERVAL`` (default
500 ms in 1.2.1, read from the server's LHServerConfig).

What is durable, in this configuration: a client's ``RunWf`` and each worker's
``ReportTask`` become a command record that the server produces to its core command topic
with ``acks=all`` (idempotent producer; one broker here, replication factor 1) before it is
processed. The core processor is a Kafka Streams topology with ``exactly_once_v2``: the
workflow's state changes (RocksDB plus changelog topics), the task queue entries and the
offsets of the commands it consumed are committed in one Kafka transaction every
``commit.interval.ms``. Task dispatch to the worker and the answer that wakes
``AwaitWorkflowEvent`` come from that processing, before the transaction that contains it
commits. So the client may see a completion up to one commit interval before the state
behind it is committed; if the server dies in that window, the state is rebuilt by
replaying the (durable) commands, and a task may be handed out and run again.

Measured: the WfSpec ``bench-three-noop``: an INT variable ``n``, three TASK nodes running
the TaskDef ``bench-noop`` (``async def noop(n) -> n + 1``, each fed the previous one's
output), then a THROW_EVENT node (``bench-done``, the last output) so that the client can
wait for completion with ``AwaitWorkflowEvent`` instead of polling. Latency is from just
before ``RunWf`` to the moment ``AwaitWorkflowEvent`` returns for that WfRun.

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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SERVER_VERSION = os.environ.get("LH_VERSION", "1.2.1")
LIB = ROOT / ".cache" / "peers" / "littlehorse" / f"lib-{SERVER_VERSION}"
JAVA = os.environ.get("LH_JAVA", "/usr/lib/jvm/temurin-25-jdk-amd64/bin/java")
WF_NAME = "bench-three-noop"
TASK_NAME = "bench-noop"
EVENT_NAME = "bench-done"


async def noop(n: int) -> int:
    return n + 1


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100)[q - 1]


def free_port() -> int:
    from orchestrator.devstack.processes import free_port as project_free_port

    return project_free_port()


def lh_config(port: int) -> Any:
    from littlehorse.config import LHConfig

    os.environ["LHC_API_HOST"] = "127.0.0.1"
    os.environ["LHC_API_PORT"] = str(port)
    return LHConfig()


def run_worker(port: int, pollers: int) -> None:
    """The task worker process: serve ``bench-noop`` until terminated."""
    import littlehorse
    from littlehorse.worker import LHTaskWorker

    os.environ.setdefault("LHW_NUM_WORKER_THREADS", "8")
    workers = [LHTaskWorker(noop, TASK_NAME, lh_config(port)) for _ in range(pollers)]
    asyncio.run(littlehorse.start(*workers))  # stops on SIGTERM


@contextlib.contextmanager
def server(commit_interval_ms: int | None, workdir: Path) -> Iterator[tuple[int, str]]:
    if not (LIB / ".complete").exists():
        raise SystemExit(f"no LittleHorse server jars in {LIB}: bench/peers/setup_littlehorse.sh")
    if not Path(JAVA).exists():
        raise SystemExit(f"Java 25 missing: {JAVA} (set LH_JAVA)")
    port, internal, health = free_port(), free_port(), free_port()
    cluster = f"sagabench-lh-{time.strftime('%H%M%S')}-{os.getpid()}"
    env = {
        **os.environ,
        "LHS_KAFKA_BOOTSTRAP_SERVERS": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        "LHS_CLUSTER_ID": cluster,
        "LHS_INSTANCE_ID": "1",
        "LHS_STATE_DIR": str(workdir / "state"),
        "LHS_LISTENERS": f"PLAIN:{port}",
        "LHS_ADVERTISED_LISTENERS": f"PLAIN://127.0.0.1:{port}",
        "LHS_INTERNAL_BIND_PORT": str(internal),
        "LHS_INTERNAL_ADVERTISED_HOST": "127.0.0.1",
        "LHS_INTERNAL_ADVERTISED_PORT": str(internal),
        "LHS_HEALTH_SERVICE_PORT": str(health),
    }
    if commit_interval_ms is not None:
        env["LHS_CORE_STREAMS_COMMIT_INTERVAL"] = str(commit_interval_ms)
    log = (workdir / "server.log").open("ab")
    proc = subprocess.Popen(
        [JAVA, "-Xms256m", "-Xmx1g", "-cp", f"{LIB}/*", "io.littlehorse.App"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield port, cluster
    finally:
        stop(proc)
        delete_topics(env["LHS_KAFKA_BOOTSTRAP_SERVERS"], cluster)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def delete_topics(bootstrap: str, prefix: str) -> None:
    """Remove this run's topics and consumer groups from the shared broker."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if topics:
        for fut in admin.delete_topics(topics, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                fut.result(30)
    groups = [g.group_id for g in admin.list_consumer_groups().result(10).valid]
    mine = [g for g in groups if g.startswith(prefix)]
    if mine:
        for fut in admin.delete_consumer_groups(mine).values():
            with contextlib.suppress(Exception):
                fut.result(30)


def register(config: Any, deadline_s: float) -> None:
    """TaskDef, WorkflowEventDef and WfSpec, retried until the server answers."""
    from littlehorse.model import (
        PutWorkflowEventDefRequest,
        ReturnType,
        TypeDefinition,
        VariableType,
    )
    from littlehorse.workflow import Workflow, WorkflowThread, create_task_def, create_workflow_spec

    def entrypoint(wf: WorkflowThread) -> None:
        n = wf.declare_int("n")
        first = wf.execute(TASK_NAME, n)
        second = wf.execute(TASK_NAME, first)
        third = wf.execute(TASK_NAME, second)
        wf.throw_event(EVENT_NAME, third)

    stub = config.stub()
    event_def = PutWorkflowEventDefRequest(  # the client's create_workflow_event_def is broken
        name=EVENT_NAME,
        content_type=ReturnType(
            return_type=TypeDefinition(primitive_type=VariableType.INT)
        ),
    )
    steps = [
        lambda: create_task_def(noop, TASK_NAME, config, timeout=10),
        lambda: stub.PutWorkflowEventDef(event_def, timeout=10),
        lambda: create_workflow_spec(Workflow(WF_NAME, entrypoint), config, timeout=10),
    ]
    deadline = time.monotonic() + deadline_s
    for step in steps:  # retried: the server may still be starting, metadata settling
        while True:
            try:
                step()
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"LittleHorse server not ready: {exc}") from exc
                time.sleep(0.5)
            else:
                break


async def one(stub: Any, n: int, run_id: str) -> float:
    from littlehorse.model import (
        AwaitWorkflowEventRequest,
        RunWfRequest,
        VariableValue,
        WfRunId,
        WorkflowEventDefId,
    )

    began = time.monotonic()
    await stub.RunWf(
        RunWfRequest(wf_spec_name=WF_NAME, id=run_id, variables={"n": VariableValue(int=n)}),
        timeout=60,
    )
    await stub.AwaitWorkflowEvent(
        AwaitWorkflowEventRequest(
            wf_run_id=WfRunId(id=run_id), event_def_ids=[WorkflowEventDefId(name=EVENT_NAME)]
        ),
        timeout=120,
    )
    return (time.monotonic() - began) * 1000


async def closed_loop(stub: Any, tag: str, total: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def client() -> None:
        for n in counter:
            latencies.append(await one(stub, n, f"{tag}-{n}"))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies


async def open_loop(stub: Any, tag: str, total: int, rate: float) -> list[float]:
    pending = []
    start = time.monotonic()
    for n in range(total):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(one(stub, n, f"{tag}-{n}")))
    return list(await asyncio.wait_for(asyncio.gather(*pending), 300))


async def measure(config: Any, args: argparse.Namespace) -> tuple[list[float], float]:
    """Warm up, then the measured run; one event loop for the client's async channel."""
    stub = config.stub(async_channel=True, name="bench-client")
    began_setup = time.monotonic()
    await asyncio.wait_for(closed_loop(stub, "warm", args.warmup, min(args.concurrency, 8)), 300)
    print(f"warm-up: {args.warmup} workflows in {time.monotonic() - began_setup:.1f}s")
    began = time.monotonic()
    if args.rate:
        latencies = await open_loop(stub, "run", args.workflows, args.rate)
    else:
        run = closed_loop(stub, "run", args.workflows, args.concurrency)
        latencies = await asyncio.wait_for(run, 600)
    return latencies, time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workflows", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=0, help="starts/s (0: max, closed loop)")
    parser.add_argument("--concurrency", type=int, default=16, help="clients at max rate")
    parser.add_argument("--warmup", type=int, default=100, help="workflows run first, not timed")
    parser.add_argument(
        "--commit-interval-ms", type=int, default=None, help="LHS_CORE_STREAMS_COMMIT_INTERVAL"
    )
    parser.add_argument(
        "--pollers", type=int, default=4, help="LHTaskWorker instances in the worker process"
    )
    parser.add_argument("--worker-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_port:
        run_worker(args.worker_port, args.pollers)
        return

    def on_term(*_: Any) -> None:
        raise SystemExit("terminated")

    signal.signal(signal.SIGTERM, on_term)
    logging_quiet()
    workdir = Path(tempfile.mkdtemp(prefix="lh-bench-"))
    worker: subprocess.Popen[bytes] | None = None
    broker = contextlib.ExitStack()
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        # no broker given: start one the project's way, as bench/engine_bench.py does
        from orchestrator.devstack import providers

        kafka = broker.enter_context(providers.kafka())
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = kafka.bootstrap_servers
    try:
        with server(args.commit_interval_ms, workdir) as (port, cluster):
            config = lh_config(port)
            began_setup = time.monotonic()
            register(config, 180)
            pollers = ("--pollers", str(args.pollers))
            with (workdir / "worker.log").open("ab") as log:
                worker = subprocess.Popen(
                    [sys.executable, __file__, *("--worker-port", str(port)), *pollers],
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            print(f"server up, metadata registered in {time.monotonic() - began_setup:.1f}s")
            latencies, elapsed = asyncio.run(measure(config, args))
            stop(worker)
        latencies.sort()
        mode = f"rate={args.rate:g}/s" if args.rate else f"max (closed loop, {args.concurrency})"
        commit = (
            f"{args.commit_interval_ms} ms" if args.commit_interval_ms is not None
            else "default (500 ms)"
        )
        print(
            f"littlehorse server {SERVER_VERSION} client "
            f"{importlib.metadata.version('littlehorse-client')} workflow=3 no-op task nodes "
            f"workflows={len(latencies)} {mode} core commit interval {commit} "
            f"worker pollers={args.pollers} cluster={cluster}"
        )
        print(f"throughput: {len(latencies) / elapsed:.0f} workflows/s over {elapsed:.1f}s")
        print(
            f"latency start->complete: p50 {pct(latencies, 50):.1f} ms, "
            f"p99 {pct(latencies, 99):.1f} ms, max {latencies[-1]:.1f} ms"
        )
    except BaseException:
        log_tail(workdir)
        raise
    finally:
        stop(worker)
        broker.close()
        if os.environ.get("LH_BENCH_KEEP") is None:
            shutil.rmtree(workdir, ignore_errors=True)


def logging_quiet() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)


def log_tail(workdir: Path) -> None:
    for name in ("server.log", "worker.log"):
        path = workdir / name
        if path.exists():
            lines = path.read_text(errors="replace").splitlines()[-30:]
            print(f"--- last lines of {name}", *lines, sep="\n", file=sys.stderr)


if __name__ == "__main__":
    main()
