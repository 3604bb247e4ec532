"""The default payload converter: round trips and clear errors."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from orchestrator.converter import DataConverter, JsonPayloadConverter, Payload
from orchestrator.exceptions import PayloadConversionError


class Tier(enum.Enum):
    GOLD = "gold"
    SILVER = "silver"


@dataclass
class Address:
    city: str
    zip: str | None = None


@dataclass
class Customer:
    name: str
    tier: Tier
    joined: datetime
    addresses: list[Address] = field(default_factory=list)
    limits: dict[str, float] = field(default_factory=dict)
    grace: timedelta = timedelta(days=3)
    kind: Literal["person", "company"] = "person"


CONV = JsonPayloadConverter()


def test_dataclass_round_trip_with_nested_types() -> None:
    c = Customer("ann", Tier.GOLD, datetime(2025, 1, 2, 3, 4, tzinfo=UTC),
                 [Address("Oslo", "0150"), Address("Bergen")], {"daily": 10})
    p = CONV.encode(c)
    assert p.metadata == {"encoding": b"json/plain"}
    back = CONV.decode(p, Customer)
    assert back == Customer("ann", Tier.GOLD, c.joined, c.addresses, {"daily": 10.0})
    assert isinstance(back.limits["daily"], float)


@pytest.mark.parametrize("value", [None, True, 3, 2.5, "x", [1, "a"], {"k": [1]}, b"\x00\x01"])
def test_plain_values_round_trip(value: Any) -> None:
    assert CONV.decode(CONV.encode(value)) == value


def test_encoding_is_deterministic() -> None:
    assert CONV.encode({"b": 1, "a": 2}).data == CONV.encode({"a": 2, "b": 1}).data


@pytest.mark.parametrize(
    ("raw", "hint", "message"),
    [
        ({"name": "x"}, Customer, "missing field 'tier'"),
        ({"city": 5}, Address, "value.city: expected str, got int 5"),
        ({"city": "x", "planet": "mars"}, Address, r"unknown field\(s\) \['planet'\]"),
        ([1, "two"], list[int], r"value\[1\]: expected int, got str"),
        ("platinum", Tier, "'platinum' is not a valid Tier"),
        (True, int, "expected int, got bool"),
        ("mars", Literal["person", "company"], "not in"),
    ],
)
def test_decode_errors_name_the_offending_field(raw: Any, hint: Any, message: str) -> None:
    with pytest.raises(PayloadConversionError, match=message):
        CONV.decode(CONV.encode(raw), hint)


def test_unencodable_values_are_named() -> None:
    with pytest.raises(PayloadConversionError, match=r"value\[0\]: cannot encode .*object"):
        CONV.encode([object()])
    with pytest.raises(PayloadConversionError, match="naive datetime"):
        CONV.encode(datetime(2025, 1, 1))


def test_unknown_encoding_and_bad_json_are_reported() -> None:
    with pytest.raises(PayloadConversionError, match="unknown payload encoding"):
        CONV.decode(Payload({"encoding": b"x/y"}, b""))
    with pytest.raises(PayloadConversionError, match="not valid JSON"):
        CONV.decode(Payload({"encoding": b"json/plain"}, b"{"))


class Reverse:
    """A toy codec: reverses data bytes and marks them."""

    def encode(self, payloads: Any) -> list[Payload]:
        return [Payload({**p.metadata, "reversed": b"1"}, p.data[::-1]) for p in payloads]

    def decode(self, payloads: Any) -> list[Payload]:
        return [Payload({k: v for k, v in p.metadata.items() if k != "reversed"}, p.data[::-1])
                for p in payloads]


def test_data_converter_applies_the_codec_both_ways() -> None:
    dc = DataConverter(codec=Reverse())
    [p] = dc.to_payloads([Address("Oslo")])
    assert p.metadata["reversed"] == b"1"
    assert dc.from_payloads([p], [Address]) == [Address("Oslo")]
    with pytest.raises(PayloadConversionError, match="argument 0"):
        dc.from_payloads([p], [int])
