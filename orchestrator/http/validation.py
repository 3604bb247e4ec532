"""Request checks: JSON bodies, ids, names and numbers, each failing with a clear 400.

Bodies are parsed with :func:`json.loads` only (no other decoder ever sees wire
data), must be JSON objects, may not carry unknown fields, and are limited to
:data:`~orchestrator.http.limits.MAX_BODY_BYTES` (413 beyond).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from orchestrator.http.errors import ApiError
from orchestrator.http.limits import MAX_BODY_BYTES, MAX_ID_CHARS

__all__ = [
    "MAX_INT64",
    "check_query",
    "int64",
    "json_body",
    "json_list",
    "json_object",
    "name",
    "no_nul",
    "plain_json",
    "query_seconds",
    "query_time",
    "run_id",
    "seconds",
    "task_queue",
    "text",
    "traceparent",
    "workflow_id",
]

_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,199}$")
_QUEUE: Final = re.compile(r"^[A-Za-z0-9._\-]{1,200}$")
_RUN_ID: Final = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_TRACEPARENT: Final = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
MAX_INT64: Final = 2**63 - 1
"""The largest integer a record field of Avro type ``long`` (or a Kafka offset) holds."""


def bad(message: str) -> ApiError:
    """A 400 with ``message``."""
    return ApiError(400, "bad_request", message)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _NotFiniteError(ValueError):
    """A JSON number too large for a float (``1e400``)."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFiniteError(f"the number {text[:40]} is too large")
    return value


async def json_body(
    request: web.Request,
    *,
    required: Iterable[str] = (),
    optional: Iterable[str] = (),
    allow_empty: bool = False,
) -> dict[str, Any]:
    """The request's JSON object body, checked against the allowed field names."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise ApiError(
            413, "payload_too_large", f"request body too large (limit {MAX_BODY_BYTES} bytes)"
        )
    raw = await request.read()  # aiohttp refuses more than client_max_size with 413
    required, optional = tuple(required), tuple(optional)
    if not raw.strip():
        if allow_empty and not required:
            return {}
        raise bad(f"a JSON object body is required (fields: {', '.join(required)})")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constants, parse_float=_finite)
    except UnicodeDecodeError:
        raise bad("body is not UTF-8") from None
    except RecursionError:
        raise bad("body is nested too deeply") from None
    except _NotFiniteError as exc:
        raise bad(f"body has a number out of range: {exc}") from None
    except ValueError as exc:
        raise bad(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise bad("body must be a JSON object")
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        allowed = ", ".join((*required, *optional))
        raise bad(f"unknown fields: {', '.join(unknown)} (allowed: {allowed})")
    missing = [f for f in required if f not in data]
    if missing:
        raise bad(f"missing fields: {', '.join(missing)}")
    return data


def check_query(request: web.Request, allowed: Iterable[str]) -> None:
    """Refuse query parameters other than ``allowed`` (typos fail loudly)."""
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise bad(f"unknown query parameters: {', '.join(unknown)}")


def workflow_id(value: Any, what: str = "workflow id") -> str:
    """A workflow id: 1-256 printable characters without outer spaces (``/`` allowed)."""
    if not isinstance(value, str) or not value:
        raise bad(f"{what} must be a non-empty string")
    if len(value) > MAX_ID_CHARS:
        raise bad(f"{what} is longer than {MAX_ID_CHARS} characters")
    if value != value.strip() or not value.isprintable():
        raise bad(f"{what} has outer spaces or non-printable characters")
    return value


def checked_id(value: Any, what: str, check: Callable[[str], str]) -> str:
    """An id that ``check`` accepts (it raises ValueError with the reason otherwise)."""
    if not isinstance(value, str):
        raise bad(f"{what} must be a string")
    try:
        return check(value)
    except ValueError as exc:
        raise bad(str(exc)) from None


def name(value: Any, what: str) -> str:
    """A workflow type, signal, update or query name: ``[A-Za-z_][A-Za-z0-9_.:-]*``."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise bad(f"{what} must match {_NAME.pattern}")
    return value


