"""The fold from history records to visibility rows, without Kafka or PostgreSQL."""

from __future__ import annotations

import random
from typing import Any

import pytest

from orchestrator.converter import DataConverter, Payload
from orchestrator.engine import events as ev
from orchestrator.engine.journal import STATUS_OF as _STATUS_OF
from orchestrator.serde import records as rec
from orchestrator.serde.encryption import AesGcmCodec
from orchestrator.serde.keys import event_key, snapshot_key
from orchestrator.serde.wire import WireFormat
from orchestrator.visibility.batch import HistoryMessage, fold_batch, workflow_ids
from orchestrator.visibility.fold import (
    _STATUS_AFTER,
    RunKey,
    RunState,
    apply_event,
    apply_snapshot,
    json_safe,
    parse_history_key,
    payload_decoder,
)
from orchestrator.visibility.sink import from_ms, to_ms
from orchestrator.visibility.store import RunRow, decode_cursor, encode_cursor

CONV = DataConverter()
DECODE = payload_decoder()
WIRE = WireFormat()
RETRY = ev.RetryPolicyRecord(initial_ms=100, backoff=2.0, maximum_ms=1000)
T0 = 1_700_000_000_000
KEY = b"\x01" * 32


def started(wf: str = "wf", run: str = "r1", **attrs: Any) -> ev.WorkflowStarted:
    return ev.WorkflowStarted(
        seq=1,
        time=T0,
        workflow_type="order",
        workflow_id=wf,
        run_id=run,
        task_queue="q",
        search_attributes={k: CONV.to_payload(v) for k, v in attrs.items()},
        memo={"note": CONV.to_payload("hello")},
    )


def scheduled(seq: int, activity_seq: int, kind: str) -> ev.ActivityScheduled:
    return ev.ActivityScheduled(
        seq=seq,
        time=T0 + seq,
        activity_seq=activity_seq,
        activity_type=kind,
        task_queue="q",
        retry_policy=RETRY,
    )


def completed(seq: int, activity_seq: int) -> ev.ActivityCompleted:
    return ev.ActivityCompleted(
        seq=seq, time=T0 + seq, activity_seq=activity_seq, attempt=1, result=CONV.to_payload(1)
    )


def fold(events: list[ev.Event], state: RunState | None = None) -> RunState:
    for e in events:
        state = apply_event(state, "wf", "r1", e, shard=3, decode=DECODE)
    assert state is not None
    return state


def test_status_of_every_event_matches_the_engine() -> None:
    engine = {cls: status.name for cls, status in _STATUS_OF.items()}
    assert {k: v for k, v in _STATUS_AFTER.items() if k is not ev.WorkflowStarted} == engine


def test_a_saga_that_compensates_and_fails() -> None:
    fail = ev.Failure(message="card declined", type="ApplicationError", non_retryable=True)
    state = fold([started(customer="acme")])
    assert (state.status, state.current_step, state.history_length) == ("RUNNING", None, 1)
    assert state.search_attributes == {"customer": "acme"} and state.memo == {"note": "hello"}
    assert (state.start_time, state.close_time, state.shard) == (T0, None, 3)

    state = fold([scheduled(2, 1, "reserve")], state)
    assert state.current_step == "reserve"
    state = fold([scheduled(3, 2, "notify")], state)  # two at once: the latest shows
    assert state.current_step == "notify"
    state = fold([completed(4, 2)], state)
    assert state.current_step == "reserve"
    retry = ev.ActivityAttemptFailed(
        seq=5, time=T0 + 5, activity_seq=1, attempt=1, failure=fail, next_retry_at=T0 + 9
    )
    state = fold([retry], state)
    assert state.current_step == "reserve", "a step waiting for its retry is current"
    state = fold(
        [
            ev.ActivityFailed(seq=6, time=T0 + 6, activity_seq=1, attempt=2, failure=fail),
            ev.CompensationStarted(seq=7, time=T0 + 7, saga_id=1, compensations=["release"]),
            scheduled(8, 3, "release"),
        ],
        state,
    )
    assert (state.status, state.current_step) == ("COMPENSATING", "release")
    state = fold(
        [completed(9, 3), ev.CompensationCompleted(seq=10, time=T0 + 10, saga_id=1)], state
    )
    assert (state.status, state.current_step) == ("RUNNING", None)
    state = fold([ev.WorkflowFailed(seq=11, time=T0 + 11, failure=fail)], state)
    assert (state.status, state.error, state.close_time) == ("FAILED", "card declined", T0 + 11)
    assert state.history_length == 11 and state.pending == {}


