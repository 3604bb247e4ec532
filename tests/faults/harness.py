"""What every fault scenario shares: worker processes, load, and the end-of-run audit.

A scenario starts worker processes (``python -m orchestrator.cli worker``, each with
a visibility projector: one active, the others standing by), sends
transfer sagas (``tests.integration.transfer_sagas``), breaks something while they
run, waits (bounded) for one outcome per saga, stops everything, and then calls
:func:`audit`, which checks every invariant against the raw topics and the ledger
and raises on the first broken one.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from orchestrator.converter import DataConverter
from orchestrator.engine import events as ev
from orchestrator.log.partitioner import shard_for
from orchestrator.log.topics import TopicLayout
from orchestrator.log.watermarks import watermarks
from orchestrator.serde import records as rec
from orchestrator.serde.wire import WireFormat
from orchestrator.visibility.compare import check as visibility_check
from orchestrator.visibility.lag import wait_caught_up
from tests.integration.kafka_reading import read_topic
from tests.integration.transfer_sagas import SCHEMA, Transfer

SHARDS = 4
QUEUE = "payments"
ACCOUNTS = [f"acct-{i}" for i in range(20)]
# large enough that no random walk of a few thousand transfers overdraws an account
OPENING = 1_000_000
CLOSED = "closed-account"
WIRE, CONV = WireFormat(), DataConverter()
#: summary lines of this session's scenarios, repeated by conftest at the end of the run
SUMMARIES: list[str] = []


def soak() -> int:
    """The soak multiplier: ``SAGA_FAULTS_SOAK=N`` multiplies counts and durations (default 1)."""
    raw = os.environ.get("SAGA_FAULTS_SOAK", "1") or "1"
    return max(1, int(raw))


# --------------------------------------------------------------------------- workers


WATCHDOG_EXIT = 70  # `saga worker` exits with it when an engine cycle is stuck


@dataclass
class WorkerProcess:
    """One ``orchestrator.cli worker`` process that can be SIGKILLed and started again.

    Restarts keep the worker id, so the new incarnation fences the old one's
    transactional producer at once.
    """

    name: str
    env: dict[str, str]
    logs: Path
    engine: bool = True
    activities: bool = True
    projector: bool = True  # one is active per deployment, the others stand by
    extra: tuple[str, ...] = ()  # more `saga worker` options
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.logs / f"{self.name}.log"

    @property
    def state_dir(self) -> Path:
        """Its shard stores (each worker has its own disk, as in production)."""
        return Path(self.env["SAGA_STATE_DIR"])

    def start(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "worker",
            "--sagas",
            "tests.integration.transfer_sagas",
            "--worker-id",
            f"{self.env['SAGA_TOPIC_PREFIX']}-{self.name}",
        ]
        if self.activities:
            argv += ["--task-queue", QUEUE]
        if not self.engine:
            argv.append("--no-engine")
        if self.projector:
            argv.append("--projector")
        argv += self.extra
        self.starts += 1
        with self.log_path.open("ab") as out:
            out.write(f"\n===== start #{self.starts} at {time.time():.3f}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        """Its current start said ``ready``: its engine producer is initialised (which
        fences its predecessor's), its consumers are about to join their groups, and
        SIGTERM drains it."""
        banner = f"===== start #{self.starts} at".encode()
        text = self.log_path.read_bytes()
        return b"\nready\n" in text[text.rfind(banner) :]

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        """When its current start said ``ready`` (epoch s; polled every 20 ms)."""
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            assert self.alive(), f"{self.name} exited before it was ready"
            assert time.monotonic() < deadline, f"{self.name} not ready after {timeout_s}s"
            time.sleep(0.02)
        return time.time()

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, transactions left open."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM with a drain; SIGKILL if it hangs. Returns the exit code.

        A process (re)started moments ago is first let get ``ready`` (up to 60 s): a
        SIGTERM before it has installed its handler ends it at once, with -15.
        """
        if self.proc is None:
            return None
        deadline = time.monotonic() + 60
        while self.alive() and not self.ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@dataclass
class Workers:
    """A set of worker processes, all stopped by :meth:`stop_all` (also on failure)."""

    bootstrap: str
    prefix: str
    dsn: str
    logs: Path
    members: list[WorkerProcess] = field(default_factory=list)

    def add(
        self,
        name: str,
        *,
        engine: bool = True,
        activities: bool = True,
        extra: tuple[str, ...] = (),
    ) -> WorkerProcess:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SAGA_TOPIC_PREFIX": self.prefix,
            "SAGA_SHARDS": str(SHARDS),
            "TRANSFER_TEST_DSN": self.dsn,
            "DATABASE_URL": self.dsn,  # the visibility projection lives next to the ledger
            "SAGA_STATE_DIR": str(self.logs / f"state-{name}"),
        }
        worker = WorkerProcess(
            name, env, self.logs, engine=engine, activities=activities, extra=extra
        )
        worker.start()
        self.members.append(worker)
        return worker

    watchdog_restarts: int = 0
    _stop_supervising: threading.Event = field(default_factory=threading.Event)

    def supervise(self) -> None:
        """Be the supervisor production has (systemd, Kubernetes): restart a worker
        that its watchdog ended (exit status 70), with the same worker id."""

        def loop() -> None:
            while not self._stop_supervising.wait(0.5):
                for w in self.members:
                    if w.proc is not None and w.proc.poll() == WATCHDOG_EXIT:
                        self.watchdog_restarts += 1
                        w.start()

        threading.Thread(target=loop, name="supervisor", daemon=True).start()

    projection_lag: dict[int, int] | None = None
    """What the projection had left to project when the workers stopped (None: no wait)."""

    def stop_all(self) -> dict[str, int | None]:
        """Stop every worker, after letting a running projector catch up (bounded)."""
        self._stop_supervising.set()
        if self.projection_lag is None and any(w.projector and w.alive() for w in self.members):
            layout = TopicLayout(prefix=self.prefix, shards=SHARDS)
            config = reader_config({"bootstrap.servers": self.bootstrap})
            self.projection_lag = wait_caught_up(self.dsn, config, layout, timeout_s=60)
        return {w.name: w.stop() for w in self.members}

    def stacks(self) -> str:
        """Python stacks of every live worker (py-spy, when installed): why is it stuck?"""
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(spy).exists():
            return "(py-spy not installed: no stacks)"
        parts = []
        for w in self.members:
            if w.proc is not None and w.alive():
                dump = subprocess.run(
                    [spy, "dump", "--pid", str(w.proc.pid)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                parts.append(f"--- stacks of {w.name}\n{dump.stdout}{dump.stderr}")
        return "\n".join(parts)

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for w in self.members:
            if w.log_path.exists():
                parts.append(f"--- {w.name}\n{w.log_path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)


@contextlib.contextmanager
def running_workers(bootstrap: str, prefix: str, dsn: str, logs: Path) -> Iterator[Workers]:
    workers = Workers(bootstrap, prefix, dsn, logs)
    workers.supervise()
    try:
        yield workers
    finally:
        workers.stop_all()


class Chaos:
    """A background thread that injects one fault every ``interval_s`` (randomised).

    ``inject(rng)`` does the damage and returns a label; labels are counted.
    Exceptions stop the thread and are re-raised by :meth:`stop`.
    """

    def __init__(
        self,
        inject: Callable[[random.Random], str],
        interval_s: tuple[float, float],
        seed: int,
    ) -> None:
        self._inject = inject
        self._interval = interval_s
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.injected: Counter[str] = Counter()
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._rng.uniform(*self._interval)):
                self.injected[self._inject(self._rng)] += 1
        except BaseException as exc:
            self.error = exc

    def start(self) -> Chaos:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)
        if self.error is not None:
            raise self.error


# --------------------------------------------------------------------------- load


def prepare_ledger(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(SCHEMA)
        conn.cursor().executemany(
            "INSERT INTO accounts VALUES (%s, %s)", [(a, OPENING) for a in ACCOUNTS]
        )


def make_transfers(count: int, seed: int) -> list[Transfer]:
    """``count`` transfers; every tenth targets a closed account and must compensate."""
    rng = random.Random(seed)
    found = []
    for i in range(count):
        source = rng.choice(ACCOUNTS)
        target = CLOSED if i % 10 == 0 else rng.choice([a for a in ACCOUNTS if a != source])
        found.append(Transfer(f"tx-{i}", source, target, rng.randrange(1, 300)))
    return found


def send_paced(
    config: dict[str, Any], layout: TopicLayout, batch: list[Transfer], per_s: float
) -> threading.Thread:
    """Send ``batch`` from a background thread at about ``per_s`` starts a second, so a
    fault injected early lands while sagas still arrive, however fast they finish."""

    def run() -> None:
        chunk = max(1, int(per_s / 10))
        for i in range(0, len(batch), chunk):
            send(config, layout, batch[i : i + chunk])
            time.sleep(0.1)

    sender = threading.Thread(target=run, name="paced-sender", daemon=True)
    sender.start()
    return sender


def send(config: dict[str, Any], layout: TopicLayout, batch: list[Transfer]) -> None:
    """Start commands keyed by transfer id, on the transfer's shard."""
    producer = Producer({**config, "enable.idempotence": True})
    for t in batch:
        produce_start(producer, layout, t)
    left = producer.flush(60)
    assert left == 0, f"{left} start commands not acknowledged within 60 s"


def produce_start(producer: Producer, layout: TopicLayout, t: Transfer) -> None:
    """Produce the start command of ``t``, keyed by its id, on its shard (not flushed)."""
    enc = WIRE.encode_command(
        rec.StartWorkflow(
            workflow_id=t.transfer_id,
            workflow_type="transfer.v1",
            task_queue=QUEUE,
            input=[CONV.to_payload(t)],
        )
    )
    producer.produce(
        layout.commands,
        key=enc.key,
        value=enc.value,
        headers=list(enc.headers),
        partition=shard_for(t.transfer_id, SHARDS),
    )
    producer.poll(0)


class SteadySender:
    """Sends start commands at a steady ``per_s`` from a background thread until stopped
    (or out of transfers), in the batch's order, and records when each was sent.

    The sends follow an absolute schedule (the i-th at ``began + i / per_s``): a send
    the thread was late for is made at once, so the offered rate holds on average on a
    loaded machine. One producer for the whole run (no flush per send).
    """

    def __init__(
        self, config: dict[str, Any], layout: TopicLayout, batch: list[Transfer], per_s: float
    ) -> None:
        self.per_s = per_s
        #: when the i-th transfer of the batch was produced (epoch s); only appended to,
        #: so a copy taken while it runs is consistent and sorted
        self.sent_at: list[float] = []
        self.error: BaseException | None = None
        self._config, self._layout, self._batch = config, layout, batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-sender", daemon=True)

    def _run(self) -> None:
        try:
            producer = Producer({**self._config, "enable.idempotence": True, "linger.ms": 0})
            began = time.monotonic()
            for i, t in enumerate(self._batch):
                if self._stop.wait(max(0.0, began + i / self.per_s - time.monotonic())):
                    break
                produce_start(producer, self._layout, t)
                self.sent_at.append(time.time())
            left = producer.flush(60)
            assert left == 0, f"{left} start commands not acknowledged within 60 s"
        except BaseException as exc:
            self.error = exc

    def start(self) -> SteadySender:
        self._thread.start()
        return self

    def stop(self) -> list[Transfer]:
        """Stop sending; returns the transfers sent (raises what the thread raised)."""
        self._stop.set()
        self._thread.join(90)
        if self.error is not None:
            raise self.error
        return self._batch[: len(self.sent_at)]


def _headers(msg: Message) -> list[tuple[str, bytes | None]]:
    """librdkafka returns header values as bytes (or None); its stubs allow more."""
    raw = msg.headers() or []
    pairs = list(raw.items()) if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]


def reader_config(config: dict[str, Any]) -> dict[str, Any]:
    """Settings for the test's own readers while brokers come and go.

    librdkafka refreshes a topic's metadata every 5 minutes unless a request fails
    with a leadership error; a watermark query to a dead leader just times out, so
    a reader created moments before the leader moved keeps asking the dead node.
    """
    return {**config, "topic.metadata.refresh.interval.ms": 1000}


def read_all(config: dict[str, Any], topic: str, timeout_s: float = 120) -> list[Message]:
    """:func:`read_topic` with fresh consumers until it succeeds (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return read_topic(reader_config(config), topic, SHARDS, timeout_s=60)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _results(config: dict[str, Any], layout: TopicLayout) -> Iterator[tuple[Message, rec.Reply]]:
    """Every committed RESULT reply, with its record."""
    for msg in read_all(config, layout.replies):
        reply = WIRE.decode_reply(_headers(msg), msg.value()).record
        if reply.kind is rec.ReplyKind.RESULT:
            yield msg, reply


def outcomes(config: dict[str, Any], layout: TopicLayout) -> list[rec.Reply]:
    return [reply for _, reply in _results(config, layout)]


def outcome_times(config: dict[str, Any], layout: TopicLayout) -> dict[str, float]:
    """Saga id -> when its outcome was written (epoch s), for rates over time.

    The time is the reply record's timestamp (CreateTime): the engine's clock when it
    produced the reply, inside the transaction that made it visible, which commits
    within the same engine cycle. Replies of aborted transactions are not read, so a
    reply re-decided after a crash counts when it was written again.
    """
    found: dict[str, float] = {}
    for msg, reply in _results(config, layout):
        found.setdefault(reply.workflow_id, msg.timestamp()[1] / 1000)
    return found


def finished(config: dict[str, Any], layout: TopicLayout) -> int:
    """How many distinct sagas have reported an outcome so far."""
    return len({r.workflow_id for r in outcomes(config, layout)})


def wait_for_outcomes(
    config: dict[str, Any],
    layout: TopicLayout,
    wanted: int,
    timeout_s: float,
    stall_s: float | None = None,
) -> int:
    """Poll the replies topic until ``wanted`` distinct sagas reported (bounded).

    With ``stall_s``, give up early when no saga finished for that long: a stuck
    worker then fails the test in a minute instead of at the timeout.
    """
    deadline = time.monotonic() + timeout_s
    last, last_change = -1, time.monotonic()
    while True:
        done = finished(config, layout)
        if done != last:
            last, last_change = done, time.monotonic()
        if done >= wanted or time.monotonic() > deadline:
            return done
        if stall_s is not None and time.monotonic() - last_change > stall_s:
            return done
        time.sleep(1)


# --------------------------------------------------------------------------- audit


@dataclass
class Audit:
    """What the end-of-run audit counted."""

    sagas: int
    completed: int
    compensated: int
    effects: int
    deliveries: int
    retried_attempts: int  # ActivityAttemptFailed + ActivityTimedOut events in history
    history_events: int
    partitions_checked: int
    projected_runs: int  # visibility rows, equal to a rebuild from the log

    @property
    def redeliveries(self) -> int:
        return self.deliveries - self.effects


def no_open_transactions(
    config: dict[str, Any], admin: AdminClient, layout: TopicLayout, timeout_s: float = 30
) -> int:
    """Assert that every partition of the orchestrator's topics has LSO == high watermark.

    A read_committed handle reports the last stable offset as its high watermark; a
    read_uncommitted one the log end. They differ while a transaction is open. With
    every worker stopped, none may stay open (a killed producer's transaction must
    have been aborted by fencing or by its timeout). Waits up to ``timeout_s``.
    """
    topics = [layout.commands, layout.history, layout.replies, layout.task_queue(QUEUE)]
    meta = admin.list_topics(timeout=30).topics
    parts = [(t, p) for t in topics for p in sorted(meta[t].partitions)]
    handles = {
        level: Consumer(
            {**reader_config(config), "group.id": f"audit-{level}", "isolation.level": level}
        )
        for level in ("read_committed", "read_uncommitted")
    }
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            open_ = []
            for topic, p in parts:
                lso = watermarks(handles["read_committed"], topic, p)[1]
                end = watermarks(handles["read_uncommitted"], topic, p)[1]
                if lso != end:
                    open_.append(f"{topic}/{p}: LSO {lso} < end {end}")
            if not open_:
                return len(parts)
            if time.monotonic() > deadline:
                raise AssertionError(f"transactions left open after {timeout_s}s: {open_}")
            time.sleep(1)
    finally:
        for handle in handles.values():
            handle.close()


def audit(
    config: dict[str, Any],
    admin: AdminClient,
    layout: TopicLayout,
    dsn: str,
    transfers: list[Transfer],
    logs: str = "",
) -> Audit:
    """Check every invariant; raise AssertionError naming the first one broken."""
    # one outcome per saga: completed, or failed after its compensation ran
    done = outcomes(config, layout)
    per_id = Counter(r.workflow_id for r in done)
    expected = {t.transfer_id for t in transfers}
    missing = sorted(expected - set(per_id))
    assert not missing, f"{len(missing)} sagas without outcome, e.g. {missing[:5]}\n{logs}"
    assert set(per_id) == expected, f"unexpected outcomes: {sorted(set(per_id) - expected)[:5]}"
    twice = [k for k, n in per_id.items() if n > 1]
    assert not twice, f"sagas with two outcomes: {twice[:5]}"
    by_id = {r.workflow_id: r for r in done}
    for t in transfers:
        ok = by_id[t.transfer_id].ok
        assert ok == (t.target != CLOSED), f"{t}: {by_id[t.transfer_id].error}"

    # history: one run per saga; sequence numbers 1..n, no gap, no duplicate
    seqs: dict[tuple[str, str], list[int]] = {}
    retried = events = 0
    for msg in read_all(config, layout.history):
        if msg.value() is None:
            continue  # a tombstone of a reclaimed execution
        record = WIRE.decode_history(_headers(msg), msg.value()).record
        if isinstance(record, rec.WorkflowSnapshot):
            continue
        events += 1
        if isinstance(record.event, ev.ActivityAttemptFailed | ev.ActivityTimedOut):
            retried += 1
        seqs.setdefault((record.workflow_id, record.run_id), []).append(record.event.seq)
    runs = Counter(wf for wf, _ in seqs)
    assert set(runs) == expected, "history lacks some sagas"
    assert max(runs.values()) == 1, f"sagas with two runs: {[k for k, n in runs.items() if n > 1]}"
    for key, found in seqs.items():
        assert found == list(range(1, len(found) + 1)), f"history of {key} is {found}"

    # ledger: each side effect once; the right ones; money conserved; balances add up
    with psycopg.connect(dsn) as conn:
        effects = conn.execute(
            "SELECT idempotency_key, op, transfer_id, account, amount FROM side_effects"
        ).fetchall()
        balances: dict[str, int] = dict(conn.execute("SELECT id, balance FROM accounts").fetchall())
        deliveries_row = conn.execute("SELECT count(*) FROM deliveries").fetchone()
    deliveries = int(deliveries_row[0]) if deliveries_row else 0
    keys = Counter(e[0] for e in effects)
    assert max(keys.values(), default=1) == 1, "an idempotency key was applied twice"
    ops = Counter((e[2], e[1]) for e in effects)
    for t in transfers:
        want = (1, 0, 1) if t.target == CLOSED else (1, 1, 0)
        got = (ops[(t.transfer_id, "debit")], ops[(t.transfer_id, "credit")])
        got_full = (*got, ops[(t.transfer_id, "refund")])
        assert got_full == want, f"{t.transfer_id}: debit/credit/refund = {got_full}, want {want}"
    assert sum(balances.values()) == OPENING * len(ACCOUNTS), "money was created or destroyed"
    per_account: Counter[str] = Counter()
    for _, _, _, account, amount in effects:
        per_account[account] += amount
    for account, balance in balances.items():
        assert balance == OPENING + per_account[account], f"{account}: balance != its effects"

    projected = audit_visibility(config, layout, dsn, transfers)
    partitions = no_open_transactions(config, admin, layout)
    completed = sum(1 for t in transfers if t.target != CLOSED)
    return Audit(
        sagas=len(transfers),
        completed=completed,
        compensated=len(transfers) - completed,
        effects=len(effects),
        deliveries=deliveries,
        retried_attempts=retried,
        history_events=events,
        partitions_checked=partitions,
        projected_runs=projected,
    )


def audit_visibility(
    config: dict[str, Any], layout: TopicLayout, dsn: str, transfers: list[Transfer]
) -> int:
    """The visibility projection (written by the workers' projectors through every fault)
    reached the end of the history topic, equals a rebuild from the raw log, and shows
    each saga with its final status. Returns the number of projected runs."""
    lag = wait_caught_up(dsn, reader_config(config), layout, timeout_s=30)
    assert not lag, f"the projection is behind the history topic: {lag} records left"
    check = visibility_check(dsn, reader_config(config), layout)
    assert check.equal, "projection != rebuild:\n" + "\n".join(map(str, check.differences))
    with psycopg.connect(dsn) as conn:
        rows = dict(conn.execute("SELECT workflow_id, status FROM saga_runs").fetchall())
    want = {t.transfer_id: "FAILED" if t.target == CLOSED else "COMPLETED" for t in transfers}
    wrong = [(k, rows.get(k), v) for k, v in want.items() if rows.get(k) != v]
    assert not wrong, f"{len(wrong)} runs with a wrong status (id, got, want): {wrong[:5]}"
    assert len(rows) == len(want), f"{len(rows) - len(want)} unexpected rows"
    return check.live_rows


def summary(
    scenario: str, result: Audit, faults: dict[str, int], duration_s: float, extra: str = ""
) -> str:
    """One line per scenario, printed by the test (``pytest -s`` shows it; docs quote it);
    ``extra`` (the scenario's own measurements) is appended to it."""
    fault_text = ", ".join(f"{k}={v}" for k, v in sorted(faults.items())) or "none"
    line = (
        f"FAULTS {scenario}: sagas={result.sagas} (completed={result.completed} "
        f"compensated={result.compensated}) faults[{fault_text}] "
        f"redeliveries={result.redeliveries} retried_attempts={result.retried_attempts} "
        f"effects={result.effects} history_events={result.history_events} "
        f"partitions_without_open_txn={result.partitions_checked} "
        f"projected_runs={result.projected_runs} (= rebuild) duration={duration_s:.1f}s"
    )
    if extra:
        line += f" {extra}"
    print(line)
    SUMMARIES.append(line)
    return line
