"""Scenario f: how long outcomes take to flow again after a worker is SIGKILLed and
restarted 2 s later under its id (issue 10: <= 10 s).

The three processes of scenario a (engine + activity worker, engine only, activity
worker only) serve transfers offered at a steady :data:`RATE_PER_S` for the whole
scenario. Once the outcomes keep up with that rate (:func:`steady`), each process in
turn is SIGKILLed, started again :data:`RESTART_AFTER_S` later with the same worker id,
and the next kill waits until the outcomes have recovered (see :func:`recovery`). A
kill made before the pipeline kept up (bounded waits) is flagged and left out of the
median: from a backlog, other shards catching up can pass for recovered flow.

Recovery time of a kill at ``k``: ``t - k`` for the earliest ``t >= k`` from which
each of the next :data:`WINDOWS` consecutive 1 s windows ``[t + j, t + j + 1)``
holds at least :data:`SHARE` of the offered rate in outcomes (an outcome counts at
its reply record's timestamp: :func:`tests.faults.harness.outcome_times`). Reported
with it, per kill: when the restarted process said ``ready``, the lowest 1 s outcome
rate after the kill (how hard the kill hit), the backlog of sent but unfinished
sagas at the kill, and when that backlog was worked off again (:func:`drained`).

Only a stuck pipeline fails the test (:data:`BOUND_S`): the machine is shared, so the
10 s target is reported (summary line, docs/faults.md), not asserted. Every invariant
of the other scenarios is audited afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.log.topics import TopicLayout, ensure_topics
from tests.faults import harness as h

RATE_PER_S = 20.0
RESTART_AFTER_S = 2.0
WINDOWS = 3  # consecutive 1 s windows ...
SHARE = 0.9  # ... each with at least this share of the offered rate
STEP_S = 0.05  # resolution of the search for the recovery moment
TARGET_S = 10.0  # issue 10's acceptance target, reported only
BOUND_S = 30.0  # asserted: beyond this the pipeline is stuck, not slow
#: a kill waits (up to STEADY_WAIT_S; the first one up to WARM_UP_S, while the workers
#: start) until the pipeline keeps up (see steady()), with at most this many seconds of
#: offered sagas unfinished; if it does not get there, the kill is made anyway and
#: flagged (a loaded machine, not a fault of the code under test)
STEADY_BACKLOG_S = 3.0
STEADY_WAIT_S = 10.0
WARM_UP_S = 30.0
#: reply records reach the test's reader this long after their timestamp, at most
#: (transaction commit + fetch); windows closer to now than that are not judged yet
SETTLE_S = 1.5
STALL_S = 60.0

pytestmark = [pytest.mark.integration, pytest.mark.faults]
T = TypeVar("T")


def rate_at(done: list[float], start: float) -> int:
    """Outcomes in the 1 s window ``[start, start + 1)`` (``done`` sorted)."""
    return bisect_left(done, start + 1.0) - bisect_left(done, start)


def recovery(done: list[float], kill: float, rate: float, until: float) -> float | None:
    """Seconds from ``kill`` to the earliest ``t >= kill`` (searched in STEP_S steps)
    from which each of the WINDOWS 1 s windows holds >= SHARE * ``rate`` outcomes.

    ``done``: sorted outcome times. None while no such ``t`` is found whose windows
    end by ``until`` (the outcomes after that are not known yet).
    """
    need = SHARE * rate
    i = 0
    while (t := kill + i * STEP_S) + WINDOWS <= until:
        if all(rate_at(done, t + j) >= need for j in range(WINDOWS)):
            return t - kill
        i += 1
    return None


def dip(done: list[float], kill: float, recovered_s: float) -> int:
    """The lowest 1 s outcome count between the kill and the recovery."""
    steps = int(recovered_s / STEP_S) + 1
    return min(rate_at(done, kill + i * STEP_S) for i in range(steps))


def backlog(sent: list[float], done: list[float], t: float) -> int:
    """Sagas sent by ``t`` minus sagas finished by ``t`` (both sorted)."""
    return bisect_right(sent, t) - bisect_right(done, t)


def drained(sent: list[float], done: list[float], kill: float, until: float) -> float | None:
    """Seconds from ``kill`` to the first moment, after the backlog's peak between
    ``kill`` and ``until``, at which the backlog is back to its level at the kill, or
    to STEADY_BACKLOG_S of offered sagas if that is more (None: never)."""
    level = max(backlog(sent, done, kill), STEADY_BACKLOG_S * RATE_PER_S)
    curve = [backlog(sent, done, kill + i * STEP_S) for i in range(int((until - kill) / STEP_S))]
    i = curve.index(max(curve)) if curve else 0
    while (t := kill + i * STEP_S) <= max(done, default=kill):
        if backlog(sent, done, t) <= level:
            return t - kill
        i += 1
    return None


def test_recovery_measure_on_made_up_outcomes() -> None:
    """The measure itself: 20/s offered; outcomes at 20/s, none between 12 s and
    15 s, then 30/s (working off the backlog) until 25 s."""
    done = sorted([i / 20 for i in range(12 * 20)] + [15 + i / 30 for i in range(10 * 30)])
    sent = [i / 20 for i in range(30 * 20)]
    assert recovery(done, kill=5.0, rate=20, until=30) == 0.0  # never dipped
    got = recovery(done, kill=12.0, rate=20, until=30)
    # from 14.6 s: [14.6, 15.6) holds 0.6 s of 30/s = 18 = 90% of 20, the next two 30
    assert got is not None and abs(got - 2.6) <= STEP_S / 2
    assert recovery(done, kill=12.0, rate=20, until=17.5) is None  # not judged yet
    assert dip(done, 12.0, 3.0) == 0
    # 61 unfinished at 15 s (the peak), worked off at 10/s net down to the floor
    floor = STEADY_BACKLOG_S * 20
    got_drained = drained(sent, done, kill=12.0, until=12.0 + 2.6 + WINDOWS)
    want = max(15.0, (210 - floor) / 10) - 12.0  # backlog(t) = 210 - 10 t from 15 s
    assert got_drained is not None and abs(got_drained - want) <= 2 * STEP_S


@dataclass
class Kill:
    victim: str
    at: float  # epoch s
    restart: float = 0.0
    ready: float = 0.0
    steady_before: bool = True  # the pipeline kept up when it was killed (see steady())
    backlog_before: int = 0
    recovered_s: float | None = None  # from the final outcome times
    dip_per_s: int = 0
    drained_s: float | None = None

    def text(self) -> str:
        rec = "stuck" if self.recovered_s is None else f"{self.recovered_s:.1f}s"
        drain = "never" if self.drained_s is None else f"{self.drained_s:.1f}s"
        mark = "" if self.steady_before else ",NOT-STEADY-BEFORE"
        return (
            f"{self.victim}={rec}(ready+{self.ready - self.restart:.1f}s,dip={self.dip_per_s}/s"
            f",backlog_before={self.backlog_before},drained={drain}{mark})"
        )


def steady(sent: list[float], done: list[float], t: float) -> bool:
    """The pipeline keeps up at ``t``: each of the WINDOWS 1 s windows before it holds
    >= SHARE of the offered rate, and at most STEADY_BACKLOG_S of offered sagas are
    unfinished. Each kill waits for such a state (bounded)."""
    rates = all(rate_at(done, t - j - 1) >= SHARE * RATE_PER_S for j in range(WINDOWS))
    return rates and backlog(sent, done, t) <= STEADY_BACKLOG_S * RATE_PER_S


def recovered_since(at: float) -> Callable[[list[float], list[float], float], float | None]:
    """A :func:`poll` judge: the recovery time of a kill at ``at``, once known."""
    return lambda _sent, done, until: recovery(done, at, RATE_PER_S, until)


def poll(
    config: dict[str, Any],
    layout: TopicLayout,
    sender: h.SteadySender,
    judge: Callable[[list[float], list[float], float], T | None],
    timeout_s: float,
) -> T | None:
    """Read the outcomes every 0.5 s until ``judge(sent, done, until)`` is not None
    (bounded); ``until``: up to when the outcomes are known (now - SETTLE_S)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = sorted(h.outcome_times(config, layout).values())
        found = judge(list(sender.sent_at), done, time.time() - SETTLE_S)
        if found is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.mark.timeout(300)
