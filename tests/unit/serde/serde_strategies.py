"""Hypothesis strategies for wire records, derived from their type hints.

Derived, not hand-listed: a field added to an event or record is generated (and so
round-tripped) without touching the tests.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, get_args, get_origin, get_type_hints

from hypothesis import strategies as st

from orchestrator.converter import Payload
from orchestrator.engine.events import Failure

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=12)

payloads: st.SearchStrategy[Payload] = st.builds(
    Payload,
    st.dictionaries(TEXT, st.binary(max_size=16), max_size=3),
    st.binary(max_size=32),
)


def _failure(depth: int) -> st.SearchStrategy[Failure]:
    cause = st.none() if depth == 0 else st.none() | _failure(depth - 1)
    return st.builds(
        Failure,
        message=TEXT,
        type=TEXT,
        non_retryable=st.booleans(),
        stack_trace=TEXT,
        details=st.lists(payloads, max_size=2),
        next_retry_delay_ms=st.none() | INT64,
        cause=cause,
    )


failures = _failure(3)


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    """A strategy for any type used in wire records."""
    origin = get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return st.one_of(*(strategy_for(a) for a in get_args(hint)))
    if origin is list:
        return st.lists(strategy_for(get_args(hint)[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(TEXT, strategy_for(get_args(hint)[1]), max_size=3)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        type(None): st.none(),
        str: TEXT,
        int: INT64,
        bool: st.booleans(),
        bytes: st.binary(max_size=16),
        float: st.floats(allow_nan=False),
        Payload: payloads,
        Failure: failures,
    }
    if hint in simple:
        return simple[hint]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from(list(hint))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return records(hint)
    raise TypeError(f"no strategy for {hint!r}")


def records(cls: type[Any]) -> st.SearchStrategy[Any]:
    """Instances of a dataclass with every field drawn from its hint."""
    hints = get_type_hints(cls)
    return st.builds(cls, **{f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(cls)})
