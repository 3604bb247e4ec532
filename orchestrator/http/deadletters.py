"""Routes for ``<prefix>.dlq``: read dead letters, and redrive them.

Both run the operator tools of :mod:`orchestrator.log.dlq_tools` (blocking Kafka
clients) in a thread, so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
from typing import Any, Final

from aiohttp import web
from confluent_kafka import KafkaException

from orchestrator.http import validation as v
from orchestrator.http.errors import ApiError
from orchestrator.http.services import SERVICES
from orchestrator.log.dlq_tools import (
    DeadLetter,
    DeadLettersNotReadError,
    read_dead_letters,
    redrive,
)
from orchestrator.log.topics import TopicLayout

__all__ = ["routes"]

#: how much of a record's value a listing shows (the whole record stays in Kafka)
PREVIEW_BYTES: Final = 2048
MAX_LETTERS: Final = 200
_READ_TIMEOUT_S: Final = 10.0


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode(errors="replace")


def letter_json(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter for a person: reason, origin, key, headers and the value's start."""
    value = letter.value or b""
    return {
        "offset": letter.offset,
        "reason": letter.reason,
        "source": {
            "topic": letter.source_topic,
            "partition": letter.source_partition,
            "offset": letter.source_offset,
        },
        "key": _text(letter.key),
        "headers": [[name, _text(raw)] for name, raw in letter.headers],
        "value_bytes": len(value),
        "value_preview_base64": base64.b64encode(value[:PREVIEW_BYTES]).decode(),
    }


def _dlq_topic(request: web.Request) -> str:
    return TopicLayout(prefix=request.app[SERVICES].options.topic_prefix).dlq


def _query_number(request: web.Request, key: str, default: int) -> int:
    """A whole number from the query string: ASCII digits only, at most 64 bits."""
    raw = request.query.get(key)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(v.MAX_INT64))):
        raise v.bad(f"{key} must be a whole number from 0 to {v.MAX_INT64}")
    return v.int64(int(raw), key, minimum=0)


def _kafka_down(exc: KafkaException) -> ApiError:
    return ApiError(
        503, "unavailable", f"the dead-letter topic cannot be read: {exc}", {"Retry-After": "2"}
    )


def _not_read(exc: DeadLettersNotReadError) -> ApiError:
    return ApiError(503, "unavailable", str(exc), {"Retry-After": "2"})


def _read(config: dict[str, Any], topic: str, start: int, limit: int) -> list[DeadLetter]:
    letters = read_dead_letters(config, topic, start, timeout_s=_READ_TIMEOUT_S)
    try:
        return list(itertools.islice(letters, limit))
    except KafkaException as exc:
        raise _kafka_down(exc) from None
    except DeadLettersNotReadError as exc:
        raise _not_read(exc) from None
    finally:
        letters.close()  # closes the consumer when the page ends early


async def list_dead_letters(request: web.Request) -> web.Response:
    """``GET /v1/dead-letters?from_offset=&limit=``: dead letters, oldest first."""
    v.check_query(request, ("from_offset", "limit"))
    start = _query_number(request, "from_offset", 0)
    limit = _query_number(request, "limit", 50)
    if not 1 <= limit <= MAX_LETTERS:
        raise v.bad(f"limit must be between 1 and {MAX_LETTERS}")
    config = dict(request.app[SERVICES].options.kafka_config)
    letters = await asyncio.to_thread(_read, config, _dlq_topic(request), start, limit + 1)
    more = len(letters) > limit
    letters = letters[:limit]
    return web.json_response(
        {
            "dead_letters": [letter_json(d) for d in letters],
            "next_offset": letters[-1].offset + 1 if more else None,
        }
    )


async def redrive_dead_letters(request: web.Request) -> web.Response:
    """``POST /v1/dead-letters/redrive``: send the chosen dead letters back to their topic."""
    v.check_query(request, ())
    body = await v.json_body(request, required=("from_offset", "to_offset"), optional=("reason",))
    start = v.int64(body["from_offset"], "from_offset", minimum=0)
    end = v.int64(body["to_offset"], "to_offset", minimum=0)
    if end <= start:
        raise v.bad("to_offset (exclusive) must be greater than from_offset")
    pattern = v.text(body.get("reason", ""), "reason", 500)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise v.bad(f"reason is not a valid regular expression: {exc}") from None
    config = dict(request.app[SERVICES].options.kafka_config)
    topic = _dlq_topic(request)
    try:
        sent = await asyncio.to_thread(
            lambda: redrive(
                config, topic, reason_pattern=pattern, start_offset=start, end_offset=end
            )
        )
    except KafkaException as exc:
        raise _kafka_down(exc) from None
    except DeadLettersNotReadError as exc:  # some may have been sent: the message says how many
        raise _not_read(exc) from None
    return web.json_response({"redriven": sent})


def routes() -> list[web.RouteDef]:
    """The dead-letter routes."""
    return [
        web.get("/v1/dead-letters", list_dead_letters, allow_head=False),
        web.post("/v1/dead-letters/redrive", redrive_dead_letters),
    ]
