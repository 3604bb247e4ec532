"""The request ids of the signals a run applied, to acknowledge a re-sent signal once.

A client that retries a send (a timeout, a producer retry, a raw producer writing the
same record twice) sends the same request id again; the run keeps the ids of its
latest signals and the executor drops a signal whose id is among them. The ids are
not stored anywhere of their own: they are read back from the run's history
(``SignalReceived.request_id``, and ``InputDeferred.request_id`` for a signal held by a
pause), so a replay after an eviction or a restore knows them again.
"""

from __future__ import annotations

__all__ = ["MAX_SIGNAL_IDS", "RecentIds"]

MAX_SIGNAL_IDS = 1000
"""How many of a run's latest signal request ids are remembered; a repeat of an older
one is applied again. A continue-as-new or a reset starts the next run with none
(a reset re-delivers the signals it carries over with their ids)."""


class RecentIds:
    """An insertion-ordered set of at most ``limit`` ids; the oldest leaves first."""

    __slots__ = ("_ids", "limit")

    def __init__(self, limit: int = MAX_SIGNAL_IDS) -> None:
        self.limit = limit
        self._ids: dict[str, None] = {}

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, request_id: str) -> None:
        """Remember ``request_id`` (a repeat keeps its place)."""
        ids = self._ids
        if request_id in ids:
            return
        ids[request_id] = None
        if len(ids) > self.limit:
            del ids[next(iter(ids))]
