"""Issue 10's acceptance benchmark: the engine worker's memory and failover at scale.

    PYTHONPATH=. .venv/bin/python bench/scale_bench.py --sleeping 20000 --load seed
    PYTHONPATH=. .venv/bin/python bench/scale_bench.py --sleeping 5000 --load client
    PYTHONPATH=. .venv/bin/python bench/scale_bench.py --closed 50000
    PYTHONPATH=. .venv/bin/python bench/scale_bench.py --sleeping 50000 --failover fresh
    PYTHONPATH=. .venv/bin/python bench/scale_bench.py --storm 20000

Everything runs through the real ``saga worker`` CLI (a subprocess per worker, see
``bench/engine_bench.py``'s ``spawn``) on real Kafka (``KAFKA_BOOTSTRAP_SERVERS`` or a
local broker from the jars). Each scenario gets its own topic prefix.

* ``--sleeping N``: N runs of ``bench.sleep_30d`` (bench/sleepers.py), each asleep on a
  30-day timer. ``--load client`` starts them through ``orchestrator.client.Client``
  as fast as it can, measures the worker's RSS, then restarts the worker and measures
  it again after the restore. ``--load seed`` writes their history straight to the
  history topic (what the engine itself writes for such a run: two events and a
  snapshot, checked byte for byte against runs started through the client first),
  then starts the worker, which restores them.
* ``--closed N``: N completed runs of ``bench.noop`` seeded the same way.
* ``--failover fresh,same-id,standby`` (with ``--sleeping``): kill -9 the worker and
  time, from the kill, the worker logging its shards and a new start being answered.
* ``--storm N``: N runs of ``bench.sleep_until`` all due at one instant, while
  three-step sagas (bench/bench_sagas.py) run at ``--steady-rate``/s.

RSS is VmRSS summed over the worker process and its children, from /proc; per
execution it is (RSS after load - RSS of an idle worker) / N. ``--state-dir`` is
given to the worker only when ``saga worker --help`` lists it (so is
``--standby``); ``--worker-arg`` passes anything else through.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import multiprocessing
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from orchestrator.client import Client
from orchestrator.converter import DataConverter
from orchestrator.devstack import providers
from orchestrator.devstack.processes import stop_process
from orchestrator.engine import events as ev
from orchestrator.engine.executor import seed_for_run
from orchestrator.log.headers import headers_of
from orchestrator.log.partitioner import shard_for
from orchestrator.log.reading import read_committed
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import EncodedRecord, WireFormat
from orchestrator.worker.shard.records import HistoryEntry
from orchestrator.worker.shard.starts import RUN_ID_NAMESPACE

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the bench package importable
    sys.path.insert(0, str(ROOT))

from bench.engine_bench import ReplyWatcher, send_starts, spawn  # noqa: E402
from bench.sleepers import SLEEP  # noqa: E402

WIRE = WireFormat()  # what the engine worker builds: ce_source /saga, no traceparent
CONV = DataConverter()
TASK_QUEUE = "bench"
WORKFLOW_TYPES = {"sleep": "bench.sleep_30d", "storm": "bench.sleep_until", "closed": "bench.noop"}
GIB = 1024**3


def now_ms() -> int:
    return int(time.time() * 1000)


def workflow_id(kind: str, n: int) -> str:
    return f"{kind}-{n:07d}"


# --- what the engine writes for a run -------------------------------------------------


def synthetic_run(
    kind: str, wf_id: str, run_id: str, now: int, arg: int, request_id: str | None = None
) -> list[EncodedRecord]:
    """The history records the engine writes when it starts ``wf_id`` at ``now``
    (epoch ms) with input ``arg`` (see EngineShard._start/_apply/_snapshot): for a
    sleeper, WorkflowStarted + TimerStarted + a RUNNING snapshot; for ``closed``,
    WorkflowStarted + WorkflowCompleted + a COMPLETED snapshot. One decision, so
    every time in it is the same ``now``. Seeded runs are started by no client: no
    request id (so no start deduplication) and no trace context."""
    wf_type = WORKFLOW_TYPES[kind]
    seed = seed_for_run(run_id)  # as the engine derives it when the start names none
    first = ev.WorkflowStarted(
        seq=1,
        time=now,
        workflow_type=wf_type,
        workflow_id=wf_id,
        run_id=run_id,
        task_queue=TASK_QUEUE,
        input=[CONV.to_payload(arg)],
        random_seed=seed,
    )
    status, close_time, result = rec.WorkflowStatus.RUNNING, None, None
    second: ev.Event
    if kind == "closed":
        result = CONV.to_payload(arg)
        second = ev.WorkflowCompleted(seq=2, time=now, result=result)
        status, close_time = rec.WorkflowStatus.COMPLETED, now
    else:
        # the workflow loop's call_at: round((now_s + delay_s) * 1000)
        delay = SLEEP if kind == "sleep" else timedelta(milliseconds=arg - now)
        fire_at = round((now / 1000.0 + delay.total_seconds()) * 1000)
        second = ev.TimerStarted(seq=2, time=now, timer_id="timer/1", fire_at=fire_at)
    snapshot = rec.WorkflowSnapshot(
        workflow_id=wf_id,
        run_id=run_id,
        workflow_type=wf_type,
        task_queue=TASK_QUEUE,
        status=status,
        start_time=now,
        last_seq=2,
        close_time=close_time,
        result=result,
        start_request_id=request_id,
        start_run_id=None if request_id is None else run_id,
    )
    return [
        WIRE.encode_event(wf_id, run_id, first),
        WIRE.encode_event(wf_id, run_id, second),
        WIRE.encode_snapshot(snapshot),
    ]


def _seed_chunk(job: tuple[str, str, int, str, int, int, int | None]) -> tuple[int, int]:
    """Write runs ``lo..hi-1`` of ``kind`` (in a pool process); (records, bytes)."""
    bootstrap, prefix, shards, kind, lo, hi, fire_at = job
    history = TopicLayout(prefix=prefix, shards=shards).history
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
        }
    )
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    records = size = 0
    now = now_ms()
    for n in range(lo, hi):
        if n % 1000 == 0:
            now = now_ms()
        wf_id = workflow_id(kind, n)
        partition = shard_for(wf_id, shards)
        # as the engine derives it, with the run's index standing in for the command offset
        run_id = str(uuid.uuid5(RUN_ID_NAMESPACE, f"{wf_id}/{partition}/{n}"))
        for enc in synthetic_run(kind, wf_id, run_id, now, n if fire_at is None else fire_at):
            while True:
                try:
                    producer.produce(
                        history,
                        key=enc.key,
                        value=enc.value,
                        headers=list(enc.headers),
                        partition=partition,
                        on_delivery=delivered,
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
            records += 1
            size += len(enc.key) + len(enc.value) + sum(len(k) + len(v) for k, v in enc.headers)
        producer.poll(0)
        if errors:
            break
    left = producer.flush(120)
    if errors or left:
        raise RuntimeError(f"seeding {kind} {lo}..{hi}: {left} undelivered, errors {errors[:3]}")
    return records, size


# --- processes and /proc --------------------------------------------------------------


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{name}/stat").read_text()
            parents[int(name)] = int(stat.rpartition(")")[2].split()[1])
    return parents


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def _status_kib(pid: int, name: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def tree_memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes, each summed over the process tree of ``pid``."""
    pids = process_tree(pid)
    return (
        sum(_status_kib(p, "VmRSS") for p in pids) * 1024,
        sum(_status_kib(p, "VmHWM") for p in pids) * 1024,
    )


