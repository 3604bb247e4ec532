"""Schedules as JSON and as command-line text: the one place the CLI and the HTTP API
turn what a person typed into schedule records, and records into JSON."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, TypeVar

from orchestrator.converter import ENCODING_JSON, ENCODING_KEY, JsonPayloadConverter, Payload
from orchestrator.schedules.spec import OverlapPolicy

__all__ = ["from_json", "parse_duration_s", "parse_overlap", "parse_time", "to_json"]

T = TypeVar("T")

_JSON = JsonPayloadConverter()
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def to_json(value: Any) -> Any:
    """A schedule record (or anything the payload converter encodes) as plain JSON values."""
    return json.loads(_JSON.encode(value).data)


def from_json(value: Any, hint: type[T]) -> T:
    """A record of type ``hint`` from plain JSON values (PayloadConversionError names
    the field that does not fit)."""
    payload = Payload({ENCODING_KEY: ENCODING_JSON}, json.dumps(value).encode())
    decoded: T = _JSON.decode(payload, hint)
    return decoded


def parse_duration_s(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``1h`` or ``1d``."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"duration {text!r}: use a number with s, m, h or d (e.g. 30s, 5m)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with its offset (``2026-12-03T02:00:00+00:00`` or ``...Z``)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r}: give an offset or Z")
    return moment


def parse_overlap(text: str | None) -> OverlapPolicy | None:
    """An overlap policy by name (``skip``, ``buffer_one``, ...), or None."""
    if text is None:
        return None
    try:
        return OverlapPolicy(text.replace("-", "_").lower())
    except ValueError:
        names = ", ".join(p.value for p in OverlapPolicy)
        raise ValueError(f"overlap {text!r}: expected one of {names}") from None
