"""Payload codecs: whole-payload transforms applied after the payload converter.

Any object with ``encode``/``decode`` over a list of payloads is a codec
(:class:`orchestrator.converter.PayloadCodec`). :class:`CodecChain` composes them:
encoding runs them in order, decoding in reverse, so ``CodecChain([ZlibCodec(),
AesGcmCodec(...)])`` compresses and then encrypts. A codec leaves alone payloads it
did not produce, so turning one on never breaks history written before.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Sequence

import fastavro

from orchestrator.converter import ENCODING_KEY, Payload, PayloadCodec
from orchestrator.serde.errors import PayloadCodecError

__all__ = ["CodecChain", "PayloadCodec", "ZlibCodec", "pack_payload", "unpack_payload"]

_PAYLOAD_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "saga.Payload",
        "fields": [
            {"name": "metadata", "type": {"type": "map", "values": "bytes"}},
            {"name": "data", "type": "bytes"},
        ],
    },
    named_schemas={},
)


def pack_payload(payload: Payload) -> bytes:
    """A payload (metadata included) as bytes: Avro ``saga.Payload``, so codecs can wrap it."""
    out = io.BytesIO()
    fastavro.schemaless_writer(
        out, _PAYLOAD_SCHEMA, {"metadata": payload.metadata, "data": payload.data}
    )
    return out.getvalue()


def unpack_payload(data: bytes) -> Payload:
    """Inverse of :func:`pack_payload`; :class:`PayloadCodecError` if ``data`` is not one."""
    source = io.BytesIO(data)
    try:
        datum = fastavro.schemaless_reader(source, _PAYLOAD_SCHEMA)
    except (EOFError, ValueError, IndexError, TypeError, OverflowError, MemoryError) as exc:
        raise PayloadCodecError(f"inner payload is not valid: {exc!r}") from None
    if source.tell() != len(data) or not isinstance(datum, dict):
        raise PayloadCodecError("inner payload has trailing bytes")
    return Payload(datum["metadata"], datum["data"])


class CodecChain:
    """Several codecs as one: encode in the given order, decode in reverse."""

    def __init__(self, codecs: Sequence[PayloadCodec]) -> None:
        self.codecs = tuple(codecs)

    def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Run every codec's encode, first to last."""
        out = list(payloads)
        for codec in self.codecs:
            out = codec.encode(out)
        return out

    def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Run every codec's decode, last to first."""
        out = list(payloads)
        for codec in reversed(self.codecs):
            out = codec.decode(out)
        return out


ZLIB_ENCODING = b"binary/zlib"


class ZlibCodec:
    """Compresses payloads of at least ``min_size`` bytes when that makes them smaller."""

    def __init__(self, min_size: int = 512, level: int = 6) -> None:
        self.min_size = min_size
        self.level = level

    def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Compress each large enough payload (metadata included)."""
        out = []
        for payload in payloads:
            if len(payload.data) >= self.min_size:
                packed = zlib.compress(pack_payload(payload), self.level)
                if len(packed) < len(payload.data):
                    out.append(Payload({ENCODING_KEY: ZLIB_ENCODING}, packed))
                    continue
            out.append(payload)
        return out

    def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decompress payloads this codec compressed; pass the others through."""
        out = []
        for payload in payloads:
            if payload.metadata.get(ENCODING_KEY) != ZLIB_ENCODING:
                out.append(payload)
                continue
            try:
                out.append(unpack_payload(zlib.decompress(payload.data)))
            except zlib.error as exc:
                raise PayloadCodecError(f"compressed payload is corrupt: {exc}") from None
        return out