def task_queue(value: Any) -> str:
    """A task queue name (it becomes part of a Kafka topic name)."""
    if not isinstance(value, str) or not _QUEUE.match(value):
        raise bad(f"task_queue must match {_QUEUE.pattern}")
    return value


def run_id(value: Any) -> str:
    """A run id."""
    if not isinstance(value, str) or not _RUN_ID.match(value):
        raise bad(f"run_id must match {_RUN_ID.pattern}")
    return value


def text(value: Any, what: str, max_chars: int) -> str:
    """A string of at most ``max_chars`` characters."""
    if not isinstance(value, str):
        raise bad(f"{what} must be a string")
    if len(value) > max_chars:
        raise bad(f"{what} is longer than {max_chars} characters")
    return value


def priority(value: Any) -> int:
    """A run's priority: an integer of at most 64 bits (0 when absent)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise bad("priority must be a 64-bit integer")
    return value


def int64(value: Any, what: str, *, minimum: int) -> int:
    """A JSON integer (not a boolean) from ``minimum`` to :data:`MAX_INT64`."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_INT64:
        raise bad(f"{what} must be a whole number from {minimum} to {MAX_INT64}")
    return value


def seconds(
    value: Any, what: str, *, default: float, maximum: float, positive: bool = False
) -> float:
    """A number of seconds in ``[0, maximum]`` (``default`` when absent); with
    ``positive``, 0 is refused too (for routes whose answer needs the shard's reply)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad(f"{what} must be a number of seconds")
    if positive and not 0 < value <= maximum:
        raise bad(
            f"{what} must be more than 0 and at most {maximum:g} seconds "
            "(this route answers with the shard's reply, so it has to wait for it)"
        )
    if not 0 <= value <= maximum:
        raise bad(f"{what} must be between 0 and {maximum:g} seconds")
    return float(value)


def query_seconds(
    request: web.Request, key: str, *, default: float, maximum: float, positive: bool = False
) -> float:
    """Seconds from the query string (``?wait=5``); ``positive`` as for :func:`seconds`."""
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bad(f"{key} must be a number of seconds") from None
    return seconds(value, key, default=default, maximum=maximum, positive=positive)


def plain_json(value: Any, what: str) -> Any:
    """``value`` (parsed JSON) when PostgreSQL can hold it as JSONB: no NUL character in
    a string or key, no number beyond a float's range; a 400 otherwise."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and "\x00" in item:
            raise bad(f"{what} contains a NUL character")
        if isinstance(item, float) and not math.isfinite(item):
            raise bad(f"{what} has a number out of range")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


def no_nul(value: str, what: str) -> str:
    """``value`` when it has no NUL character (PostgreSQL text cannot hold one)."""
    if "\x00" in value:
        raise bad(f"{what} contains a NUL character")
    return value


def json_list(value: Any, what: str) -> list[Any]:
    """A JSON array (``None``: empty)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad(f"{what} must be a JSON array")
    return value


def json_object(value: Any, what: str) -> dict[str, Any]:
    """A JSON object (``None``: empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(f"{what} must be a JSON object")
    return value


def traceparent(headers: Mapping[str, str]) -> str | None:
    """The caller's W3C ``traceparent`` header, checked (None when absent)."""
    value = headers.get("traceparent")
    if value is None:
        return None
    if not _TRACEPARENT.match(value.strip()):
        raise bad("traceparent header is not a W3C trace context (00-<32 hex>-<16 hex>-<2 hex>)")
    return value.strip()


def query_time(request: web.Request, key: str) -> datetime | None:
    """The ISO 8601 time in query parameter ``key`` (UTC when it names no zone), or None."""
    raw = request.query.get(key)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise bad(f"{key} must be an ISO 8601 time, e.g. 2026-12-03T14:00:00Z") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
