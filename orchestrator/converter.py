"""Payloads and the conversion of user values to and from them.

A :class:`Payload` is what history, tasks and replies carry for every user value:
already-encoded bytes plus string-keyed byte metadata (``encoding`` at least). The
engine never stores Python objects in history, only payloads.

:class:`JsonPayloadConverter` is the default :class:`PayloadConverter`. It encodes
``None``, ``bytes``, plain JSON types, dataclasses, enums, ``datetime``/``timedelta``
and pydantic models (when pydantic is importable). Decoding is driven by a type
hint: ``decode(payload, TransferRequest)`` rebuilds the dataclass, nested fields
included, and raises :class:`~orchestrator.exceptions.PayloadConversionError`
naming the offending field when the data does not fit the hint.

A :class:`PayloadCodec` transforms encoded payloads as a whole (for example to
encrypt or compress them); :class:`DataConverter` pairs a converter with an optional
codec.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, Union, get_args, get_origin, get_type_hints

from orchestrator.exceptions import PayloadConversionError

__all__ = [
    "ENCODING_BINARY",
    "ENCODING_JSON",
    "ENCODING_KEY",
    "ENCODING_NULL",
    "DataConverter",
    "JsonPayloadConverter",
    "Payload",
    "PayloadCodec",
    "PayloadConverter",
]

T = TypeVar("T")

ENCODING_KEY = "encoding"
ENCODING_JSON = b"json/plain"
ENCODING_NULL = b"binary/null"
ENCODING_BINARY = b"binary/plain"


@dataclass(frozen=True, slots=True)
class Payload:
    """One encoded user value: ``data`` bytes described by ``metadata``.

    ``metadata["encoding"]`` names the format (``json/plain``, ``binary/null``,
    ``binary/plain`` by default); codecs may add their own keys.
    """

    metadata: dict[str, bytes]
    data: bytes

    @property
    def encoding(self) -> str:
        """The ``encoding`` metadata entry as text ("" when absent)."""
        return self.metadata.get(ENCODING_KEY, b"").decode("utf-8", "replace")


class PayloadConverter(Protocol):
    """Turns Python values into payloads and back, guided by type hints."""

    def encode(self, value: Any) -> Payload:
        """Encode one value; raise PayloadConversionError if it cannot be encoded."""
        ...

    def decode(self, payload: Payload, type_hint: Any = None) -> Any:
        """Decode one payload into ``type_hint`` (``None`` or ``Any``: plain JSON)."""
        ...


class PayloadCodec(Protocol):
    """Transforms already-encoded payloads, e.g. encryption or compression."""

    def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Transform payloads on their way out."""
        ...

    def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Undo :meth:`encode`."""
        ...


@functools.cache
def _pydantic_base() -> type[Any] | None:
    try:
        pydantic = importlib.import_module("pydantic")
    except ImportError:
        return None
    base: type[Any] = pydantic.BaseModel
    return base


def _to_jsonable(value: Any, path: str) -> Any:  # noqa: PLR0911
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return _to_jsonable(value.value, path)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PayloadConversionError(f"{path}: naive datetime; use tz=UTC")
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _to_jsonable(getattr(value, f.name), f"{path}.{f.name}")
            for f in dataclasses.fields(value)
        }
    base = _pydantic_base()
    if base is not None and isinstance(value, base):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise PayloadConversionError(f"{path}: dict key {k!r} is not a str")
            out[k] = _to_jsonable(v, f"{path}[{k!r}]")
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [_to_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise PayloadConversionError(
        f"{path}: cannot encode a value of type {type(value).__qualname__}"
    )


#: containers a bare hint names (``tuple``, ``Sequence``): decoded as if ``[Any]``
_BARE_CONTAINERS = (tuple, set, frozenset, Sequence, Mapping)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__qualname__", None) or repr(hint)


def _from_jsonable(value: Any, hint: Any, path: str) -> Any:  # noqa: PLR0911, PLR0912
    if hint is None or hint is Any or hint is object:
        return value
    if hint is type(None):
        if value is not None:
            raise PayloadConversionError(f"{path}: expected null, got {value!r}")
        return None
    origin = get_origin(hint) or (hint if hint in _BARE_CONTAINERS else None)
    if origin is Union or origin is types.UnionType:
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        errors: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _from_jsonable(value, arg, path)
            except PayloadConversionError as exc:
                errors.append(str(exc))
        raise PayloadConversionError(f"{path}: no union member fits: {'; '.join(errors)}")
    if origin is typing.Literal:
        if value not in get_args(hint):
            raise PayloadConversionError(f"{path}: {value!r} not in {get_args(hint)!r}")
        return value
    if origin in (list, Sequence, tuple, set, frozenset):
        if not isinstance(value, list):
            raise PayloadConversionError(f"{path}: expected a list, got {type(value).__name__}")
        args = get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise PayloadConversionError(f"{path}: expected {len(args)} items")
            return tuple(_from_jsonable(v, a, f"{path}[{i}]") for i, (v, a) in
                         enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [_from_jsonable(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        if origin in (tuple, set, frozenset):
            return origin(items)
        return items
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            raise PayloadConversionError(f"{path}: expected an object, got {type(value).__name__}")
        args = get_args(hint)
        vt = args[1] if len(args) == 2 else Any
        return {k: _from_jsonable(v, vt, f"{path}[{k!r}]") for k, v in value.items()}
    if not isinstance(hint, type):
        return value
    if dataclasses.is_dataclass(hint):
        return _dataclass_from_jsonable(value, hint, path)
    return _scalar_from_jsonable(value, hint, path)


@functools.cache
def _dataclass_shape(hint: Any) -> tuple[dict[str, Any], tuple[dataclasses.Field[Any], ...]]:
    return get_type_hints(hint), dataclasses.fields(hint)


def _dataclass_from_jsonable(value: Any, hint: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise PayloadConversionError(
            f"{path}: expected an object for {hint.__qualname__}, got {type(value).__name__}"
        )
    hints, fields = _dataclass_shape(hint)
    kwargs: dict[str, Any] = {}
    known = {f.name for f in fields}
    unknown = set(value) - known
    if unknown:
        raise PayloadConversionError(
            f"{path}: unknown field(s) {sorted(unknown)} for {hint.__qualname__}"
        )
    for f in fields:
        if f.name in value:
            kwargs[f.name] = _from_jsonable(
                value[f.name], hints.get(f.name), f"{path}.{f.name}"
            )
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise PayloadConversionError(
                f"{path}: missing field {f.name!r} for {hint.__qualname__}"
            )
    return hint(**kwargs)


def _scalar_from_jsonable(value: Any, hint: type[Any], path: str) -> Any:  # noqa: PLR0912
    base = _pydantic_base()
    if base is not None and issubclass(hint, base):
        try:
            return getattr(hint, "model_validate")(value)  # noqa: B009
        except ValueError as exc:
            raise PayloadConversionError(f"{path}: {exc}") from exc
    if issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError as exc:
            raise PayloadConversionError(f"{path}: {exc}") from exc
    if hint is datetime:
        if not isinstance(value, str):
            raise PayloadConversionError(f"{path}: expected an ISO datetime string")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise PayloadConversionError(f"{path}: {exc}") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if hint is timedelta:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise PayloadConversionError(f"{path}: expected seconds as a number")
        return timedelta(seconds=value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is bytes:
        raise PayloadConversionError(f"{path}: bytes are only supported as a top-level value")
    if hint in (bool, int, float, str, dict, list):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise PayloadConversionError(
                f"{path}: expected {hint.__name__}, got {type(value).__name__} {value!r}"
            )
        return value
    raise PayloadConversionError(f"{path}: cannot decode into {_type_name(hint)}")


class JsonPayloadConverter:
    """The default converter: JSON for structured values, raw bytes for ``bytes``."""

    def encode(self, value: Any) -> Payload:
        """Encode ``value``; see the module docstring for supported types."""
        if value is None:
            return Payload({ENCODING_KEY: ENCODING_NULL}, b"")
        if isinstance(value, bytes):
            return Payload({ENCODING_KEY: ENCODING_BINARY}, value)
        data = json.dumps(
            _to_jsonable(value, "value"), separators=(",", ":"), sort_keys=True
        ).encode()
        return Payload({ENCODING_KEY: ENCODING_JSON}, data)

    def decode(self, payload: Payload, type_hint: Any = None) -> Any:
        """Decode ``payload`` into ``type_hint``; raises PayloadConversionError."""
        enc = payload.metadata.get(ENCODING_KEY)
        if enc == ENCODING_NULL:
            return _from_jsonable(None, type_hint, "value")
        if enc == ENCODING_BINARY:
            if type_hint not in (None, Any, bytes, object):
                raise PayloadConversionError(
                    f"value: got bytes, expected {_type_name(type_hint)}"
                )
            return payload.data
        if enc != ENCODING_JSON:
            raise PayloadConversionError(f"value: unknown payload encoding {enc!r}")
        try:
            raw = json.loads(payload.data)
        except ValueError as exc:
            raise PayloadConversionError(f"value: payload is not valid JSON: {exc}") from exc
        return _from_jsonable(raw, type_hint, "value")


@dataclass(frozen=True, slots=True)
class DataConverter:
    """A payload converter plus an optional codec applied after encoding."""

    payload_converter: PayloadConverter = field(default_factory=JsonPayloadConverter)
    codec: PayloadCodec | None = None

    def to_payloads(self, values: Sequence[Any]) -> list[Payload]:
        """Encode values, then run the codec."""
        out = [self.payload_converter.encode(v) for v in values]
        return self.codec.encode(out) if self.codec else out

    def to_payload(self, value: Any) -> Payload:
        """Encode one value, then run the codec."""
        return self.to_payloads([value])[0]

    def from_payloads(self, payloads: Sequence[Payload], hints: Sequence[Any]) -> list[Any]:
        """Run the codec backwards, then decode each payload into its hint."""
        decoded = self.codec.decode(payloads) if self.codec else list(payloads)
        out: list[Any] = []
        for i, p in enumerate(decoded):
            hint = hints[i] if i < len(hints) else None
            try:
                out.append(self.payload_converter.decode(p, hint))
            except PayloadConversionError as exc:
                raise PayloadConversionError(f"argument {i}: {exc}") from exc
        return out

    def from_payload(self, payload: Payload, hint: Any = None) -> Any:
        """Decode one payload into ``hint``."""
        decoded = self.codec.decode([payload])[0] if self.codec else payload
        return self.payload_converter.decode(decoded, hint)
