"""Maps :class:`~orchestrator.engine.events.Failure` (a linked cause chain) to Avro.

The Avro ``saga.Failure`` record keeps causes as a flat list of ``saga.FailureCause``
instead of a recursive field: a recursive schema lets a small hostile record nest
deeply enough to overflow the C stack of fastavro's reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.engine.events import Failure
from orchestrator.serde.errors import SchemaError
from orchestrator.serde.mapping import CustomMapping, RecordMapper

FAILURE = "saga.Failure"
FAILURE_CAUSE = "saga.FailureCause"


def failure_mapping(
    named: Mapping[str, Any], custom: Mapping[type, CustomMapping]
) -> CustomMapping:
    """The (to_avro, from_avro) pair for Failure, checked against the schema's named types."""
    outer, link = named.get(FAILURE), named.get(FAILURE_CAUSE)
    if outer is None or link is None:
        raise SchemaError(f"schema defines Failure fields but lacks {FAILURE} or {FAILURE_CAUSE}")
    outer_fields = {f["name"] for f in outer["fields"]}
    link_fields = {f["name"] for f in link["fields"]}
    if outer_fields != link_fields | {"causes"}:
        raise SchemaError(
            f"{FAILURE} must have the fields of {FAILURE_CAUSE} plus 'causes'; "
            f"differs by {sorted(outer_fields ^ (link_fields | {'causes'}))}"
        )
    mapper = RecordMapper.build(Failure, link, named, custom=custom, exclude=frozenset({"cause"}))

    def to_avro(failure: Failure) -> dict[str, Any]:
        datum = mapper.to_avro(failure)
        causes = []
        cause = failure.cause
        while cause is not None:
            causes.append(mapper.to_avro(cause))
            cause = cause.cause
        datum["causes"] = causes
        return datum

    def from_avro(datum: Mapping[str, Any]) -> Failure:
        cause: Failure | None = None
        for link_datum in reversed(datum["causes"]):
            cause = mapper.from_avro(link_datum, cause=cause)
        return mapper.from_avro(datum, cause=cause)

    return to_avro, from_avro
