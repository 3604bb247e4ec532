"""The tuning of an activity worker, and the buffer bound derived from it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ActivityWorkerOptions", "buffer_bound"]

#: the smallest buffer of fetched tasks before fetching pauses (see ``max_buffered``)
_MIN_BUFFER = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityWorkerOptions:
    """Tuning of an :class:`~orchestrator.worker.activity_worker.ActivityWorker`."""

    max_in_flight: int = 256
    """Tasks running at once (all partitions); fetched tasks beyond it wait in a buffer."""
    max_buffered: int | None = None
    """Fetching pauses when this many fetched tasks wait to start (default: the larger
    of 2,000 and ``max_in_flight``) and resumes at half of it. librdkafka drops what it
    had prefetched for a paused partition and fetches it again on resume, so a buffer
    that fills often costs throughput: at 256 the three-step benchmark's max rate fell
    from ~460 to ~290 sagas/s (docs/benchmarks.md)."""
    max_buffered_bytes: int = 32 * 1024 * 1024
    """Fetching also pauses while the waiting tasks' records hold this many bytes (large
    inputs), and resumes at half of it."""
    sync_threads: int = 16
    """Threads for sync activities (abandoned timed-out calls keep theirs until they return)."""
    drain_timeout_s: float = 30.0
    """On stop, how long running tasks may finish; the rest are cancelled and re-delivered."""
    commit_interval_s: float = 0.2
    heartbeat_throttle_s: float = 1.0
    """At most one heartbeat record per attempt per this period (latest details win)."""
    default_start_to_close_s: float | None = None
    """For tasks without a start-to-close timeout."""
    session_timeout_ms: int = 10_000
    """A dead worker's partitions move after this long (unless it is restarted sooner
    under the same ``group_instance_id``)."""
    group_instance_id: str | None = None
    """Join the group as this static member (KIP-345), so that a worker restarted under
    the same id takes its partitions back at once instead of after the session timeout.
    Give only an id that is stable across restarts and unique in the group (``saga
    worker --worker-id W`` uses ``W.tasks.<queue>``); None: a dynamic member."""
    fetch_batch: int = 500
    fetch_wait_max_ms: int = 50
    """How long a fetch may wait at the broker for new tasks. A ``read_committed``
    fetch that arrives while the transaction writing its tasks is open can wait this
    long after the commit (librdkafka's default is 500 ms): tasks written in a
    transaction (a dispatcher's releases, the engine's without early dispatch) then
    start up to that late. 50 ms costs an idle worker 20 fetches a second."""
    cancel_memory: int = 10_000
    """At most this many cancels are remembered for tasks not started yet (oldest
    forgotten first)."""
    cancel_ttl_s: float = 600.0
    """A cancel is remembered this long: a task started later than that after its
    cancel runs (its outcome is ignored by the engine). Also how far back the worker
    reads the cancels topic when it starts."""
    cancel_catch_up_s: float = 10.0
    """At start, how long the worker may spend reading the cancels of the last
    ``cancel_ttl_s`` before it starts tasks."""
    max_held: int = 10_000
    """At most this many tasks of paused activity types are held; at that bound the
    worker stops fetching from its queue (every type waits) until an unpause."""
    pause_catch_up_s: float = 10.0
    """At start, how long the worker may spend reading ``<prefix>.activity-pauses``
    before it starts tasks (past it, it starts anyway and logs a warning)."""
    group_watch_interval_s: float | None = 15.0
    """How often the worker checks that every partition of its queue has an owner in
    the group, and makes the group rebalance if some stay unowned (a static member
    restarted in the middle of a rebalance: orchestrator/worker/group_watch.py);
    None: never."""


def buffer_bound(options: ActivityWorkerOptions) -> int:
    """How many fetched tasks may wait to start before fetching pauses."""
    if options.max_buffered is not None:
        return options.max_buffered
    return max(_MIN_BUFFER, options.max_in_flight)