def test_outcomes_flow_again_after_worker_sigkills(
    kafka_config: dict[str, Any],
    admin: AdminClient,
    topic_prefix: str,
    database: str,
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    load_before = os.getloadavg()
    h.prepare_ledger(database)
    layout = TopicLayout(prefix=topic_prefix, shards=h.SHARDS)
    ensure_topics(admin, layout, [h.QUEUE])
    offered = h.make_transfers(int(RATE_PER_S * 240), seed=81)  # more than it will send
    bootstrap = kafka_config["bootstrap.servers"]
    kills: list[Kill] = []

    def is_steady(sent: list[float], done: list[float], until: float) -> bool | None:
        return True if steady(sent, done, until) else None

    with h.running_workers(bootstrap, topic_prefix, database, tmp_path) as workers:
        pool = [
            workers.add("mixed"),
            workers.add("engine", activities=False),
            workers.add("activities", engine=False),
        ]
        sender = h.SteadySender(kafka_config, layout, offered, RATE_PER_S).start()
        try:
            for n, victim in enumerate(pool):
                kill = Kill(victim.name, time.time())
                wait_s = STEADY_WAIT_S if n else WARM_UP_S
                kill.steady_before = bool(poll(kafka_config, layout, sender, is_steady, wait_s))
                kill.at = time.time()
                victim.kill()
                time.sleep(RESTART_AFTER_S)
                kill.restart = time.time()
                victim.start()
                kill.ready = victim.wait_ready()
                kills.append(kill)
                poll(
                    kafka_config,
                    layout,
                    sender,
                    recovered_since(kill.at),
                    BOUND_S + WINDOWS + SETTLE_S,
                )
        finally:
            transfers = sender.stop()
        done_n = h.wait_for_outcomes(kafka_config, layout, len(transfers), 240.0, stall_s=STALL_S)
        stacks = workers.stacks() if done_n < len(transfers) else ""
        codes = workers.stop_all()
        logs = workers.log_tail()
    assert done_n == len(transfers), f"only {done_n}/{len(transfers)} finished\n{logs}\n{stacks}"
    assert all(code == 0 for code in codes.values()), f"unclean exits {codes}\n{logs}"

    # the figures, from every outcome
    finished_at = h.outcome_times(kafka_config, layout)
    done = sorted(finished_at.values())
    sent = sender.sent_at
    for k in kills:
        k.backlog_before = backlog(sent, done, k.at)
        k.recovered_s = recovery(done, k.at, RATE_PER_S, until=sent[-1])
        k.dip_per_s = dip(done, k.at, k.recovered_s if k.recovered_s is not None else BOUND_S)
        peak_by = k.at + (k.recovered_s if k.recovered_s is not None else BOUND_S) + WINDOWS
        k.drained_s = drained(sent, done, k.at, peak_by)
    latencies = [finished_at[t.transfer_id] - at for t, at in zip(transfers, sent, strict=True)]
    raw = {"sent": sent, "done": finished_at, "kills": [dataclasses.asdict(k) for k in kills]}
    (tmp_path / "recovery.json").write_text(json.dumps(raw))  # for a closer look
    # the median of the kills measured from a steady state: from a backlog, a catch-up
    # burst of other shards can pass for recovered flow (the others are shown, flagged)
    figures = [k.recovered_s if k.recovered_s is not None else BOUND_S for k in kills]
    measured = [f for f, k in zip(figures, kills, strict=True) if k.steady_before]
    median = statistics.median(measured) if measured else float("nan")
    verdict = "met" if median <= TARGET_S else "MISSED" if measured else "not measured"
    load_after = os.getloadavg()
    extra = (
        f"offered={RATE_PER_S:.0f}/s recovery[{' '.join(k.text() for k in kills)}] "
        f"median={f'{median:.1f}s' if measured else 'n/a'}({len(measured)} steady)"
        f" target<={TARGET_S:.0f}s:{verdict}"
        f" saga_latency_p50={statistics.median(latencies):.2f}s"
        f" load1={load_before[0]:.1f}->{load_after[0]:.1f}"
    )
    print(extra)
    stuck = [k.text() for k in kills if k.recovered_s is None or k.recovered_s > BOUND_S]
    assert not stuck, f"outcomes did not flow at {RATE_PER_S}/s again: {stuck}\n{logs}"

    result = h.audit(kafka_config, admin, layout, database, transfers, logs)
    faults = {f"sigkill_{k.victim}": 1 for k in kills} | {"sigkill_total": len(kills)}
    h.summary("f/recovery-time", result, faults, time.monotonic() - began, extra)
