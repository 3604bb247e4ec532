"""Values, descriptions and history events as JSON-safe structures.

User values (results, query answers, event payloads) are decoded by the server's
:class:`~orchestrator.converter.DataConverter` into plain JSON; a payload it cannot
decode (e.g. encrypted with a key the server does not hold) is shown as
``{"encoding": ..., "data_base64": ...}`` instead. Bytes become base64 text,
times ISO 8601 strings (UTC), enums their names, non-finite floats strings.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.client import PauseInfo, WorkflowDescription
from orchestrator.converter import DataConverter, Payload

__all__ = ["description_json", "dumps", "event_json", "jsonable", "pause_json", "payload_json"]


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def payload_json(payload: Payload, converter: DataConverter) -> Any:
    """A payload decoded to plain JSON, or its raw form when it cannot be decoded."""
    try:
        return jsonable(converter.from_payload(payload))
    except Exception:  # noqa: BLE001 - a codec raises its own errors (e.g. a wrong key)
        return {
            "encoding": payload.encoding,
            "data_base64": base64.b64encode(payload.data).decode(),
        }


def jsonable(value: Any, converter: DataConverter | None = None) -> Any:  # noqa: PLR0911
    """``value`` made JSON-safe (payloads decoded with ``converter`` when given)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Payload):
        return payload_json(value, converter or DataConverter())
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.name
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: jsonable(getattr(value, f.name), converter) for f in dataclasses.fields(value)
        }
    if isinstance(value, dict):
        return {str(k): jsonable(v, converter) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, converter) for v in value]
    return str(value)


def description_json(d: WorkflowDescription) -> dict[str, Any]:
    """A workflow's latest snapshot (from the client) as JSON."""
    return {
        "workflow_id": d.workflow_id,
        "run_id": d.run_id,
        "workflow_type": d.workflow_type,
        "task_queue": d.task_queue,
        "status": d.status.name,
        "is_open": d.is_open,
        "start_time": d.start_time.isoformat(),
        "close_time": d.close_time.isoformat() if d.close_time else None,
        "last_seq": d.last_seq,
        "search_attributes": jsonable(d.search_attributes),
        "memo": jsonable(d.memo),
        "paused": pause_json(d.paused),
        "repairs": [
            {
                "action": r.action,
                "activity_type": r.activity_type,
                "reason": r.reason,
                "operator": r.operator,
                "at": r.at.isoformat(),
            }
            for r in d.repairs
        ],
        "workflow_version": d.workflow_version,
        "parked": d.parked,
        "priority": d.priority,
        "fairness_key": d.fairness_key,
        "pending_activities": [
            {
                "activity_seq": a.activity_seq,
                "activity_type": a.activity_type,
                "task_queue": a.task_queue,
                "attempt": a.attempt,
                "paused": a.paused,
            }
            for a in d.pending_activities
        ],
    }


def pause_json(paused: PauseInfo | None) -> dict[str, Any] | None:
    """An operator's pause in force as JSON (None when not paused)."""
    if paused is None:
        return None
    return {"reason": paused.reason, "operator": paused.operator, "since": paused.since.isoformat()}


def event_json(event: Any, converter: DataConverter) -> dict[str, Any]:
    """One history event: ``type``, ``seq``, ``time`` (ISO) and its other fields."""
    out: dict[str, Any] = {"type": type(event).__name__}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        out[f.name] = _iso_ms(value) if f.name == "time" else jsonable(value, converter)
    return out


def dumps(value: Any) -> str:
    """Compact JSON text (NaN/Infinity are refused: they are not JSON)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
