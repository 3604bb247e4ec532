"""Built-in reads of one workflow id, answered by the shard that owns it from its store.

Two query names are reserved for them: ``__describe`` (the id's latest snapshot) and
``__history`` (the events of one run, a page at a time; its one argument is the seq
after which the page starts). They travel as ordinary ``QueryWorkflow`` commands, so
any client that can send a query can read a run without scanning a partition. The
reply's result is a payload whose ``encoding`` metadata is
``avro/saga.reply.history-page.v<n>`` and whose data is that record: the history
records as they are on the topic (headers and value), decoded like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.converter import ENCODING_KEY, Payload

DESCRIBE_QUERY = "__describe"
HISTORY_QUERY = "__history"
BUILTIN_READS = frozenset({DESCRIBE_QUERY, HISTORY_QUERY})
"""Query names the engine answers itself; a workflow's own handlers cannot use them."""

PAGE_FAMILY = "saga.reply.history-page"
PAGE_ENCODING_PREFIX = "avro/"
"""A page payload's ``encoding`` metadata: this prefix and the page's ``ce_type``."""
_JSON = b"json/plain"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRecord:
    """One history record as the topic holds it."""

    headers: dict[str, bytes | None]
    value: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingActivity:
    """An activity of a described open run that is scheduled and not finished;
    ``paused`` while its type is paused on its queue (the attempt is held)."""

    activity_seq: int
    activity_type: str
    task_queue: str
    attempt: int
    paused: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryPage:
    """Records answering a built-in read; ``next_seq`` is set when more follow;
    ``pending_activities`` only in the answer to ``__describe`` of an open run."""

    records: list[StoredRecord]
    next_seq: int | None = None
    pending_activities: list[PendingActivity] = field(default_factory=list)


def after_seq_arg(after_seq: int) -> Payload:
    """The argument of ``__history``: plain JSON, never through the client's codecs (the
    engine reads it, and an encrypting codec would hide it)."""
    return Payload(metadata={ENCODING_KEY: _JSON}, data=str(after_seq).encode())


def read_after_seq(args: list[Payload]) -> int:
    """The seq a ``__history`` page starts after (0 without an argument)."""
    if not args:
        return 0
    arg = args[0]
    if arg.metadata.get(ENCODING_KEY) != _JSON or not arg.data.isdigit():
        raise ValueError("__history takes one argument: a non-negative integer (after_seq)")
    return int(arg.data)
