"""The main job: 1,000 transfers through a bank outage and a worker crash, on real parts.

``python -m sagas.demo`` (``make demo``) starts Kafka and PostgreSQL (see
docs/development.md), the demo bank (HTTP + PostgreSQL, fault injection), two
worker processes (engine + activity worker each), then publishes transfers through
the Python client while it (1) closes the bank for a few seconds and (2) kills one
worker with SIGKILL and starts it again. Progress bars follow the outcomes as they
are committed; the summary checks that the money in the ledger is unchanged and
that the visibility projection in PostgreSQL (a projector thread in this process)
equals a rebuild from the log. Nothing is left running when it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.client import Client
from orchestrator.devstack import providers
from orchestrator.log.headers import headers_of
from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.visibility.compare import check as visibility_check
from orchestrator.visibility.freshness import ClosedRunsSampler, visibility_delays
from orchestrator.visibility.lag import wait_caught_up
from orchestrator.visibility.projector import Projector
from sagas.payments import TASK_QUEUE, TransferRequest

ROOT = Path(__file__).resolve().parents[1]
SHARDS = 8
OPENING_BALANCE = 10_000


@dataclass
class Outcomes:
    """RESULT replies seen so far (filled by a background consumer)."""

    finished: dict[str, float] = field(default_factory=dict)
    ok: dict[str, bool] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def watch_results(bootstrap: str, topic: str, outcomes: Outcomes, stop: threading.Event) -> None:
    wire = WireFormat()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 20,
        }
    )
    consumer.subscribe([topic])
    try:
        while not stop.is_set():
            for msg in consumer.consume(500, 0.1):
                if msg.error() is not None:
                    continue
                reply = wire.decode_reply(headers_of(msg), msg.value()).record
                if reply.kind is rec.ReplyKind.RESULT:
                    with outcomes.lock:
                        outcomes.finished.setdefault(reply.workflow_id, time.monotonic())
                        outcomes.ok.setdefault(reply.workflow_id, reply.ok)
    finally:
        consumer.close()


class Workers:
    """``saga worker`` processes for the payments saga; kill and restart on demand."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        with (self.logs / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "orchestrator.cli",
                    "worker",
                    "--sagas",
                    "sagas.payments",
                    "--task-queue",
                    TASK_QUEUE,
                    "--worker-id",
                    f"demo-{name}",
                    "--max-in-flight",  # what the demo bank serves without queueing
                    "32",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self, name: str) -> None:
        self.procs[name].kill()
        self.procs[name].wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_bank(dsn: str, logs: Path) -> tuple[subprocess.Popen[str], str]:
    log: IO[str] = (logs / "bank.log").open("a")
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.devstack.bank", "--dsn", dsn],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("BANK_URL="):
        proc.kill()
        raise RuntimeError(f"the bank did not start: {line!r} (see {logs / 'bank.log'})")
    return proc, line.removeprefix("BANK_URL=")


def make_transfers(count: int, accounts: list[str], rng: random.Random) -> list[TransferRequest]:
    transfers = []
    for i in range(count):
        source, target = rng.sample(accounts, 2)
        amount = rng.randrange(1, 500)
        if i % 50 == 7:
            target = "acct-closed"  # no such account: the deposit fails, the withdrawal is undone
        elif i % 50 == 23:
            amount = OPENING_BALANCE * 10  # more than anyone has: refused, nothing to undo
        transfers.append(
            TransferRequest(f"transfer-{i:04d}", source, target, amount, settle_within_s=120.0)
        )
    return transfers


@dataclass
class DemoSettings:
    transfers: int = 1000
    rate: float = 100.0
    outage_s: float = 5.0


def run(settings: DemoSettings, console: Console) -> bool:
    """Start the stack, run the demo, print the summary; True when every check passed."""
    began = time.monotonic()
    logs = Path(os.environ.get("SAGA_DEMO_LOGS") or f"/tmp/saga-demo-{uuid.uuid4().hex[:6]}")
    logs.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        with console.status("starting Kafka and PostgreSQL"):
            kafka = stack.enter_context(providers.kafka())
            pg = stack.enter_context(providers.postgres())
        console.print(
            f"[bold]Kafka[/] ({kafka.source}) {kafka.bootstrap_servers} · "
            f"[bold]PostgreSQL[/] ({pg.source}) · up in {time.monotonic() - began:.1f}s"
            f" · logs in {logs}"
        )
        return DemoRun(settings, console, kafka, pg, logs=logs, began=began).run()


