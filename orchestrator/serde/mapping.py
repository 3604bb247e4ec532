"""Maps frozen dataclasses to Avro datums (dicts) and back, checked against the schema.

A :class:`RecordMapper` is built once per dataclass from its type hints and its Avro
record schema. Building it verifies that both have the same fields with compatible
types, so a field added to a dataclass without a schema (or the reverse) fails at
start-up and in CI rather than on the wire. Converting is then a flat loop of
precomputed per-field functions; fields that need no conversion cost nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, get_args, get_origin, get_type_hints

from orchestrator.serde.errors import SchemaError

T = TypeVar("T")

Convert = Callable[[Any], Any]
"""Converts one field value; ``None`` in a field table means "pass unchanged"."""

CustomMapping = tuple[Convert, Convert]
"""A (to_avro, from_avro) pair for a Python type that needs a hand-written mapping."""

_PRIMITIVES: dict[type, frozenset[str]] = {
    str: frozenset({"string"}),
    bytes: frozenset({"bytes"}),
    bool: frozenset({"boolean"}),
    int: frozenset({"long"}),
    float: frozenset({"double"}),
}


def named_types(schema: Any, found: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every named type (record, enum, fixed) defined in a parsed schema, by full name."""
    found = {} if found is None else found
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            found[schema["name"]] = schema
        if kind in ("record", "error"):
            for field in schema["fields"]:
                named_types(field["type"], found)
        elif kind == "array":
            named_types(schema["items"], found)
        elif kind == "map":
            named_types(schema["values"], found)
    return found


class _Builder:
    """Builds converters for one schema; shares nested mappers and custom mappings."""

    def __init__(self, named: Mapping[str, Any], custom: Mapping[type, CustomMapping]) -> None:
        self.named = named
        self.custom = custom
        self.mappers: dict[type, RecordMapper[Any]] = {}

    def resolve(self, avro: Any) -> Any:
        if isinstance(avro, str) and avro in self.named:
            return self.named[avro]
        return avro

    def pair(  # noqa: PLR0911 - one return per kind of type, flat on purpose
        self, hint: Any, avro: Any, where: str
    ) -> tuple[Convert | None, Convert | None]:
        avro = self.resolve(avro)
        origin = get_origin(hint)
        if origin is typing.Union or origin is types.UnionType:
            return self._optional(hint, avro, where)
        if isinstance(avro, list):
            raise SchemaError(f"{where}: Avro union {avro} but Python type {hint} is not Optional")
        kind = avro["type"] if isinstance(avro, dict) else avro
        if origin in (list, tuple):
            return self._array(hint, avro, kind, where)
        if origin is dict:
            return self._map(hint, avro, kind, where)
        if isinstance(hint, type) and hint in self.custom:
            return self.custom[hint]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            if kind != "record":
                raise SchemaError(f"{where}: {hint.__name__} needs an Avro record, got {kind}")
            mapper = self.mapper(hint, avro)
            return mapper.to_avro, mapper.from_avro
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            return self._enum(hint, avro, kind, where)
        if isinstance(hint, type) and hint in _PRIMITIVES and not isinstance(avro, dict):
            if kind not in _PRIMITIVES[hint]:
                raise SchemaError(f"{where}: Python {hint.__name__} cannot map to Avro {kind}")
            return None, None
        raise SchemaError(f"{where}: no Avro mapping for Python type {hint!r} and Avro {avro!r}")

    def _optional(self, hint: Any, avro: Any, where: str) -> tuple[Convert | None, Convert | None]:
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) != 1 or len(get_args(hint)) != 2:
            raise SchemaError(f"{where}: only 'X | None' unions map to Avro, got {hint}")
        if not (isinstance(avro, list) and len(avro) == 2 and avro[0] == "null"):
            raise SchemaError(f"{where}: {hint} needs Avro ['null', X], got {avro}")
        to, back = self.pair(args[0], avro[1], where)
        return _none_safe(to), _none_safe(back)

    def _array(
        self, hint: Any, avro: Any, kind: str, where: str
    ) -> tuple[Convert | None, Convert | None]:
        args = get_args(hint)
        if kind != "array":
            raise SchemaError(f"{where}: {hint} needs an Avro array, got {kind}")
        if get_origin(hint) is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            raise SchemaError(f"{where}: only tuple[X, ...] maps to an Avro array")
        to, back = self.pair(args[0], avro["items"], f"{where}[]")
        make: Callable[[Any], Any] = tuple if get_origin(hint) is tuple else list
        to_all = None if to is None else (lambda v: [to(i) for i in v])
        if back is None:
            return to_all, (None if make is list else make)
        return to_all, (lambda v: make([back(i) for i in v]))

    def _map(
        self, hint: Any, avro: Any, kind: str, where: str
    ) -> tuple[Convert | None, Convert | None]:
        args = get_args(hint)
        if kind != "map" or args[0] is not str:
            raise SchemaError(f"{where}: {hint} needs an Avro map with str keys, got {kind}")
        to, back = self.pair(args[1], avro["values"], f"{where}{{}}")
        return (
            None if to is None else (lambda v: {k: to(i) for k, i in v.items()}),
            None if back is None else (lambda v: {k: back(i) for k, i in v.items()}),
        )

    def _enum(
        self, hint: type[enum.Enum], avro: Any, kind: str, where: str
    ) -> tuple[Convert | None, Convert | None]:
        if kind != "enum":
            raise SchemaError(f"{where}: enum {hint.__name__} needs an Avro enum, got {kind}")
        missing = set(hint.__members__) - set(avro["symbols"])
        if missing:
            raise SchemaError(f"{where}: Avro enum lacks symbols {sorted(missing)}")
        return (lambda v: v.name), (lambda v: hint[v])

    def mapper(self, cls: type[T], avro: Any) -> RecordMapper[T]:
        existing = self.mappers.get(cls)
        if existing is not None:
            return existing
        mapper: RecordMapper[T] = RecordMapper.__new__(RecordMapper)
        self.mappers[cls] = mapper  # registered first: tolerates self-referencing types
        mapper._build(cls, self.resolve(avro), self)
        return mapper


