"""Replaying saved histories against current code, and the JSON history format.

The JSON export is a list of objects, one per event: ``{"type": "<EventClass>",
"seq": 1, "time": 1735689600000, ...fields}``; payload bytes and metadata values
are base64. :func:`history_to_json` and :func:`history_from_json` round-trip it.

:class:`Replayer` is what a CI job runs before deploying new workflow code::

    Replayer(workflows=[transfer]).replay(history_from_json(path.read_text()))

It raises :class:`~orchestrator.exceptions.NonDeterminismError` if the code would
not issue exactly the recorded commands.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import types
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, Union, get_args, get_origin, get_type_hints

from orchestrator.converter import DataConverter, Payload
from orchestrator.engine import events as ev
from orchestrator.engine.executor import WorkflowExecutor
from orchestrator.engine.guards import GuardMode
from orchestrator.engine.registry import WorkflowRegistry
from orchestrator.exceptions import NonDeterminismError, NotFoundError
from orchestrator.status import WorkflowStatus

__all__ = ["ReplayResult", "Replayer", "history_from_json", "history_to_json"]


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _to_json(value: Any) -> Any:
    if isinstance(value, Payload):
        return {"metadata": {k: _b64(v) for k, v in value.metadata.items()},
                "data": _b64(value.data)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return _b64(value)
    return value


def history_to_json(history: Sequence[ev.Event], *, indent: int | None = 1) -> str:
    """Export a history as JSON text."""
    out = []
    for e in history:
        item = {"type": type(e).__name__}
        item.update(_to_json(e))
        out.append(item)
    return json.dumps(out, indent=indent)


@cache
def _hints(cls: type[Any]) -> dict[str, Any]:
    return get_type_hints(cls)


def _from_json(value: Any, hint: Any) -> Any:  # noqa: PLR0911
    if value is None:
        return None
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        inner = [a for a in get_args(hint) if a is not type(None)]
        return _from_json(value, inner[0])
    if origin is list:
        return [_from_json(v, get_args(hint)[0]) for v in value]
    if origin is dict:
        return {k: _from_json(v, get_args(hint)[1]) for k, v in value.items()}
    if hint is Payload:
        return Payload({k: base64.b64decode(v) for k, v in value["metadata"].items()},
                       base64.b64decode(value["data"]))
    if hint is bytes:
        return base64.b64decode(value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = _hints(hint)
        return hint(**{k: _from_json(v, hints[k]) for k, v in value.items()})
    return value


def history_from_json(text: str) -> list[ev.Event]:
    """Parse a JSON export back into events."""
    out: list[ev.Event] = []
    for item in json.loads(text):
        name = item.pop("type")
        cls = ev.EVENT_TYPES.get(name)
        if cls is None:
            raise ValueError(f"unknown event type {name!r} in history")
        e = _from_json(item, cls)
        out.append(e)
    return out


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a successful replay found."""

    workflow_type: str
    events: int
    status: WorkflowStatus
    #: the version of the type's definition the history was replayed with (its own)
    workflow_version: int = 1


class Replayer:
    """Replays histories against the given workflow definitions."""

    def __init__(
        self,
        *,
        workflows: Sequence[Any],
        converter: DataConverter | None = None,
        guard: GuardMode = "raise",
    ) -> None:
        self._defs = WorkflowRegistry(workflows)
        self._conv = converter
        self._guard: GuardMode = guard

    def replay(self, history: Sequence[ev.Event] | str) -> ReplayResult:
        """Replay one history (events or JSON text); raise NonDeterminismError."""
        events = history_from_json(history) if isinstance(history, str) else list(history)
        if not events or not isinstance(events[0], ev.WorkflowStarted):
            raise NonDeterminismError("a history must begin with WorkflowStarted")
        wtype, version = events[0].workflow_type, events[0].workflow_version
        d = self._defs.get_version(wtype, version)  # the version the run was pinned to
        if d is None:
            which = f" version {version}" if self._defs.versions(wtype) else ""
            raise NotFoundError(
                f"no workflow {wtype!r}{which} registered; have {self._defs.describe()}"
            )
        newest = partial(self._defs.newest_version, wtype)
        executor = WorkflowExecutor(d, events, converter=self._conv, guard=self._guard,
                                    newest_version=newest)
        tail = executor.apply([], events[-1].time).events
        if tail and events[-1].__class__ in ev.TERMINAL_EVENTS:
            raise NonDeterminismError(
                "the code issues commands after the recorded end of the run",
                seq=tail[0].seq, expected="end of history", actual=type(tail[0]).__name__,
            )
        return ReplayResult(wtype, len(events), executor.status, version)