def test_every_terminal_event_closes_the_run() -> None:
    fail = ev.Failure(message="boom", type="X")
    can = ev.WorkflowContinuedAsNew(
        seq=3, time=T0 + 3, new_run_id="r2", workflow_type="order", task_queue="q"
    )
    ends: list[tuple[ev.Event, str, str | None]] = [
        (ev.WorkflowCompleted(seq=3, time=T0 + 3, result=CONV.to_payload(1)), "COMPLETED", None),
        (ev.WorkflowCancelled(seq=3, time=T0 + 3), "CANCELLED", None),
        (ev.WorkflowTerminated(seq=3, time=T0 + 3, reason="by ops"), "TERMINATED", "by ops"),
        (
            ev.WorkflowCompensationFailed(seq=3, time=T0 + 3, failure=fail),
            "COMPENSATION_FAILED",
            "boom",
        ),
        (can, "CONTINUED_AS_NEW", None),
    ]
    for end, status, error in ends:
        state = fold([started(), scheduled(2, 1, "reserve"), end])
        got = (state.status, state.error, state.close_time, state.current_step)
        assert got == (status, error, T0 + 3, None)


def test_a_repaired_run_is_open_again_until_its_next_close() -> None:
    fail = ev.Failure(message="boom", type="X")
    closed = fold([started(), ev.WorkflowCompensationFailed(seq=2, time=T0 + 2, failure=fail)])
    assert (closed.status, closed.close_time) == ("COMPENSATION_FAILED", T0 + 2)
    repaired = ev.CompensationRepaired(seq=3, time=T0 + 3, action="skip", activity_type="undo")
    state = fold([repaired, scheduled(4, 1, "undo_a")], closed)
    assert (state.status, state.close_time, state.error) == ("COMPENSATING", None, None)
    assert state.current_step == "undo_a"
    state = fold([ev.WorkflowFailed(seq=5, time=T0 + 5, failure=fail)], state)
    assert (state.status, state.close_time, state.error) == ("FAILED", T0 + 5, "boom")


def test_a_pause_shows_until_the_unpause_or_the_close() -> None:
    pause = ev.WorkflowPaused(seq=2, time=T0 + 2, reason="audit", operator="ann")
    state = fold([started(), pause])
    assert (state.status, state.paused) == ("RUNNING", "ann: audit")
    held = ev.InputDeferred(seq=3, time=T0 + 3, kind="signal", name="go")
    assert fold([held], state).paused == "ann: audit"
    unpaused = fold([started(), pause, held, ev.WorkflowUnpaused(seq=4, time=T0 + 4)])
    assert (unpaused.status, unpaused.paused) == ("RUNNING", None)
    ended = fold([started(), pause, ev.WorkflowTerminated(seq=3, time=T0 + 3, reason="x")])
    assert (ended.status, ended.paused) == ("TERMINATED", None)


