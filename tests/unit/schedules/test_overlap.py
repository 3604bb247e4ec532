"""The overlap policy's decision table."""

from __future__ import annotations

import pytest

from orchestrator.schedules.overlap import MAX_BUFFERED, Outcome, Verdict, decide
from orchestrator.schedules.spec import OverlapPolicy as P

START, BUFFER, SKIP = Verdict(Outcome.START), Verdict(Outcome.BUFFER), Verdict(Outcome.SKIP)


@pytest.mark.parametrize("policy", list(P))
def test_with_nothing_running_every_policy_starts(policy: P) -> None:
    assert decide(policy, 0, 0) == START


@pytest.mark.parametrize(
    ("policy", "buffered", "verdict"),
    [
        (P.SKIP, 0, SKIP),
        (P.BUFFER_ONE, 0, BUFFER),
        (P.BUFFER_ONE, 1, SKIP),
        (P.BUFFER_ALL, 0, BUFFER),
        (P.BUFFER_ALL, 5, BUFFER),
        (P.BUFFER_ALL, MAX_BUFFERED, SKIP),
        (P.CANCEL_OTHER, 0, Verdict(Outcome.BUFFER, cancel_running=True)),
        (P.CANCEL_OTHER, 1, Verdict(Outcome.SKIP, cancel_running=True)),
        (P.TERMINATE_OTHER, 0, Verdict(Outcome.START, terminate_running=True)),
        (P.ALLOW_ALL, 0, START),
        (P.ALLOW_ALL, 3, START),
    ],
)
def test_while_one_runs(policy: P, buffered: int, verdict: Verdict) -> None:
    assert decide(policy, 1, buffered) == verdict


def test_buffered_firings_go_before_new_ones() -> None:
    assert decide(P.BUFFER_ALL, 0, 2) == BUFFER
    assert decide(P.BUFFER_ONE, 0, 1) == SKIP
