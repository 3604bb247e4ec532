"""Kafka calls retried while the cluster is briefly unreachable (a starting worker's
topic check and flow-control read), for a while."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from orchestrator.log.retrying import retried


def test_a_transient_kafka_error_is_retried_until_the_call_succeeds() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker transport failure"))
        return "configs"

    assert retried("reading", flaky, within_s=30) == "configs"
    assert len(calls) == 3


def test_the_last_error_is_raised_once_the_window_has_passed() -> None:
    calls: list[int] = []

    def down() -> str:
        calls.append(1)
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker transport failure"))

    with pytest.raises(KafkaException):
        retried("reading", down, within_s=1.5)
    assert 2 <= len(calls) <= 3


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def broken() -> str:
        calls.append(1)
        raise ValueError("not Kafka's")

    with pytest.raises(ValueError):
        retried("reading", broken, within_s=30)
    assert calls == [1]
