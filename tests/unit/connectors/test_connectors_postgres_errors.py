"""Every psycopg error class maps into the taxonomy; transient ones are retryable."""

from __future__ import annotations

import psycopg
import psycopg.errors
import psycopg_pool
import pytest

from orchestrator.connectors.postgres import CLASS_RULES, error_for_psycopg, is_transient
from orchestrator.exceptions import ApplicationError


def _all_psycopg_errors() -> list[type[psycopg.Error]]:
    found: set[type[psycopg.Error]] = set()
    todo: list[type[psycopg.Error]] = [psycopg.Error]
    while todo:
        klass = todo.pop()
        if klass not in found:
            found.add(klass)
            todo.extend(klass.__subclasses__())
    return sorted(found, key=lambda k: k.__name__)


ALL = _all_psycopg_errors()


def test_the_walk_sees_the_sqlstate_classes_and_the_pool() -> None:
    names = {k.__name__ for k in ALL}
    assert len(ALL) > 200
    assert {"SerializationFailure", "DeadlockDetected", "PoolTimeout", "PoolClosed"} <= names


def test_every_class_without_a_sqlstate_has_an_explicit_rule() -> None:
    # Classes with a SQLSTATE are judged by their code; the others need a rule here,
    # so a new psycopg class without one fails this test instead of defaulting.
    missing = [
        k.__name__
        for k in ALL
        if k.sqlstate is None and not k.__name__.startswith("_") and k not in CLASS_RULES
    ]
    assert missing == []


@pytest.mark.parametrize("klass", ALL, ids=lambda k: k.__name__)
def test_each_class_maps_to_an_application_error(klass: type[psycopg.Error]) -> None:
    err = error_for_psycopg(klass("boom"))
    assert isinstance(err, ApplicationError)
    assert err.type in {"PostgresTransientError", "PostgresError"}
    assert err.retryable is (err.type == "PostgresTransientError")


@pytest.mark.parametrize(
    ("klass", "retryable"),
    [
        (psycopg.OperationalError, True),
        (psycopg.IntegrityError, False),
        (psycopg.DataError, False),
        (psycopg.ProgrammingError, False),
        (psycopg.InternalError, False),
        (psycopg.NotSupportedError, False),
        (psycopg.InterfaceError, False),
        (psycopg.DatabaseError, False),
        (psycopg.Error, False),
        (psycopg.errors.SerializationFailure, True),
        (psycopg.errors.DeadlockDetected, True),
        (psycopg.errors.LockNotAvailable, True),
        (psycopg.errors.QueryCanceled, True),
        (psycopg.errors.AdminShutdown, True),
        (psycopg.errors.CannotConnectNow, True),
        (psycopg.errors.TooManyConnections, True),
        (psycopg.errors.ConnectionFailure, True),
        (psycopg.errors.ConnectionTimeout, True),
        (psycopg.errors.UniqueViolation, False),
        (psycopg.errors.CheckViolation, False),
        (psycopg.errors.UndefinedTable, False),
        (psycopg.errors.InsufficientPrivilege, False),
        (psycopg.errors.DivisionByZero, False),
        (psycopg.errors.DatabaseDropped, False),
        (psycopg_pool.PoolTimeout, True),
        (psycopg_pool.TooManyRequests, True),
        (psycopg_pool.PoolClosed, True),
    ],
)
def test_retryability(klass: type[psycopg.Error], retryable: bool) -> None:
    assert is_transient(klass("x")) is retryable
    assert error_for_psycopg(klass("x")).retryable is retryable


def test_message_names_class_and_sqlstate_and_hides_passwords() -> None:
    exc = psycopg.errors.SerializationFailure(
        "could not serialize access\nDETAIL: long"
    )
    err = error_for_psycopg(exc)
    assert err.message == "SerializationFailure (SQLSTATE 40001): could not serialize access"
    assert err.details[0] == {"sqlstate": "40001", "exception": "SerializationFailure"}
    leaky = psycopg.OperationalError(
        "connection to postgresql://app:hunter2@db:5432/x failed, password=hunter2"
    )
    assert "hunter2" not in error_for_psycopg(leaky).message
