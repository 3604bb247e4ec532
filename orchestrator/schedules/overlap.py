"""What a due firing does given the firings that still run: the overlap policy as
one pure function."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from orchestrator.schedules.spec import OverlapPolicy

__all__ = ["MAX_BUFFERED", "Outcome", "Verdict", "decide"]

MAX_BUFFERED = 1000
"""``buffer_all`` keeps at most this many waiting firings; more are skipped."""


class Outcome(enum.Enum):
    """Start the firing now, keep it until the running ones close, or drop it."""

    START = "start"
    BUFFER = "buffer"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome, and what to do to the firings that run."""

    outcome: Outcome
    cancel_running: bool = False
    terminate_running: bool = False


def decide(policy: OverlapPolicy, running: int, buffered: int) -> Verdict:  # noqa: PLR0911
    """The verdict for a due firing while ``running`` firings run and ``buffered`` wait."""
    if policy is OverlapPolicy.ALLOW_ALL or (running == 0 and buffered == 0):
        return Verdict(Outcome.START)
    if running == 0:
        # buffered firings go first; the caller drains them before anything new
        return Verdict(Outcome.BUFFER if policy is OverlapPolicy.BUFFER_ALL else Outcome.SKIP)
    match policy:
        case OverlapPolicy.SKIP:
            return Verdict(Outcome.SKIP)
        case OverlapPolicy.BUFFER_ONE:
            return Verdict(Outcome.BUFFER if buffered == 0 else Outcome.SKIP)
        case OverlapPolicy.BUFFER_ALL:
            return Verdict(Outcome.BUFFER if buffered < MAX_BUFFERED else Outcome.SKIP)
        case OverlapPolicy.CANCEL_OTHER:
            return Verdict(Outcome.BUFFER if buffered == 0 else Outcome.SKIP, cancel_running=True)
        case OverlapPolicy.TERMINATE_OTHER:
            return Verdict(Outcome.START, terminate_running=True)
    raise AssertionError(policy)
