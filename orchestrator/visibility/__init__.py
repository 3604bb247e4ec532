"""Visibility: history projected into PostgreSQL for listing, search and describe.

- :mod:`~orchestrator.visibility.schema`: the tables (one row per run; consumed offsets)
- :mod:`~orchestrator.visibility.store`: the async read side (:class:`VisibilityStore`)
"""

from orchestrator.visibility.store import RunRow, VisibilityStore

__all__ = ["RunRow", "VisibilityStore"]
