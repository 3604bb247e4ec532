"""PostgreSQL connector: an idempotent ledger on psycopg 3 and psycopg_pool.

See docs/connectors.md for the guarantees and the error table.
"""

from orchestrator.connectors.postgres._errors import (
    CLASS_RULES,
    TRANSIENT_SQLSTATE_CLASSES,
    TRANSIENT_SQLSTATES,
    error_for_psycopg,
    is_transient,
)
from orchestrator.connectors.postgres._ledger import Ledger, Receipt
from orchestrator.connectors.postgres._schema import SCHEMA_SQL, migrate

__all__ = [
    "CLASS_RULES",
    "SCHEMA_SQL",
    "TRANSIENT_SQLSTATES",
    "TRANSIENT_SQLSTATE_CLASSES",
    "Ledger",
    "Receipt",
    "error_for_psycopg",
    "is_transient",
    "migrate",
]