def test_build_ids_of_the_deciding_workers_in_first_seen_order() -> None:
    events: list[ev.Event] = [
        started(),
        ev.TimerStarted(seq=2, time=T0, build_id="b-1", timer_id="timer/1", fire_at=T0 + 9),
        ev.TimerFired(seq=3, time=T0 + 9, timer_id="timer/1"),
        ev.TimerStarted(seq=4, time=T0 + 9, build_id="b-2", timer_id="timer/2", fire_at=T0 + 99),
        ev.TimerCancelled(seq=5, time=T0 + 9, build_id="b-1", timer_id="timer/2"),
        ev.MarkerRecorded(seq=6, time=T0 + 9, build_id="", marker_name="m", marker_id="1"),
    ]
    assert fold(events).build_ids == ["b-1", "b-2"]


def test_applying_an_event_again_changes_nothing() -> None:
    events = [started(), scheduled(2, 1, "a"), completed(3, 1)]
    state = fold(events)
    for e in events:
        assert apply_event(state, "wf", "r1", e, shard=3, decode=DECODE) is state
    assert apply_event(None, "wf", "r1", completed(3, 1), shard=0, decode=DECODE) is None


def _with_attributes(attrs: dict[str, Payload]) -> ev.WorkflowStarted:
    base = started()
    fields = {name: getattr(base, name) for name in base.__dataclass_fields__}
    return ev.WorkflowStarted(**{**fields, "search_attributes": attrs})


def test_search_attributes_merge_and_unreadable_values_become_null() -> None:
    secret = AesGcmCodec({"k": KEY}, "k").encode([CONV.payload_converter.encode("x")])[0]
    attrs = {
        "nan": CONV.to_payload(float("nan")),
        "nul": CONV.to_payload("a\x00b"),
        "secret": secret,
        "raw": Payload({"encoding": b"binary/plain"}, b"\x00\xff"),
        "nested": CONV.to_payload({"k": [1, 2.5, None, True]}),
    }
    state = fold(
        [
            _with_attributes(attrs),
            ev.SearchAttributesUpserted(
                seq=2, time=T0, attributes={"stage": CONV.to_payload("paid")}
            ),
            ev.MemoUpserted(seq=3, time=T0, memo={"extra": CONV.to_payload(7)}),
        ]
    )
    assert state.search_attributes == {
        "nan": None,
        "nul": "ab",
        "secret": None,
        "raw": None,
        "nested": {"k": [1, 2.5, None, True]},
        "stage": "paid",
    }
    assert state.memo == {"note": "hello", "extra": 7}
    # given the key, the projector reads the encrypted value
    keyed = payload_decoder(DataConverter(codec=AesGcmCodec({"k": KEY}, "k")))
    again = apply_event(None, "wf", "r1", _with_attributes(attrs), shard=0, decode=keyed)
    assert again is not None and again.search_attributes["secret"] == "x"


def test_json_safe() -> None:
    assert json_safe({"a": (1, float("inf")), 2: "x\x00"}) == {"a": [1, None], "2": "x"}
    assert json_safe(object()) is None and json_safe(b"raw") is None


def snapshot(
    run: str, status: rec.WorkflowStatus, parked: str | None = None
) -> rec.WorkflowSnapshot:
    return rec.WorkflowSnapshot(
        workflow_id="wf",
        run_id=run,
        workflow_type="order",
        task_queue="q",
        status=status,
        start_time=T0,
        last_seq=2,
        parked=parked,
    )


def test_snapshots_only_park_open_runs_of_the_same_run() -> None:
    state = fold([started(), scheduled(2, 1, "a")])
    parked = apply_snapshot(state, snapshot("r1", rec.WorkflowStatus.RUNNING, "nondeterminism"))
    assert parked.parked == "nondeterminism" and state.parked is None
    assert apply_snapshot(state, snapshot("other", rec.WorkflowStatus.RUNNING, "x")) is state
    assert apply_snapshot(parked, snapshot("r1", rec.WorkflowStatus.RUNNING)).parked is None
    closed = fold([ev.WorkflowTerminated(seq=3, time=T0 + 3, reason="stop")], parked)
    assert closed.parked is None
    assert apply_snapshot(closed, snapshot("r1", rec.WorkflowStatus.TERMINATED, "x")) is closed


