"""The client's reply buffer: RESULT replies are bounded, wanted or not."""

from __future__ import annotations

from orchestrator.client._common import ReplyBuffer
from orchestrator.serde.records import Reply, ReplyKind


def result(workflow_id: str) -> Reply:
    return Reply(
        correlation_id=f"result/{workflow_id}",
        kind=ReplyKind.RESULT,
        workflow_id=workflow_id,
        ok=True,
    )


def test_result_replies_stay_bounded_even_when_wanted() -> None:
    buffer = ReplyBuffer(keep_results=3)
    for n in range(1000):
        buffer.want(f"result/w-{n}")  # what a long-running server's handles used to do
        assert buffer.offer(result(f"w-{n}"))
    assert buffer.take("result/w-0") is None  # evicted: only the latest 3 are kept
    assert buffer.take("result/w-999") == result("w-999")
    assert buffer.take("result/w-999") == result("w-999")  # for every handle of the run


def test_other_replies_are_kept_only_when_wanted() -> None:
    buffer = ReplyBuffer()
    update = Reply(correlation_id="u-1", kind=ReplyKind.UPDATE, workflow_id="w", ok=True)
    assert not buffer.offer(update)
    assert buffer.take("u-1") is None
    buffer.want("u-1")
    assert buffer.offer(update)
    assert buffer.take("u-1") == update


def test_evictions_are_counted_so_result_knows_when_to_look_at_history() -> None:
    buffer = ReplyBuffer(keep_results=2)
    for n in range(2):
        buffer.offer(result(f"w-{n}"))
    assert buffer.evicted == 0  # a handle started now can trust the buffer
    buffer.offer(result("w-2"))
    assert buffer.evicted == 1  # one reply dropped: result() must read the snapshot instead


def test_a_result_kept_from_before_a_handle_is_not_fresh_for_it() -> None:
    buffer = ReplyBuffer()
    buffer.offer(result("w"))  # an earlier run closed; nobody asked
    made_at = buffer.results_seen  # a handle is made now
    reply, fresh = buffer.take_result("result/w", made_at)
    assert reply == result("w") and not fresh  # maybe that earlier run's: ask the owner
    buffer.drop_result("result/w")
    assert buffer.take_result("result/w", made_at) == (None, False)
    later = Reply(correlation_id="result/w", kind=ReplyKind.RESULT, workflow_id="w",
                  ok=True, run_id="r2")  # fmt: skip
    buffer.offer(later)  # the new run closes after the handle was made
    assert buffer.take_result("result/w", made_at) == (later, True)
    assert buffer.take_result("result/w", made_at) == (later, True)  # and again