def _none_safe(convert: Convert | None) -> Convert | None:
    if convert is None:
        return None
    return lambda v: None if v is None else convert(v)


class RecordMapper(Generic[T]):
    """Converts one dataclass type to its Avro record datum and back."""

    cls: type[T]
    _to: list[tuple[str, Convert | None]]
    _back: list[tuple[str, Convert | None]]

    @classmethod
    def build(
        cls,
        python_type: type[T],
        avro_record: Any,
        named: Mapping[str, Any] | None = None,
        custom: Mapping[type, CustomMapping] | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> RecordMapper[T]:
        """Check ``python_type`` against ``avro_record`` and build the mapper.

        ``exclude`` names dataclass fields kept outside this record (for example
        envelope fields); they are neither written nor read here.
        """
        builder = _Builder(named if named is not None else named_types(avro_record), custom or {})
        mapper: RecordMapper[T] = RecordMapper.__new__(RecordMapper)
        mapper._build(python_type, avro_record, builder, exclude)
        return mapper

    def _build(
        self,
        python_type: type[T],
        avro: Any,
        builder: _Builder,
        exclude: frozenset[str] = frozenset(),
    ) -> None:
        self.cls = python_type
        where = python_type.__name__
        if not (isinstance(avro, dict) and avro.get("type") == "record"):
            raise SchemaError(f"{where}: expected an Avro record schema")
        hints = get_type_hints(python_type)
        fields = [f for f in dataclasses.fields(python_type) if f.name not in exclude]  # type: ignore[arg-type]
        if any(not f.init for f in fields):
            raise SchemaError(f"{where}: init=False fields cannot be decoded")
        avro_fields = {f["name"]: f for f in avro["fields"]}
        names = {f.name for f in fields}
        problems = []
        if unmapped := sorted(names - set(avro_fields)):
            problems.append(f"fields missing from schema {avro['name']}: {unmapped}")
        if unknown := sorted(set(avro_fields) - names):
            problems.append(f"schema fields missing from the dataclass: {unknown}")
        if problems:
            raise SchemaError(f"{where}: " + "; ".join(problems))
        self._to = []
        self._back = []
        for f in fields:
            to, back = builder.pair(hints[f.name], avro_fields[f.name]["type"], f"{where}.{f.name}")
            self._to.append((f.name, to))
            self._back.append((f.name, back))

    def to_avro(self, obj: T) -> dict[str, Any]:
        """The Avro datum of ``obj``."""
        return {
            name: getattr(obj, name) if to is None else to(getattr(obj, name))
            for name, to in self._to
        }

    def from_avro(self, datum: Mapping[str, Any], **extra: Any) -> T:
        """Rebuild the dataclass from a decoded datum (plus ``extra`` excluded fields)."""
        kwargs = {
            name: datum[name] if back is None else back(datum[name]) for name, back in self._back
        }
        if extra:
            kwargs.update(extra)
        return self.cls(**kwargs)
