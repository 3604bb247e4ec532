"""The HTTP API's bounds, in one place (documented in docs/http-api.md)."""

from __future__ import annotations

from typing import Final

MAX_BODY_BYTES: Final = 1024 * 1024
"""Larger request bodies are refused with 413."""

START_WAIT_S: Final = 10.0
"""Default wait for the shard to confirm a start (``wait`` in the body, up to MAX_WAIT_S)."""

COMMAND_WAIT_S: Final = 10.0
"""Default wait for the shard's answer to a signal, cancel or terminate."""

RESET_WAIT_S: Final = 30.0
"""Default wait for the shard's answer to a reset (it replays the run's history)."""

UPDATE_TIMEOUT_S: Final = 30.0
"""Default wait for an update's result."""

QUERY_TIMEOUT_S: Final = 10.0
"""Default wait for a query's answer."""

MAX_WAIT_S: Final = 60.0
"""Upper bound of every wait a caller can ask for (start, commands, update, query, result)."""

DESCRIBE_TIMEOUT_S: Final = 10.0
"""Bound on the owning shard's answer to a describe."""

HISTORY_TIMEOUT_S: Final = 20.0
"""Bound on reading every page of a run's history from the owning shard."""

MAX_ID_CHARS: Final = 256
MAX_REASON_CHARS: Final = 1000
MAX_OPERATOR_CHARS: Final = 200
DEFAULT_LIST_LIMIT: Final = 100
