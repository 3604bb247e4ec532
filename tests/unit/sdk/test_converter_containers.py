"""Container hints the converter encodes decode back too: bare tuple/set/frozenset,
Mapping of dataclasses."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from orchestrator.converter import JsonPayloadConverter
from orchestrator.exceptions import PayloadConversionError

CONV = JsonPayloadConverter()


@dataclass(frozen=True)
class Item:
    sku: str
    quantity: int


@pytest.mark.parametrize(
    ("value", "hint"),
    [((1, "a"), tuple), ({1, 2}, set), (frozenset({"x"}), frozenset), ([1, 2], Sequence)],
)
def test_a_bare_container_hint_decodes_into_that_container(value: Any, hint: Any) -> None:
    decoded = CONV.decode(CONV.encode(value), hint)
    assert type(decoded) is type(value)
    assert decoded == value


@pytest.mark.parametrize("hint", [Mapping[str, Item], typing.Mapping[str, Item]])
def test_a_mapping_of_dataclasses_decodes_its_values_into_the_dataclass(hint: Any) -> None:
    basket = {"a": Item("sku-1", 2), "b": Item("sku-2", 1)}
    assert CONV.decode(CONV.encode(basket), hint) == basket


def test_a_bare_mapping_hint_gives_the_plain_object() -> None:
    assert CONV.decode(CONV.encode({"k": [1]}), Mapping) == {"k": [1]}


def test_a_mapping_value_that_does_not_fit_names_the_key() -> None:
    payload = CONV.encode({"a": {"sku": "s", "quantity": "many"}})
    with pytest.raises(PayloadConversionError, match=r"value\['a'\]\.quantity"):
        CONV.decode(payload, Mapping[str, Item])


def test_a_bare_tuple_hint_refuses_an_object() -> None:
    with pytest.raises(PayloadConversionError, match="expected a list"):
        CONV.decode(CONV.encode({"a": 1}), tuple)
