"""Visibility: history projected into PostgreSQL for listing, search and describe.

- :mod:`~orchestrator.visibility.schema`: the tables (one row per run; consumed offsets)
- :mod:`~orchestrator.visibility.store`: the async read side (:class:`VisibilityStore`)
"""

from typing import TYPE_CHECKING, Final

from orchestrator.lazy import lazy_attributes

if TYPE_CHECKING:
    from orchestrator.visibility.store import RunRow, VisibilityStore

__all__ = ["DEFAULT_TABLE", "RunRow", "VisibilityStore"]

DEFAULT_TABLE: Final = "saga_runs"
"""The runs table's name unless told otherwise (here, so the CLI needs no psycopg)."""

# the store needs psycopg (the `postgres` extra): imported when first used
__getattr__ = lazy_attributes(
    __name__,
    {"RunRow": "orchestrator.visibility.store", "VisibilityStore": "orchestrator.visibility.store"},
)