def disk_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (what du counts)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


# --- the bench ------------------------------------------------------------------------


class WorkerExitedError(RuntimeError):
    """A worker process ended while the bench still needed it."""


class MemoryLimitError(RuntimeError):
    """A worker grew past --max-rss-gib; the bench killed it."""


@dataclass
class Worker:
    """One ``saga worker`` process and where its log lines start."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    log_from: int
    spawned: float
    engine: bool
    state_dir: Path | None
    expect_exit: bool = False

    def log_text(self, offset: int | None = None) -> str:
        with contextlib.suppress(OSError), self.log.open("rb") as f:
            f.seek(self.log_from if offset is None else offset)
            return f.read().decode(errors="replace")
        return ""

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0


@dataclass
class LogWatch:
    """Notes when ``count`` lines matching ``pattern`` appeared in a log past an offset."""

    worker: Worker
    pattern: str
    count: int
    offset: int
    seen_at: float | None = None

    def poll(self) -> bool:
        """True once the lines were seen."""
        text = self.worker.log_text(self.offset) if self.seen_at is None else ""
        if self.seen_at is None and len(re.findall(self.pattern, text)) >= self.count:
            self.seen_at = time.monotonic()
        return self.seen_at is not None


@dataclass
class LogWatches:
    """Notes when ``count`` matching lines appeared in several logs together."""

    watches: list[LogWatch]
    count: int
    seen_at: float | None = None

    def poll(self) -> bool:
        if self.seen_at is None:
            found = sum(
                len(re.findall(w.pattern, w.worker.log_text(w.offset))) for w in self.watches
            )
            if found >= self.count:
                self.seen_at = time.monotonic()
        return self.seen_at is not None


@dataclass
class Row:
    scenario: str
    figure: str
    value: str


@dataclass
class Bench:
    args: argparse.Namespace
    bootstrap: str
    logs: Path
    workers: list[Worker] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    help_text: str = ""
    idle_rss: int | None = None
    peak_rss: int = 0
    _checked_at: float = 0.0

    # --- capabilities of this build ---

    def read_help(self) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "worker", "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        self.help_text = out.stdout

    @property
    def has_state_dir(self) -> bool:
        return "--state-dir" in self.help_text

    @property
    def has_standby(self) -> bool:
        return "--standby / --no-standby" in self.help_text

    def row(self, scenario: str, figure: str, value: str) -> None:
        self.rows.append(Row(scenario, figure, value))
        print(f"  [{scenario}] {figure}: {value}", flush=True)

    # --- workers ---

    def layout(self, prefix: str) -> TopicLayout:
        layout = TopicLayout(prefix=prefix, shards=self.args.shards)
        ensure_topics(AdminClient({"bootstrap.servers": self.bootstrap}), layout, [TASK_QUEUE])
        return layout

    def start_worker(
        self,
        prefix: str,
        name: str,
        *,
        engine: bool = True,
        state_dir: Path | None = None,
        extra: Sequence[str] = (),
    ) -> Worker:
        """``saga worker`` for ``prefix`` with worker id ``<prefix>-<name>``; an engine
        worker gets bench.sleepers, --worker-arg, and --state-dir when the build has it
        (``state_dir``, else a new empty folder)."""
        argv: list[str] = ["--sagas", "bench.sleepers"]
        if engine:
            argv += self.args.worker_arg
            if self.has_state_dir:
                state_dir = state_dir or self.logs / "state" / f"{prefix}-{name}"
                state_dir.mkdir(parents=True, exist_ok=True)
                argv += ["--state-dir", str(state_dir)]
        else:
            argv += ["--no-engine", "--task-queue", TASK_QUEUE]
            state_dir = None
        argv += extra
        log = self.logs / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        proc = spawn(self.bootstrap, prefix, self.args.shards, name, self.logs, argv)
        worker = Worker(name, proc, log, offset, time.monotonic(), engine, state_dir)
        self.workers.append(worker)
        return worker

    def stop_worker(self, worker: Worker) -> None:
        worker.expect_exit = True
        stop_process(worker.proc, grace_s=30)

    def kill_worker(self, worker: Worker) -> float:
        """SIGKILL; returns the monotonic time of the kill."""
        worker.expect_exit = True
        killed = time.monotonic()
        worker.proc.kill()
        worker.proc.wait(30)
        return killed

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.expect_exit = True
            with contextlib.suppress(Exception):
                stop_process(worker.proc, grace_s=20)

    def check(self) -> None:
        """Raise if a worker the bench relies on died, or grew past --max-rss-gib."""
        for worker in self.workers:
            if worker.expect_exit:
                continue
            code = worker.proc.poll()
            if code is not None:
                worker.expect_exit = True
                raise WorkerExitedError(
                    f"worker {worker.name} exited with status {code} "
                    f"{time.monotonic() - worker.spawned:.1f}s after it started "
                    f"(log {worker.log})"
                )
        if time.monotonic() - self._checked_at < 1.0:
            return
        self._checked_at = time.monotonic()
        for worker in self.workers:
            if worker.expect_exit or not worker.engine:
                continue
            rss, _ = tree_memory(worker.proc.pid)
            self.peak_rss = max(self.peak_rss, rss)
            if rss > self.args.max_rss_gib * GIB:
                self.kill_worker(worker)
                raise MemoryLimitError(
                    f"worker {worker.name} reached {rss / GIB:.1f} GiB RSS (--max-rss-gib "
                    f"{self.args.max_rss_gib}); killed"
                )

    def wait_for(self, done: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll ``done`` (checking the workers) until true; its monotonic time."""
        deadline = time.monotonic() + timeout
        while not done():
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:.0f}s")
            time.sleep(0.05)
        return time.monotonic()

    def answered(
        self, client: Client, wf_id: str, timeout: float, watch: LogWatch | None = None
    ) -> float:
        """Start ``bench.noop`` as ``wf_id`` and wait for its START reply; the monotonic
        time it came. ``watch`` is polled meanwhile (and a few seconds after)."""
        box: dict[str, Any] = {}

        def go() -> None:
            try:
                client.start("bench.noop", 0, id=wf_id, task_queue=TASK_QUEUE, wait_started=timeout)
                box["at"] = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - handed to the waiting thread
                box["error"] = exc

        threading.Thread(target=go, name="probe", daemon=True).start()

        def done() -> bool:
            if watch is not None:
                watch.poll()
            if "error" in box:
                raise box["error"]
            return "at" in box

        self.wait_for(done, timeout + 1, f"START reply for {wf_id}")
        if watch is not None:
            with contextlib.suppress(TimeoutError):
                self.wait_for(watch.poll, 10, "log")
        return float(box["at"])

    def owned_watch(self, worker: Worker, count: int, offset: int | None = None) -> LogWatch:
        return LogWatch(
            worker,
            self.args.owned_log,
            count,
            worker.log_from if offset is None else offset,
        )

    def settle_memory(self, worker: Worker) -> tuple[int, int]:
        """Wait --settle-s, then the worker tree's (RSS, summed VmHWM) in bytes."""
        until = time.monotonic() + self.args.settle_s
        self.wait_for(lambda: time.monotonic() >= until, self.args.settle_s + 5, "settle")
        return tree_memory(worker.proc.pid)

    # --- loads ---

    def seed(self, scenario: str, prefix: str, kind: str, n: int, fire_at: int | None) -> None:
        procs = max(1, min(self.args.seed_procs, n // 1000 or 1))
        bounds = [n * i // procs for i in range(procs + 1)]
        jobs = [
            (self.bootstrap, prefix, self.args.shards, kind, bounds[i], bounds[i + 1], fire_at)
            for i in range(procs)
        ]
        began = time.monotonic()
        pool = multiprocessing.get_context("spawn").Pool(procs)
        try:
            pending = pool.map_async(_seed_chunk, jobs)
            pending.wait(self.args.seed_timeout)
            if not pending.ready():
                raise TimeoutError(f"seeding {n} runs: not within {self.args.seed_timeout:.0f}s")
            results = pending.get()
        finally:
            pool.terminate()
            pool.join()
        seconds = time.monotonic() - began
        records = sum(r for r, _ in results)
        size = sum(b for _, b in results)
        self.row(
            scenario,
            "seeded",
            f"{n} runs, {records} records in {seconds:.1f}s ({n / seconds:.0f} runs/s, "
            f"{procs} processes)",
        )
        self.row(scenario, "history bytes per execution (key+value+headers)", f"{size / n:.0f}")

    def client_starts(self, client: Client, items: list[tuple[str, str, int]]) -> float:
        """Start (kind, id, arg) runs through the client from --client-threads threads as
        fast as it goes (each start returns once Kafka has the command); seconds."""
        lock, stop = threading.Lock(), threading.Event()
        todo: Iterator[tuple[str, str, int]] = iter(items)
        errors: list[BaseException] = []

        def work() -> None:
            while not stop.is_set():
                with lock:
                    item = next(todo, None)
                if item is None:
                    return
                kind, wf_id, arg = item
                try:
                    client.start(WORKFLOW_TYPES[kind], arg, id=wf_id, task_queue=TASK_QUEUE)
                except Exception as exc:  # noqa: BLE001 - re-raised below
                    errors.append(exc)
                    stop.set()

        threads = [
            threading.Thread(target=work, name=f"load-{i}", daemon=True)
            for i in range(self.args.client_threads)
        ]
        began = time.monotonic()
        for t in threads:
            t.start()
        try:
            self.wait_for(
                lambda: not any(t.is_alive() for t in threads), self.args.timeout, "client load"
            )
        finally:
            stop.set()
        if errors:
            raise errors[0]
        return time.monotonic() - began

    # --- scenarios ---

    def idle(self) -> None:
        """An engine worker with nothing to do: the baseline of every per-run figure.
        Its prefix then serves to check seeded records against client-started runs."""
        prefix = f"scale{uuid.uuid4().hex[:6]}"
        layout = self.layout(prefix)
        with Client({"bootstrap.servers": self.bootstrap}, layout=layout) as client:
            worker = self.start_worker(prefix, "idle")
            at = self.answered(client, "idle-probe", self.args.timeout)
            self.row("idle", "ready (spawn -> a start answered)", f"{at - worker.spawned:.1f}s")
            rss, hwm = self.settle_memory(worker)
            self.idle_rss = rss
            self.row("idle", "worker RSS", f"{rss / 2**20:.0f} MiB (VmHWM {hwm / 2**20:.0f} MiB)")
            seeding = self.args.closed or self.args.load == "seed"
            if seeding and not self.args.no_verify_seed:
                self.verify_seed(client, layout)
            self.stop_worker(worker)

    def verify_seed(self, client: Client, layout: TopicLayout) -> None:
        """Start a few runs of each kind through the client and compare what the engine
        wrote with what the seeder writes for them, record by record."""
        fire_at = now_ms() + 3_600_000
        cases = [
            ("sleep", "verify-sleep-0", 7),
            ("sleep", "verify-sleep-1", 123456),
            ("storm", "verify-storm-0", fire_at),
            ("closed", "verify-closed-0", 9),
            ("closed", "verify-closed-1", 65536),
        ]
        for kind, wf_id, arg in cases:
            client.start(
                WORKFLOW_TYPES[kind], arg, id=wf_id, task_queue=TASK_QUEUE, wait_started=60
            )
        entries = [
            HistoryEntry(m.key(), m.value(), m.offset(), headers_of(m))
            for m in read_committed(
                {"bootstrap.servers": self.bootstrap}, layout.history, layout.shards, 60
            )
            if m.key() is not None
        ]
        problems: list[str] = []
        compared = 0
        for kind, wf_id, arg in cases:
            real = [e for e in entries if e.key.startswith(f"{wf_id}/".encode())]
            if not real:
                problems.append(f"{wf_id}: no history")
                continue
            started = WIRE.decode_event(real[0].headers, real[0].value).record.event
            assert isinstance(started, ev.WorkflowStarted)
            # the client's start carries a request id and a trace context, which a
            # seeded run has none of: take the request id from the engine's snapshot
            # and leave the traceparent header out of the comparison
            snapshot = WIRE.decode_history(real[-1].headers, real[-1].value).record
            request_id = getattr(snapshot, "start_request_id", None)
            seeded = synthetic_run(kind, wf_id, started.run_id, started.time, arg, request_id)
            real = [
                HistoryEntry(
                    e.key, e.value, e.offset, [h for h in e.headers if h[0] != "traceparent"]
                )
                for e in real
            ]
            if len(real) != len(seeded):
                problems.append(f"{wf_id}: engine wrote {len(real)} records, seeder {len(seeded)}")
            for got, want in zip(real, seeded, strict=False):
                compared += 1
                if (got.key, got.value, list(got.headers)) != (
                    want.key,
                    want.value,
                    list(want.headers),
                ):
                    problems.append(
                        f"{got.key.decode()}: engine {got.headers} "
                        f"{WIRE.decode_history(got.headers, got.value).record}\n"
                        f"    seeder {want.headers} "
                        f"{WIRE.decode_history(want.headers, want.value).record}"
                    )
        if problems:
            raise RuntimeError(
                "seeded records differ from the engine's:\n  " + "\n  ".join(problems)
            )
        self.row(
            "seed check",
            "client runs vs seeder",
            f"{len(cases)} runs, {compared} records identical (key, value, headers)",
        )

    def per_run(self, rss: int, n: int) -> str:
        if self.idle_rss is None:
            return "n/a (no idle baseline)"
        return f"{(rss - self.idle_rss) / n / 1024:.1f} KiB"

    def report_loaded(self, scenario: str, worker: Worker, n: int, when: str) -> None:
        rss, hwm = self.settle_memory(worker)
        self.row(
            scenario,
            f"worker RSS {when}",
            f"{rss / 2**20:.0f} MiB (VmHWM {hwm / 2**20:.0f} MiB)",
        )
        self.row(scenario, f"RSS per execution {when} (minus idle)", self.per_run(rss, n))
        if worker.state_dir is not None:
            size = disk_bytes(worker.state_dir)
            self.row(scenario, "state dir bytes per execution", f"{size / n:.0f}")
        else:
            self.row(
                scenario, "state dir bytes per execution", "n/a: this build has no --state-dir"
            )

    def restored(self, scenario: str, prefix: str, client: Client, name: str, n: int) -> Worker:
        """Start an engine worker on seeded/earlier history; time its restore."""
        standby = ["--standby"] if self.wants_standby() else []
        worker = self.start_worker(prefix, name, extra=standby)
        watch = self.owned_watch(worker, self.args.shards)
        at = self.answered(client, f"{name}-probe", self.args.timeout, watch)
        if watch.seen_at is not None:
            self.row(
                scenario,
                "restore: spawn -> shards logged",
                f"{watch.seen_at - worker.spawned:.1f}s "
                f"(/{self.args.owned_log}/ x{self.args.shards})",
            )
        self.row(scenario, "restore: spawn -> a start answered", f"{at - worker.spawned:.1f}s")
        if watch.seen_at is None:
            # a start on a restored shard is answered while other shards still restore:
            # memory is read once every shard is restored
            self.wait_for(watch.poll, self.args.timeout, "every shard restored")
            self.row(
                scenario,
                "restore: spawn -> every shard restored",
                f"{watch.seen_at - worker.spawned:.1f}s" if watch.seen_at else "not logged",
            )
        self.report_loaded(scenario, worker, n, "after restore")
        if self.args.wait_recovered:
            at = self.recovered(worker)
            self.row(
                scenario,
                "restore: spawn -> every run recovered (timers known)",
                f"{at - worker.spawned:.1f}s",
            )
            self.report_loaded(scenario, worker, n, "after recovery")
        return worker

    def recovered(self, worker: Worker, timeout: float | None = None) -> float:
        """Wait until every shard logged that the runs its restore touched are replayed
        (their timers known; a shard with nothing to recover logs nothing); the monotonic
        time it was seen."""
        watch = LogWatch(worker, self.args.recovered_log, self.args.shards, worker.log_from)
        return self.wait_for(watch.poll, timeout or self.args.timeout, "every run recovered")

    def wants_standby(self) -> bool:
        return "standby" in self.failover_variants() and self.has_standby

    def failover_variants(self) -> list[str]:
        return [v for v in (self.args.failover or "").split(",") if v]

    def sleeping(self, n: int) -> None:
        scenario = f"sleeping {n} ({self.args.load})"
        prefix = f"scale{uuid.uuid4().hex[:6]}"
        layout = self.layout(prefix)
        with Client({"bootstrap.servers": self.bootstrap}, layout=layout) as client:
            if self.args.load == "seed":
                self.seed(scenario, prefix, "sleep", n, None)
                if self.args.seed_only:
                    return
                worker = self.restored(scenario, prefix, client, "sleep-a", n)
            else:
                worker = self.start_worker(prefix, "sleep-live")
                self.answered(client, "sleep-live-probe", self.args.timeout)
                watcher = ReplyWatcher(self.bootstrap, layout.replies, rec.ReplyKind.START)
                watcher.start()
                try:
                    ids = [workflow_id("sleep", i) for i in range(n)]
                    seconds = self.client_starts(
                        client, [("sleep", w, i) for i, w in enumerate(ids)]
                    )
                    self.row(
                        scenario,
                        "client starts sent",
                        f"{n} in {seconds:.1f}s ({n / seconds:.0f}/s)",
                    )
                    began = time.monotonic() - seconds
                    wanted = set(ids)
                    at = self.wait_for(
                        lambda: len(wanted & watcher.done.keys()) >= n,
                        self.args.timeout,
                        "START replies",
                    )
                    self.row(
                        scenario,
                        "all started (first send -> last START reply)",
                        f"{at - began:.1f}s ({n / (at - began):.0f}/s)",
                    )
                finally:
                    watcher.stop.set()
                self.report_loaded(scenario, worker, n, "after client load")
                self.stop_worker(worker)
                worker = self.restored(scenario, prefix, client, "sleep-a", n)
            for variant in self.failover_variants():
                worker = self.failover(scenario, variant, prefix, client, worker, n)

    def closed(self, n: int) -> None:
        scenario = f"closed {n} (seed)"
        prefix = f"scale{uuid.uuid4().hex[:6]}"
        layout = self.layout(prefix)
        with Client({"bootstrap.servers": self.bootstrap}, layout=layout) as client:
            self.seed(scenario, prefix, "closed", n, None)
            if self.args.seed_only:
                return
            worker = self.restored(scenario, prefix, client, "closed-a", n)
            self.stop_worker(worker)

    def failover(
        self, scenario: str, variant: str, prefix: str, client: Client, active: Worker, n: int
    ) -> Worker:
        """kill -9 ``active``; time the shards being logged and a start being answered.
        Returns the worker now active."""
        label = f"{scenario} failover {variant}"
        if variant == "standby" and not self.has_standby:
            self.row(label, "failover", "not supported by this build (no --standby)")
            return active
        if variant not in ("fresh", "same-id", "standby"):
            raise SystemExit(f"unknown failover variant {variant!r}")
        shards = list(range(self.args.shards))
        spare: Worker | None = None
        if variant == "standby":
            spare = self.start_worker(
                prefix, f"sleep-standby-{len(self.workers)}", extra=["--standby"]
            )
            self.answered(client, f"{spare.name}-probe", self.args.timeout)
            time.sleep(self.args.standby_warmup_s)  # let the standby catch up
            shards = owned_shards(active) or [0]
        target = shards[0]
        probe = id_on_shard(f"{prefix}-{variant}-probe", target, self.args.shards)
        killed = self.kill_worker(active)
        if variant == "fresh":
            successor = self.start_worker(prefix, f"sleep-fresh-{len(self.workers)}")
            watch = self.owned_watch(successor, self.args.shards)
        elif variant == "same-id":
            successor = self.start_worker(prefix, active.name, state_dir=active.state_dir)
            watch = self.owned_watch(successor, self.args.shards)
        else:
            assert spare is not None
            successor = spare
            watch = self.owned_watch(spare, len(shards), spare.log_size())
        if variant == "same-id" and not self.has_state_dir:
            self.row(label, "note", "same worker id; this build has no --state-dir to keep")
        try:
            at = self.answered(client, probe, self.args.failover_timeout, watch)
        except (WorkerExitedError, TimeoutError, MemoryLimitError) as exc:
            watch.poll()
            self.row(label, "kill -> shards logged", self._since(watch.seen_at, killed))
            self.row(label, "kill -> a start answered", f"FAILED: {exc}")
            raise
        self.row(label, "kill -> shards logged", self._since(watch.seen_at, killed))
        self.row(label, f"kill -> a start answered (shard {target})", f"{at - killed:.1f}s")
        rss, _ = tree_memory(successor.proc.pid)
        self.row(label, "successor RSS", f"{rss / 2**20:.0f} MiB")
        return successor

    @staticmethod
    def _since(at: float | None, began: float) -> str:
        return "not logged" if at is None else f"{at - began:.1f}s"

    def storm(self, n: int) -> None:
        scenario = f"storm {n} ({self.args.load})"
        prefix = f"scale{uuid.uuid4().hex[:6]}"
        layout = self.layout(prefix)
        ids = [workflow_id("storm", i) for i in range(n)]
        lead = self.args.storm_at or (60 + n / 1000)
        fire_at = now_ms() + round(lead * 1000)
        with Client({"bootstrap.servers": self.bootstrap}, layout=layout) as client:
            if self.args.load == "seed":
                self.seed(scenario, prefix, "storm", n, fire_at)
            self.start_worker(prefix, "storm-activities", engine=False)
            engines = [
                self.start_worker(prefix, "storm-engine" + (f"-{i + 1}" if i else ""))
                for i in range(self.args.storm_engines)
            ]
            engine = engines[0]
            at = self.answered(client, "storm-probe", self.args.timeout)
            if self.args.load == "seed":
                # its reply listener would decode every RESULT of the storm for nothing
                client.close()
            self.row(
                scenario,
                f"{len(engines)} engine worker(s) ready (spawn -> a start answered)",
                f"{at - engine.spawned:.1f}s",
            )
            # seeded runs' timers are known once the recovery replays after the restore
            # are done: a timer due before that fires late
            recovery = (
                LogWatches(
                    [
                        LogWatch(e, self.args.recovered_log, self.args.shards, e.log_from)
                        for e in engines
                    ],
                    self.args.shards,
                )
                if self.args.load == "seed"
                else None
            )
            watcher = ReplyWatcher(self.bootstrap, layout.replies, counted=ids)
            watcher.start()
            steady_sent: dict[str, float] = {}
            steady_wall: dict[str, float] = {}
            stop_steady = threading.Event()
            steady = threading.Thread(
                target=self._steady,
                args=(layout, stop_steady, steady_sent, steady_wall),
                name="steady",
                daemon=True,
            )
            steady.start()
            loaded = steady_began = now_ms()
            try:
                if self.args.load == "client":
                    seconds = self.client_starts(client, [("storm", w, fire_at) for w in ids])
                    self.row(scenario, "client starts sent", f"{n} in {seconds:.1f}s")
                    loaded = now_ms()
                calm = max(loaded, steady_began + round(self.args.steady_warmup_s * 1000))
                late = now_ms() - fire_at
                if late > 0:
                    self.row(
                        scenario, "WARNING", f"load ended {late / 1000:.1f}s after the due time"
                    )
                self.row(scenario, "timers due", f"{lead:.0f}s after the bench began loading")
                fired = self._wait_storm(watcher, ids, fire_at, recovery)
                time.sleep(5)  # a little steady load after the storm too
            finally:
                stop_steady.set()
                steady.join(30)
            with contextlib.suppress(TimeoutError):
                self.wait_for(
                    lambda: all(k in watcher.done for k in steady_sent), 60, "steady sagas"
                )
            watcher.stop.set()
            if recovery is not None:
                self._report_recovery(scenario, engine, recovery, fire_at)
            self._report_storm(
                scenario, watcher, ids, fired, (calm, fire_at), steady_sent, steady_wall
            )

    def _report_recovery(
        self, scenario: str, engine: Worker, recovery: LogWatches, fire_at: int
    ) -> None:
        recovery.poll()
        if recovery.seen_at is None:
            self.row(scenario, "WARNING", "the engine's recovery replays were not logged as done")
            return
        wall = now_ms() - round((time.monotonic() - recovery.seen_at) * 1000)
        early = (fire_at - wall) / 1000
        self.row(
            scenario,
            "engine: spawn -> every run recovered (timers known)",
            f"{recovery.seen_at - engine.spawned:.1f}s, "
            + (f"{early:.1f}s before the due time" if early >= 0 else f"{-early:.1f}s AFTER it"),
        )

    def _steady(
        self,
        layout: TopicLayout,
        stop: threading.Event,
        sent: dict[str, float],
        sent_wall: dict[str, float],
    ) -> None:
        """Three-step sagas at --steady-rate/s, a second's worth at a time, until ``stop``."""
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 2})
        rate = self.args.steady_rate
        batch = max(1, round(rate))
        n = 0
        while not stop.is_set():
            ids = [f"steady-{i}" for i in range(n, n + batch)]
            n += batch
            send_starts(producer, layout, ids, rate, "bench.three_step", sent, sent_wall)

    def _wait_storm(
        self, watcher: ReplyWatcher, ids: list[str], fire_at: int, recovery: LogWatches | None
    ) -> int:
        """Wait until every storm run replied (or the bound); how many did."""
        bound = (fire_at - now_ms()) / 1000 + self.args.storm_timeout

        def done() -> bool:
            if recovery is not None:
                recovery.poll()
            # counted by the watcher as replies come: a scan of 100,000 ids every 50 ms
            # took a fifth of a core from the engines during the storm
            return watcher.counted >= len(ids)

        with contextlib.suppress(TimeoutError):
            self.wait_for(done, bound, "storm timers")
        return sum(1 for k in ids if k in watcher.done)

    def _report_storm(
        self,
        scenario: str,
        watcher: ReplyWatcher,
        ids: list[str],
        fired: int,
        calm_and_due: tuple[int, int],
        steady_sent: dict[str, float],
        steady_wall: dict[str, float],
    ) -> None:
        """When the timers fired, and the steady sagas' latency: those that started after
        loading (and a warm-up) and finished before the due time, and those in flight at
        some moment between the due time and the last timer fired."""
        calm, fire_at = calm_and_due
        done_wall = dict(watcher.done_wall_ms)
        times = sorted(done_wall[k] for k in ids if k in done_wall)
        self.row(scenario, "timers fired (RESULT replies seen)", f"{fired}/{len(ids)}")
        if times:
            self.row(scenario, "due -> first fired", f"{(times[0] - fire_at) / 1000:.1f}s")
            self.row(scenario, "due -> last fired", f"{(times[-1] - fire_at) / 1000:.1f}s")
        end = times[-1] if times and fired == len(ids) else now_ms()
        forever = float("inf")
        windows = {
            "before the storm": [
                k
                for k, t in steady_wall.items()
                if t >= calm and done_wall.get(k, forever) < fire_at
            ],
            "during the storm": [
                k
                for k, t in steady_wall.items()
                if t < end and done_wall.get(k, forever) >= fire_at
            ],
        }
        done = dict(watcher.done)
        for name, keys in windows.items():
            lat = sorted((done[k] - steady_sent[k]) * 1000 for k in keys if k in done)
            missing = len(keys) - len(lat)
            if len(lat) < 2:
                self.row(scenario, f"steady sagas {name}", f"{len(lat)} completed")
                continue
            q = statistics.quantiles(lat, n=100, method="inclusive")
            self.row(
                scenario,
                f"steady {self.args.steady_rate:g}/s {name}",
                f"p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms, max {lat[-1]:.0f} ms "
                f"({len(lat)} sagas{f', {missing} not completed' if missing else ''})",
            )

    def run(self) -> None:
        self.read_help()
        self.row(
            "build",
            "worker flags",
            f"--state-dir {'yes' if self.has_state_dir else 'no'}, "
            f"--standby {'yes' if self.has_standby else 'no'}",
        )
        scenarios: list[tuple[str, Callable[[], None]]] = []
        scenarios.append(("idle", self.idle))  # the RSS baseline; checks the seeder too
        for kind, runner in (
            ("sleeping", self.sleeping),
            ("closed", self.closed),
            ("storm", self.storm),
        ):
            for n in getattr(self.args, kind):
                scenarios.append((f"{kind} {n}", functools.partial(runner, n)))
        for name, scenario in scenarios:
            print(f"== {name}", flush=True)
            try:
                scenario()
            except (WorkerExitedError, TimeoutError, MemoryLimitError) as exc:
                self.row(name, "FAILED", str(exc))
            finally:
                for worker in self.workers:
                    if not worker.expect_exit:
                        self.stop_worker(worker)
            if self.peak_rss:
                self.row(
                    name, "peak worker RSS seen (1 s samples)", f"{self.peak_rss / 2**20:.0f} MiB"
                )
                self.peak_rss = 0


def owned_shards(worker: Worker) -> list[int]:
    """The shards a worker last said it owns (its revocation or metrics lines)."""
    found = re.findall(r"(?:owning|shards) \[([\d, ]*)\]", worker.log_text())
    return [int(s) for s in found[-1].split(",") if s.strip()] if found else []


def id_on_shard(base: str, shard: int, shards: int) -> str:
    for i in range(100_000):
        candidate = f"{base}-{i}"
        if shard_for(candidate, shards) == shard:
            return candidate
    raise RuntimeError(f"no id found for shard {shard}")


def print_table(rows: list[Row]) -> None:
    width = max((len(r.scenario) for r in rows), default=0)
    fig = max((len(r.figure) for r in rows), default=0)
    print()
    print(f"{'scenario':<{width}}  {'figure':<{fig}}  value")
    print(f"{'-' * width}  {'-' * fig}  -----")
    for r in rows:
        print(f"{r.scenario:<{width}}  {r.figure:<{fig}}  {r.value}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sleeping", type=int, action="append", default=[], metavar="N")
    parser.add_argument("--closed", type=int, action="append", default=[], metavar="N")
    parser.add_argument("--storm", type=int, action="append", default=[], metavar="N")
    parser.add_argument(
        "--load",
        choices=("seed", "client"),
        default="seed",
        help="seed history straight into Kafka, or start runs through the client",
    )
    parser.add_argument(
        "--failover",
        default="",
        help="with --sleeping: comma-separated variants among fresh, same-id, standby",
    )
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="passed to every engine worker (repeatable; --worker-arg=--flag for dashes)",
    )
    parser.add_argument("--seed-procs", type=int, default=2, help="processes encoding seeds")
    parser.add_argument("--client-threads", type=int, default=64)
    parser.add_argument("--settle-s", type=float, default=5.0, help="wait before reading RSS")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound of each wait (s)")
    parser.add_argument("--failover-timeout", type=float, default=120.0)
    parser.add_argument("--seed-timeout", type=float, default=1200.0)
    parser.add_argument("--standby-warmup-s", type=float, default=30.0)
    parser.add_argument(
        "--owned-log",
        default=r"restored shard \d+",
        help="regex of the log line a worker writes per shard it took over",
    )
    parser.add_argument(
        "--wait-recovered",
        action="store_true",
        help="--sleeping: after the restore, also wait for every shard's recovery replays "
        "(--recovered-log) and read memory again",
    )
    parser.add_argument(
        "--recovered-log",
        default=r"shard \d+: runs to recover after the restore all recovered",
        help="regex of the log line a shard writes once its recovery replays are done",
    )
    parser.add_argument("--storm-at", type=float, default=0.0, help="s after loading (0: auto)")
    parser.add_argument("--storm-timeout", type=float, default=300.0, help="s after the due time")
    parser.add_argument("--steady-rate", type=float, default=50.0)
    parser.add_argument(
        "--storm-engines",
        type=int,
        default=1,
        help="engine workers sharing the storm's shards (one process each)",
    )
    parser.add_argument(
        "--steady-warmup-s",
        type=float,
        default=15.0,
        help="steady sagas of the first seconds (after loading) are not counted",
    )
    parser.add_argument("--max-rss-gib", type=float, default=8.0, help="kill a worker past this")
    parser.add_argument("--no-verify-seed", action="store_true")
    parser.add_argument(
        "--seed-only",
        action="store_true",
        help="--sleeping/--closed with --load seed: time the seeding, start no worker on it",
    )
    args = parser.parse_args(argv)
    if not (args.sleeping or args.closed or args.storm):
        parser.error("nothing to do: give --sleeping, --closed and/or --storm")
    if args.failover and not args.sleeping:
        parser.error("--failover needs --sleeping")
    return args


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    command = shlex.join([sys.executable, *sys.argv])
    pythonpath = os.environ.get("PYTHONPATH")
    if pythonpath:
        command = f"PYTHONPATH={shlex.quote(pythonpath)} {command}"
    logs = Path(tempfile.mkdtemp(prefix="saga-scale-"))
    before = uptime()
    print(f"uptime before: {before}", flush=True)
    bench: Bench | None = None
    status = 0
    try:
        with providers.kafka() as kafka:
            bench = Bench(args, kafka.bootstrap_servers, logs)
            try:
                bench.run()
            finally:
                bench.stop_all()
    except KeyboardInterrupt:
        print("interrupted: stopped every worker and the broker", flush=True)
        status = 130
    finally:
        if bench is not None:
            print_table(bench.rows)
        print(f"\nuptime before: {before}")
        print(f"uptime after:  {uptime()}")
        print(f"logs: {logs}")
        print(f"command: {command}")
    sys.exit(status)


if __name__ == "__main__":
    main()
