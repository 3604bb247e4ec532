"""Outcomes sent by task token, as the shard judges them: only the running attempt of
the run the token names counts; everything else (a stale, forged or mistyped token)
changes nothing and, when the sender asked (a request id), is answered with a refusal
saying why."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from orchestrator import workflow
from orchestrator.client._activities import complete_command, fail_command, heartbeat_command
from orchestrator.client._common import CommandBuilder, OutgoingCommand
from orchestrator.engine import events as ev
from orchestrator.retry import RetryPolicy
from orchestrator.serde import records as rec
from orchestrator.task_token import TaskToken, attempt_signature
from tests.unit.worker.shard_harness import CONV, WIRE, Harness

SECOND = 1000
BUILDER = CommandBuilder(WIRE, CONV, 1, source="/test")


@workflow.defn(name="unit.pending")
async def pending(ctx: workflow.WorkflowContext) -> str:
    result: str = await ctx.execute_activity(
        "unit.legacy", result_type=str, start_to_close=timedelta(minutes=5),
        heartbeat_timeout=timedelta(seconds=60),
        retry=RetryPolicy(initial=timedelta(seconds=1), max_attempts=3),
    )
    return result


def tasks(h: Harness) -> list[rec.ActivityTask]:
    return [WIRE.decode_task(t.headers, t.value).record for t in h.tasks]


def token_of(task: rec.ActivityTask, **change: object) -> str:
    fields: dict[str, object] = {
        "workflow_id": task.workflow_id, "run_id": task.run_id,
        "activity_seq": task.activity_seq, "attempt": task.attempt,
        "signature": task.token_signature,
    }
    return TaskToken(**(fields | change)).encode()  # type: ignore[arg-type]


def send(h: Harness, out: OutgoingCommand) -> None:
    h.send(WIRE.decode_command(out.record.headers, out.record.value).record)
    h.commit()


def events(h: Harness) -> list[ev.Event]:
    return [
        WIRE.decode_event(e.headers, e.value).record.event
        for e in h.history
        if e.value is not None and not e.key.endswith(b"/snapshot") and e.key != b"_gap"
    ]


def started(tmp_path: Path) -> tuple[Harness, rec.ActivityTask]:
    h = Harness(tmp_path, [pending])
    h.start("p", "unit.pending")
    h.commit()
    [task] = tasks(h)
    return h, task


def refusals(h: Harness, since: int) -> list[tuple[str, str]]:
    """(error type, message) of the replies written since index ``since``."""
    found = []
    for r in h.replies[since:]:
        assert r.kind is rec.ReplyKind.ACTIVITY and not r.ok and r.error is not None
        found.append((r.error.type, r.error.message))
    return found


def test_outcomes_for_another_attempt_activity_or_run_are_refused(tmp_path: Path) -> None:
    h, task = started(tmp_path)
    before = (len(h.history), len(h.replies))
    expected = {
        token_of(task, attempt=2): ("ActivityNotRunning", "attempt 2 of activity #1 "
                                    "(unit.legacy) has not started"),
        token_of(task, activity_seq=7): ("ActivityNotRunning", "never scheduled activity #7"),
        token_of(task, run_id="another-run"): ("WorkflowNotFound", "no such workflow run"),
        token_of(task, workflow_id="nobody"): ("WorkflowNotFound", "no such workflow run"),
    }
    for token, (error_type, words) in expected.items():
        since = len(h.replies)
        send(h, complete_command(BUILDER, token, "forged"))
        send(h, fail_command(BUILDER, token, "forged", error_type="X", non_retryable=True,
                             details=()))
        send(h, heartbeat_command(BUILDER, token, ("forged",)))
        answers = refusals(h, since)
        assert len(answers) == 3, token
        assert all(t == error_type and words in m for t, m in answers), answers
    assert len(h.history) == before[0], "no event"
    assert h.dead_letters == []
    since = len(h.replies)
    send(h, complete_command(BUILDER, token_of(task, attempt=2), "x", reply=False))
    assert len(h.replies) == since, "sent without a request id (as a worker does): no reply"
    send(h, complete_command(BUILDER, token_of(task), "the answer"))
    [accepted] = [r for r in h.replies[since:] if r.kind is rec.ReplyKind.ACTIVITY]
    assert accepted.ok and accepted.error is None and accepted.run_id == task.run_id
    assert h.results() == {"p": "the answer"}
    since = len(h.replies)
    send(h, complete_command(BUILDER, token_of(task), "again"))  # a repeat changes nothing
    assert h.results() == {"p": "the answer"}
    assert [type(e).__name__ for e in events(h)].count("ActivityCompleted") == 1
    [(error_type, message)] = [
        (r.error.type, r.error.message) for r in h.replies[since:] if r.error is not None
    ]
    assert error_type == "WorkflowClosed", "the repeat came after the run completed"
    assert "COMPLETED" in message


def test_a_failure_by_token_takes_the_retry_policy(tmp_path: Path) -> None:
    h, task = started(tmp_path)
    send(h, fail_command(BUILDER, token_of(task), "no answer", error_type="Busy",
                         non_retryable=False, details=("ticket 9",)))
    [failed] = [e for e in events(h) if isinstance(e, ev.ActivityAttemptFailed)]
    assert (failed.failure.type, failed.failure.message) == ("Busy", "no answer")
    assert [CONV.from_payload(p) for p in failed.failure.details] == ["ticket 9"]
    since = len(h.replies)
    send(h, complete_command(BUILDER, token_of(task), "late"))  # during the backoff
    assert refusals(h, since) == [("ActivityNotRunning", "nothing changed: attempt 1 of "
                                   "activity #1 (unit.legacy) already ended: failed: Busy: "
                                   "no answer; attempt 2 waits for its retry")]
    h.run(advance_ms=2 * SECOND)
    _first, second = tasks(h)
    assert second.attempt == 2
    send(h, fail_command(BUILDER, token_of(second), "gone", error_type="Gone",
                         non_retryable=True, details=()))
    [closed] = [r for r in h.replies if r.kind is rec.ReplyKind.RESULT]
    assert not closed.ok and closed.error is not None
    assert "Gone" in repr(closed.error)


def test_a_timed_out_attempts_token_no_longer_counts(tmp_path: Path) -> None:
    h, _task = started(tmp_path)
    h.run(advance_ms=61 * SECOND)  # nobody heartbeats: the heartbeat timeout passes
    h.run(advance_ms=2 * SECOND)  # the retry's backoff
    first, second = tasks(h)
    assert (first.attempt, second.attempt) == (1, 2)
    since = len(h.replies)
    send(h, complete_command(BUILDER, token_of(first), "too late"))
    assert h.results() == {}
    [(error_type, message)] = refusals(h, since)
    assert error_type == "ActivityNotRunning"
    assert "attempt 1 of activity #1 (unit.legacy) already ended" in message
    assert "attempt 2 runs now" in message
    send(h, complete_command(BUILDER, token_of(second), "in time"))
    assert h.results() == {"p": "in time"}


def test_a_stale_heartbeat_does_not_replace_the_running_attempts(tmp_path: Path) -> None:
    h, task = started(tmp_path)
    send(h, fail_command(BUILDER, token_of(task), "busy", error_type="Busy",
                         non_retryable=False, details=()))
    h.run(advance_ms=2 * SECOND)
    first, second = tasks(h)
    h.clock.now += 50 * SECOND
    send(h, heartbeat_command(BUILDER, token_of(second), ("page 7",)))
    send(h, heartbeat_command(BUILDER, token_of(first), ("stale",)))  # after it, same seq
    h.stop()  # a restart on the same disk: the run is replayed, its heartbeat restored
    h.shard = h.open_shard()
    h.restore()
    h.send(rec.SignalWorkflow(workflow_id="p", signal_name="poke"))  # replays the run
    h.commit()
    h.run(advance_ms=61 * SECOND)  # attempt 2's heartbeat timeout passes
    h.run(advance_ms=2 * SECOND)  # the retry's backoff
    third = tasks(h)[-1]
    assert third.attempt == 3
    assert [CONV.from_payload(p) for p in third.heartbeat_details] == ["page 7"], (
        "the running attempt's heartbeat, not the stale one's"
    )


KEY = b"0123456789abcdef0123456789abcdef"


def test_with_a_key_only_the_attempts_own_signature_counts(tmp_path: Path) -> None:
    h = Harness(tmp_path, [pending], task_token_key=KEY)
    h.start("p", "unit.pending")
    h.commit()
    [task] = tasks(h)
    assert task.token_signature == attempt_signature(KEY, "p", task.run_id, 1, 1)
    before = len(h.history)
    for token in (
        token_of(task, signature=""),  # unsigned (made before the key, or by hand)
        token_of(task, signature=attempt_signature(KEY, "p", task.run_id, 1, 2)),  # another
        token_of(task, signature=attempt_signature(b"x" * 32, "p", task.run_id, 1, 1)),
    ):
        since = len(h.replies)
        send(h, complete_command(BUILDER, token, "forged"))
        send(h, heartbeat_command(BUILDER, token, ("forged",)))
        answers = refusals(h, since)
        assert [t for t, _m in answers] == ["TaskTokenRejected"] * 2, answers
        since = len(h.replies)
        send(h, complete_command(BUILDER, token, "forged", reply=False))  # as a worker's
        assert len(h.replies) == since, "refused without a reply: nobody asked"
    assert len(h.history) == before, "no event"
    assert h.results() == {}
    send(h, complete_command(BUILDER, token_of(task), "signed"))
    assert h.results() == {"p": "signed"}
