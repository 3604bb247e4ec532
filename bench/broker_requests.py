"""Broker requests, records and CPU per saga, by request type, during one engine_bench run.

    .venv/bin/python bench/broker_requests.py --sagas 3000 --rate 250 \\
        --workflow bench.three_step --task-queue-workers 1 --warmup-s 10

Every argument goes to ``bench/engine_bench.py``. Needs the local broker of
``python -m orchestrator.devstack up`` (``KAFKA_BOOTSTRAP_SERVERS`` exported from its
output) and a JDK: it starts the broker's JMX agent on 127.0.0.1 (``jcmd
ManagementAgent.start``), samples the broker's request counters and its CPU time every
2 s while the bench runs (``broker_requests/RequestCounts.java``), and divides the rates
of the steady part of the run by the sagas/s the bench measured. The sampling costs the
broker CPU: the bench's latencies during it are not comparable with runs without it.
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JMX_PORT = 9999
INTERVAL_MS = 2000
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def broker_pid(bootstrap: str) -> int:
    """The local broker (a ``kafka.Kafka`` JVM) whose listeners include ``bootstrap``'s port."""
    port = bootstrap.split(",", 1)[0].rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kafka.Kafka" not in argv:
            continue
        config = Path(argv[argv.index(b"kafka.Kafka") + 1].decode())
        if re.search(rf"^listeners=.*:{port}\b", config.read_text(), re.MULTILINE):
            return int(proc.name)
    raise SystemExit(
        f"no local broker listening on {port} (start `python -m orchestrator.devstack up`)"
    )


def start_jmx(pid: int) -> None:
    options = [
        f"jmxremote.port={JMX_PORT}",
        f"jmxremote.rmi.port={JMX_PORT}",
        "jmxremote.host=127.0.0.1",
        "jmxremote.authenticate=false",
        "jmxremote.ssl=false",
    ]
    done = subprocess.run(
        ["jcmd", str(pid), "ManagementAgent.start", *options],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 and "already" not in done.stdout + done.stderr:
        raise SystemExit(f"jcmd ManagementAgent.start failed: {done.stdout}{done.stderr}")


def load(path: Path) -> dict[str, float]:
    return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in path.read_text().splitlines())}


def steady(samples: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """The first and last sample of the steady part: windows whose records/s are at least
    80% of the median busy window's."""
    rates = [
        (b["_MessagesInPerSec"] - a.get("_MessagesInPerSec", 0)) / (b["_t"] - a["_t"])
        for a, b in itertools.pairwise(samples)
    ]
    busy = [r for r in rates if r > 10]
    if not busy:
        raise SystemExit("no records went through the broker during the run")
    floor = 0.8 * statistics.median(busy)
    inside = [i for i, r in enumerate(rates) if r >= floor]
    return samples[inside[0]], samples[inside[-1] + 1]


def main() -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        raise SystemExit("export KAFKA_BOOTSTRAP_SERVERS from `python -m orchestrator.devstack up`")
    pid = broker_pid(bootstrap)
    start_jmx(pid)
    work = Path(tempfile.mkdtemp(prefix="broker-requests-"))
    subprocess.run(
        ["javac", "-d", str(work), str(ROOT / "bench/broker_requests/RequestCounts.java")],
        check=True,
    )
    samples_dir = work / "samples"
    samples_dir.mkdir()
    sampler = subprocess.Popen(
        [
            "java",
            "-cp",
            str(work),
            "RequestCounts",
            str(JMX_PORT),
            str(INTERVAL_MS),
            str(samples_dir),
            str(pid),
        ]
    )
    try:
        bench = subprocess.run(
            [sys.executable, str(ROOT / "bench/engine_bench.py"), *sys.argv[1:]],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        (samples_dir / "stop").touch()
        sampler.wait(30)
    print(bench.stdout, end="")
    measured = re.search(r"throughput: ([\d.]+) sagas/s", bench.stdout)
    if bench.returncode != 0 or measured is None:
        raise SystemExit(f"the bench failed:\n{bench.stderr[-3000:]}")
    per_s = float(measured.group(1))
    samples = [load(p) for p in sorted(samples_dir.iterdir()) if p.name.isdigit()]
    first, last = steady(samples)
    seconds = last["_t"] - first["_t"]
    print(f"\nbroker, steady {seconds:.0f} s of the run, per saga at {per_s:.0f} sagas/s:")
    cpu_ms = (last["_cpu_ticks"] - first["_cpu_ticks"]) / TICKS_PER_S / seconds * 1000 / per_s
    print(f"  {'CPU (ms)':32s} {cpu_ms:8.2f}")
    names = sorted(last, key=lambda k: first.get(k, 0) - last[k])
    for name in names:
        if name in ("_t", "_cpu_ticks"):
            continue
        rate = (last[name] - first.get(name, 0)) / seconds
        if rate >= 1:
            label = name.lstrip("_").removesuffix("PerSec")
            print(f"  {label:32s} {rate / per_s:8.2f}   ({rate:,.0f}/s)")
    args = " ".join(sys.argv[1:])
    print(f"command: bench/broker_requests.py {args}  ({time.strftime('%H:%M')} UTC)")


if __name__ == "__main__":
    main()
