"""psycopg failures and ledger business rejections, in the orchestrator's taxonomy.

Transient database conditions (lost connections, serialization failures, deadlocks,
lock or statement timeouts, resource exhaustion) become retryable
:class:`ApplicationError`\\ s of type ``PostgresTransientError``; everything else
(constraint and data errors, bad SQL, permissions) is terminal ``PostgresError``.
An error with a SQLSTATE is judged by its code; one without (a dropped connection,
a pool timeout) by its class, and every psycopg class without a SQLSTATE has an
explicit entry in :data:`CLASS_RULES`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import psycopg
import psycopg_pool
from psycopg.transaction import OutOfOrderTransactionNesting

from orchestrator.exceptions import ApplicationError

__all__ = [
    "CLASS_RULES",
    "TRANSIENT_SQLSTATES",
    "TRANSIENT_SQLSTATE_CLASSES",
    "error_for_psycopg",
    "is_transient",
    "rejection",
]

TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53", "58"})
"""Connection exceptions, insufficient resources, system (I/O) errors."""

TRANSIENT_SQLSTATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "40003",  # statement_completion_unknown
        "25P03",  # idle_in_transaction_session_timeout
        "55P03",  # lock_not_available
        "55006",  # object_in_use
        "57014",  # query_canceled (statement_timeout)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "57P05",  # idle_session_timeout
        "72000",  # snapshot_too_old
    }
)
"""SQLSTATEs outside those classes that a later attempt may not meet again."""

CLASS_RULES: Mapping[type[Exception], bool] = {
    # class -> retryable, for errors that carry no SQLSTATE
    psycopg.Error: False,
    psycopg.InterfaceError: False,  # misuse of the driver: a bug, not the weather
    psycopg.DatabaseError: False,
    psycopg.DataError: False,
    psycopg.OperationalError: True,  # typically "server closed the connection"
    psycopg.IntegrityError: False,
    psycopg.InternalError: False,
    psycopg.ProgrammingError: False,
    psycopg.NotSupportedError: False,
    psycopg.errors.ConnectionTimeout: True,
    psycopg.errors.CancellationTimeout: True,
    OutOfOrderTransactionNesting: False,
    psycopg.errors.PipelineAborted: False,  # an earlier statement failed; that one decides
    psycopg_pool.PoolTimeout: True,  # no connection free (or the server is down)
    psycopg_pool.TooManyRequests: True,  # the pool's waiting queue is full
    psycopg_pool.PoolClosed: True,  # this worker is shutting down; another may do it
}


def _class_rule(exc: BaseException) -> bool:
    for klass in type(exc).__mro__:
        rule = CLASS_RULES.get(klass)
        if rule is not None:
            return rule
    return False


def is_transient(exc: psycopg.Error) -> bool:
    """True when trying the same transaction again may succeed."""
    code = exc.sqlstate
    if code:
        return code in TRANSIENT_SQLSTATES or code[:2] in TRANSIENT_SQLSTATE_CLASSES
    return _class_rule(exc)


def _scrub(text: str) -> str:
    text = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1[REDACTED]", text, flags=re.I)
    return re.sub(r"(://[^/\s:@]+:)[^/\s@]+@", r"\1[REDACTED]@", text)


def error_for_psycopg(exc: psycopg.Error) -> ApplicationError:
    """The ApplicationError a psycopg (or psycopg_pool) error stands for."""
    transient = is_transient(exc)
    code = exc.sqlstate or ""
    first_line = (str(exc).strip().splitlines() or [""])[0]
    where = f" (SQLSTATE {code})" if code else ""
    return ApplicationError(
        _scrub(f"{type(exc).__name__}{where}: {first_line}"[:500]),
        {"sqlstate": code, "exception": type(exc).__name__},
        type="PostgresTransientError" if transient else "PostgresError",
        non_retryable=not transient,
    )


def rejection(kind: str, message: str) -> ApplicationError:
    """A terminal business error (InsufficientFunds, AccountNotFound, ...)."""
    return ApplicationError(message, type=kind, non_retryable=True)