def test_history_keys() -> None:
    assert parse_history_key(event_key("a/b", "run", 12)) == ("a/b", "run")
    assert parse_history_key(snapshot_key("a/b")) == ("a/b", None)
    for bad in (b"nokey", b"a/b/c", b"/run/1", b"\xff\xfe/r/1"):
        with pytest.raises((ValueError, UnicodeDecodeError)):
            parse_history_key(bad)


def test_times_and_cursors_round_trip() -> None:
    for ms in (0, T0, T0 + 1, T0 + 999, 253402300799999):
        assert to_ms(from_ms(ms)) == ms
    row = RunRow(
        workflow_id="w/1",
        run_id="r",
        workflow_type="t",
        task_queue="q",
        status="RUNNING",
        start_time=from_ms(T0 + 123),
        close_time=None,
        current_step=None,
        history_length=1,
        search_attributes={},
        memo={},
        error=None,
        parked=None,
        paused=None,
        build_ids=[],
        shard=0,
        updated_at=from_ms(T0),
    )
    assert decode_cursor(encode_cursor(row)) == (row.start_time, "w/1", "r")
    for bad in ("", "!!!", "W10", "WyJhIiwiYiIsImMiXQ"):  # "", junk, [], ["a","b","c"]
        with pytest.raises(ValueError, match="cursor"):
            decode_cursor(bad)


# --------------------------------------------------------------------------- batches


def message(offset: int, encoded: Any) -> HistoryMessage:
    return HistoryMessage(0, offset, encoded.key, encoded.value, list(encoded.headers))


def tombstone(offset: int, key: bytes) -> HistoryMessage:
    return HistoryMessage(0, offset, key, None, [])


