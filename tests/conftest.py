"""Shared fixtures: real Kafka and PostgreSQL, started once per session when a test asks.

Unit tests never request these, so ``pytest tests/unit`` starts nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.devstack import providers


@pytest.fixture(scope="session")
def kafka() -> Iterator[providers.KafkaHandle]:
    """One Kafka broker for the whole session (env, Docker or local jars)."""
    with providers.kafka() as handle:
        yield handle


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[providers.KafkaHandle]:
    """A three-node local cluster (RF 3, min ISR 2) whose nodes tests may kill and restart."""
    with providers.kafka(nodes=3) as handle:
        yield handle


@pytest.fixture(scope="session")
def postgres() -> Iterator[providers.PostgresHandle]:
    """One PostgreSQL server for the whole session."""
    with providers.postgres() as handle:
        yield handle


@pytest.fixture
def unique() -> str:
    """A short random token for names that must not collide between tests."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def topic_prefix(unique: str) -> str:
    """A topic prefix owned by this test alone."""
    return f"t{unique}"


@pytest.fixture
def group_id(unique: str) -> str:
    """A consumer group id owned by this test alone."""
    return f"g{unique}"


@pytest.fixture
def kafka_config(kafka: providers.KafkaHandle) -> dict[str, Any]:
    """Base librdkafka settings for the session broker."""
    return {"bootstrap.servers": kafka.bootstrap_servers}


@pytest.fixture
def admin(kafka_config: dict[str, Any]) -> AdminClient:
    return AdminClient(kafka_config)


@pytest.fixture
def database(postgres: providers.PostgresHandle, unique: str) -> Iterator[str]:
    """DSN of a fresh database owned by this test; dropped afterwards."""
    name = f"test_{unique}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = postgres.dsn.rpartition("/")
    yield f"{base}/{name}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