class DemoRun:
    """One run of the demo against a running Kafka and PostgreSQL."""

    def __init__(
        self,
        settings: DemoSettings,
        console: Console,
        kafka: providers.KafkaHandle,
        pg: providers.PostgresHandle,
        *,
        logs: Path,
        began: float,
    ) -> None:
        self.settings, self.console, self.kafka, self.pg = settings, console, kafka, pg
        self.logs, self.began = logs, began
        self.layout = TopicLayout(prefix=f"demo{uuid.uuid4().hex[:6]}", shards=SHARDS)
        self.outcomes = Outcomes()
        self.sent: dict[str, float] = {}
        self.injected: list[str] = []
        self.transfers: list[TransferRequest] = []

    def run(self) -> bool:
        admin = AdminClient({"bootstrap.servers": self.kafka.bootstrap_servers})
        ensure_topics(admin, self.layout, [TASK_QUEUE])
        events_topic = f"{self.layout.prefix}.payments.events"
        admin.create_topics([NewTopic(events_topic, SHARDS, -1)])[events_topic].result(30)
        bank_proc, bank_url = start_bank(self.pg.dsn, self.logs)
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "SAGA_TOPIC_PREFIX": self.layout.prefix,
            "SAGA_SHARDS": str(SHARDS),
            "BANK_URL": bank_url,
        }
        workers = Workers(env, self.logs)
        visibility = self._start_visibility()
        stop = threading.Event()
        watcher = threading.Thread(
            target=watch_results,
            args=(self.kafka.bootstrap_servers, self.layout.replies, self.outcomes, stop),
        )
        try:
            with httpx.Client(base_url=bank_url, timeout=10) as bank:
                accounts = [f"acct-{i:03d}" for i in range(100)]
                for account in accounts:
                    bank.post(
                        "/accounts",
                        json={"account_id": account, "initial_balance": OPENING_BALANCE},
                    ).raise_for_status()
                total_before = int(bank.get("/total").json()["total"])
                self.console.print(
                    f"bank at {bank_url}: {len(accounts)} accounts, total {total_before:,}"
                )
                workers.start("w1")
                workers.start("w2")
                watcher.start()
                self.transfers = make_transfers(
                    self.settings.transfers, accounts, random.Random(42)
                )
                self._publish_and_follow(bank, workers)
                total_after = int(bank.get("/total").json()["total"])
                injected = bank.get("/admin/faults").json().get("injected", {})
            return self._summary(total_before, total_after, injected, visibility)
        finally:
            stop.set()
            for runner in visibility:
                runner.stop()
            workers.stop_all()
            bank_proc.terminate()
            bank_proc.wait(30)
            if watcher.is_alive():
                watcher.join(10)

    @property
    def visibility_table(self) -> str:
        return f"{self.layout.prefix}_runs"  # one table per demo run: runs never mix

    def _start_visibility(self) -> tuple[Projector, ClosedRunsSampler]:
        """The visibility projector (history -> PostgreSQL) and a sampler of its rows."""
        config = {"bootstrap.servers": self.kafka.bootstrap_servers}
        table = self.visibility_table
        projector = Projector(self.pg.dsn, config, self.layout, table=table).start()
        return projector, ClosedRunsSampler(self.pg.dsn, table, interval_s=0.05).start()

    def _visibility_row(self, visibility: tuple[Projector, ClosedRunsSampler]) -> tuple[str, bool]:
        """The summary line: runs projected, equal to a rebuild, delay after the outcome."""
        config = {"bootstrap.servers": self.kafka.bootstrap_servers}
        table = self.visibility_table
        lag = wait_caught_up(self.pg.dsn, config, self.layout, table=table, timeout_s=30)
        result = visibility_check(self.pg.dsn, config, self.layout, table=table)
        ok = result.equal and not lag and result.live_rows == len(self.transfers)
        with self.outcomes.lock:
            delays = visibility_delays(list(self.outcomes.finished.values()), visibility[1].samples)
        q = statistics.quantiles(delays, n=100) if len(delays) > 1 else [0.0] * 99
        text = (
            f"{result.live_rows:,} runs projected, matches rebuild: "
            + ("[green]yes[/]" if ok else "[red]NO[/]")
            + f"; visible {q[49] * 1000:.0f} / {q[98] * 1000:.0f} ms (p50/p99) after the outcome"
        )
        return text, ok

    def _publish_and_follow(self, bank: httpx.Client, workers: Workers) -> None:
        count, rate = len(self.transfers), self.settings.rate
        client = Client({"bootstrap.servers": self.kafka.bootstrap_servers}, layout=self.layout)
        columns = (
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console) as progress:
            bars = (
                progress.add_task("published", total=count),
                progress.add_task("completed", total=count),
                progress.add_task("compensated", total=count),
            )
            t0 = time.monotonic()
            for i, req in enumerate(self.transfers):
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                client.start("payments.transfer", req, id=req.transfer_id, task_queue=TASK_QUEUE)
                self.sent[req.transfer_id] = time.monotonic()
                progress.update(bars[0], completed=i + 1)
                if i == count * 3 // 10:
                    bank.put(
                        "/admin/faults", json={"outage_seconds": self.settings.outage_s}
                    ).raise_for_status()
                    self._note(
                        progress, t0, f"bank outage for {self.settings.outage_s:.0f}s", "yellow"
                    )
                if i == count * 6 // 10:
                    workers.kill("w1")
                    self._note(progress, t0, "SIGKILL worker w1 (restarted 2s later)", "red")
                    threading.Timer(2.0, workers.start, args=("w1",)).start()
                self._refresh(progress, bars)
            deadline = time.monotonic() + 240
            while len(self.outcomes.finished) < count and time.monotonic() < deadline:
                time.sleep(0.2)
                self._refresh(progress, bars)
            self._refresh(progress, bars)
        client.close()

    def _note(self, progress: Progress, t0: float, what: str, colour: str) -> None:
        self.injected.append(f"{time.monotonic() - t0:5.1f}s {what}")
        progress.console.print(f"[{colour}]{self.injected[-1]}[/]")

    def _refresh(self, progress: Progress, bars: tuple[Any, Any, Any]) -> None:
        with self.outcomes.lock:
            good = sum(self.outcomes.ok.values())
            bad = len(self.outcomes.ok) - good
        progress.update(bars[1], completed=good)
        progress.update(bars[2], completed=bad)

    def _summary(
        self,
        total_before: int,
        total_after: int,
        injected: dict[str, Any],
        visibility: tuple[Projector, ClosedRunsSampler],
    ) -> bool:
        transfers = self.transfers
        expected_undone = {
            t.transfer_id
            for t in transfers
            if t.target == "acct-closed" or t.amount > OPENING_BALANCE
        }
        with self.outcomes.lock:
            finished, ok = dict(self.outcomes.finished), dict(self.outcomes.ok)
        latencies = sorted((finished[k] - self.sent[k]) * 1000 for k in finished if k in self.sent)
        q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
        kinds = Counter("completed" if ok[k] else "compensated" for k in ok)
        as_expected = all(
            ok.get(t.transfer_id) == (t.transfer_id not in expected_undone) for t in transfers
        )
        conserved = total_before == total_after
        retried = count_retries(self.kafka.bootstrap_servers, self.layout)
        table = Table(title=f"{len(transfers):,} transfers")
        table.add_column("what")
        table.add_column("value", justify="right")
        table.add_row("completed", f"{kinds['completed']:,}")
        table.add_row(
            "compensated (closed account, insufficient funds)", f"{kinds['compensated']:,}"
        )
        table.add_row("unfinished", f"{len(transfers) - len(finished):,}")
        table.add_row("activity attempts retried", f"{sum(retried.values()):,}")
        for reason, n in retried.most_common(3):
            table.add_row(f"  {reason}", f"{n:,}")
        table.add_row(
            "bank faults injected", ", ".join(f"{k}={v}" for k, v in injected.items()) or "-"
        )
        table.add_row("latency start -> outcome p50 / p99", f"{q[49]:.0f} / {q[98]:.0f} ms")
        table.add_row("every outcome as expected", "[green]yes[/]" if as_expected else "[red]NO[/]")
        table.add_row("ledger total before -> after", f"{total_before:,} -> {total_after:,}")
        table.add_row("money conserved", "[green]yes[/]" if conserved else "[red]NO[/]")
        visible, visible_ok = self._visibility_row(visibility)
        table.add_row("visibility (PostgreSQL)", visible)
        table.add_row("run time", f"{time.monotonic() - self.began:.1f}s")
        self.console.print(table)
        for line in self.injected:
            self.console.print(f"  injected at {line}")
        return conserved and as_expected and len(finished) == len(transfers) and visible_ok


def count_retries(bootstrap: str, layout: TopicLayout) -> Counter[str]:
    """Failed activity attempts by error type, read back from the history topic."""
    from orchestrator.engine.events import ActivityAttemptFailed

    wire = WireFormat()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([layout.history])
    retried: Counter[str] = Counter()
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < 2.0:
            msgs = consumer.consume(2000, 0.2)
            if msgs:
                idle_since = time.monotonic()
            for msg in msgs:
                if msg.error() is not None or msg.value() is None:
                    continue
                record = wire.decode_history(headers_of(msg), msg.value()).record
                if not isinstance(record, rec.WorkflowSnapshot) and isinstance(
                    record.event, ActivityAttemptFailed
                ):
                    failure = record.event.failure
                    retried[failure.type] += 1
    finally:
        consumer.close()
    return retried


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sagas.demo", description=__doc__)
    parser.add_argument("--transfers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="transfers published per second")
    parser.add_argument("--outage", type=float, default=5.0, help="bank holiday length (s)")
    args = parser.parse_args(argv)
    console = Console()
    ok = run(DemoSettings(args.transfers, args.rate, args.outage), console)
    console.print("[bold green]demo passed[/]" if ok else "[bold red]demo FAILED[/]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