class EngineLikeLog:
    """A shard's log as the engine writes it: runs interleaved, snapshots on status
    changes, parked runs, second runs of a workflow id, retention tombstones."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.log: list[HistoryMessage] = []
        self.live: dict[str, dict[str, Any]] = {}
        self.closed: list[tuple[str, str, int]] = []

    def put(self, encoded: Any) -> None:
        self.log.append(message(len(self.log), encoded))

    def snap(self, wf: str, status: rec.WorkflowStatus, parked: str | None = None) -> None:
        r = self.live[wf]
        s = rec.WorkflowSnapshot(
            workflow_id=wf,
            run_id=r["run"],
            workflow_type="order",
            task_queue="q",
            status=status,
            start_time=T0,
            last_seq=r["seq"],
            parked=parked,
        )
        self.put(WIRE.encode_snapshot(s))

    def event(self, wf: str, e: ev.Event) -> None:
        self.put(WIRE.encode_event(wf, self.live[wf]["run"], e))

    def step(self, n: int) -> None:
        wf = f"wf-{self.rng.randrange(8)}"
        r = self.live.get(wf)
        if r is None or r["closed"]:
            self.live[wf] = {"run": f"run{n}", "seq": 1, "acts": 0, "closed": False}
            self.event(wf, started(wf, f"run{n}", n=n))
            self.snap(wf, rec.WorkflowStatus.RUNNING)
            return
        roll = self.rng.random()
        if roll < 0.1:
            self.snap(wf, rec.WorkflowStatus.RUNNING, self.rng.choice(["nondeterminism", None]))
            return
        r["seq"] += 1
        seq = r["seq"]
        if roll < 0.45:
            r["acts"] += 1
            self.event(wf, scheduled(seq, r["acts"], f"step{r['acts']}"))
        elif roll < 0.65 and r["acts"]:
            self.event(wf, completed(seq, r["acts"]))
        elif roll < 0.8:
            attrs = {"s": CONV.to_payload(seq)}
            self.event(wf, ev.SearchAttributesUpserted(seq=seq, time=T0, attributes=attrs))
        else:
            self.event(wf, ev.WorkflowCompleted(seq=seq, time=T0 + seq, result=CONV.to_payload(1)))
            r["closed"] = True
            self.snap(wf, rec.WorkflowStatus.COMPLETED)
            self.closed.append((wf, r["run"], seq))

    def expire_oldest(self) -> None:
        wf, run, last = self.closed.pop(0)
        for s in range(1, last + 1):
            self.log.append(tombstone(len(self.log), event_key(wf, run, s)))
        if self.live[wf]["run"] == run:
            self.log.append(tombstone(len(self.log), snapshot_key(wf)))

    @classmethod
    def build(cls, seed: int, steps: int = 150) -> list[HistoryMessage]:
        log = cls(seed)
        for n in range(steps):
            log.step(n)
            if log.closed and log.rng.random() < 0.1:
                log.expire_oldest()
        return log.log


def project(log: list[HistoryMessage], batch: int) -> dict[RunKey, RunState]:
    """Fold a log batch by batch over an in-memory table, as the projector does."""
    table: dict[RunKey, RunState] = {}
    for i in range(0, len(log), batch):
        chunk = log[i : i + batch]
        ids = workflow_ids(chunk)
        loaded = {k: v for k, v in table.items() if k[0] in ids}
        result = fold_batch(chunk, loaded, WIRE, DECODE)
        for key in result.deletes:
            del table[key]
        for state in result.upserts:
            table[state.key] = state
        assert result.next_offsets == {0: chunk[-1].offset + 1}
    return table


def compact(log: list[HistoryMessage], drop_tombstones: bool) -> list[HistoryMessage]:
    """What log compaction keeps: the latest record of each key (and, once
    delete.retention.ms passed, no tombstones)."""
    last = {m.key: m.offset for m in log}
    kept = [m for m in log if last[m.key] == m.offset]
    return [m for m in kept if m.value is not None] if drop_tombstones else kept


@pytest.mark.parametrize("seed", range(8))
def test_projection_is_the_same_for_any_batching_and_after_compaction(seed: int) -> None:
    log = EngineLikeLog.build(seed)
    reference = project(log, 1)
    assert reference, "the log produced rows"
    assert any(m.value is None for m in log), "the log holds retention tombstones"
    parked = [
        m
        for m in log
        if m.key is not None
        and m.key.endswith(b"/snapshot")
        and m.value is not None
        and getattr(WIRE.decode_history(m.headers, m.value).record, "parked", None)
    ]
    assert parked, "the log parks runs"
    for batch in (7, 50, len(log)):
        assert project(log, batch) == reference
    assert project(compact(log, drop_tombstones=False), 13) == reference
    assert project(compact(log, drop_tombstones=True), 13) == reference


def test_tombstones_delete_reclaimed_runs_only() -> None:
    log: list[HistoryMessage] = []
    for wf in ("a", "b"):
        log.append(message(len(log), WIRE.encode_event(wf, "r1", started(wf, "r1"))))
    cancelled = ev.WorkflowCancelled(seq=2, time=T0)
    log.append(message(len(log), WIRE.encode_event("a", "r1", cancelled)))
    log.append(tombstone(len(log), snapshot_key("b")))  # b is open: stays
    log.append(tombstone(len(log), snapshot_key("a")))  # a is closed: goes
    log.append(tombstone(len(log), event_key("zzz", "r", 1)))  # unknown: nothing happens
    result = fold_batch(log, {}, WIRE, DECODE)
    assert [s.key for s in result.upserts] == [("b", "r1")]
    assert result.tombstones == 3 and result.events == 3 and result.undecodable == 0
    # the same tombstone against stored rows deletes them
    stored = {("a", "r1"): fold([started(), cancelled])}
    result = fold_batch([tombstone(9, event_key("a", "r1", 1))], stored, WIRE, DECODE)
    assert result.deletes == [("a", "r1")] and result.upserts == []
