"""Settings come from the environment; security settings pass through; secrets never print."""

from __future__ import annotations

import pytest

from orchestrator.config import Settings


def test_defaults_match_documented_values() -> None:
    settings = Settings.from_env({})
    assert settings.bootstrap_servers == "localhost:9092"
    assert settings.topic_prefix == "saga"
    assert settings.shards == 8


def test_sasl_ssl_settings_pass_through_to_librdkafka() -> None:
    settings = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "broker:9093",
            "SAGA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "SAGA_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "SAGA_KAFKA_SASL_USERNAME": "orders",
            "SAGA_KAFKA_SASL_PASSWORD": "hunter2",
            "SAGA_KAFKA_SSL_CA_LOCATION": "/etc/ca.pem",
        }
    )
    config = settings.kafka_config(**{"group.id": "engine"})
    assert config == {
        "bootstrap.servers": "broker:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "orders",
        "sasl.password": "hunter2",
        "ssl.ca.location": "/etc/ca.pem",
        "group.id": "engine",
    }


def test_secrets_are_masked_in_repr_and_redacted_view() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://app:s3cr3t@db:5432/app",
            "SAGA_KAFKA_SASL_PASSWORD": "hunter2",
        }
    )
    shown = repr(settings) + str(settings.redacted())
    assert "hunter2" not in shown
    assert "s3cr3t" not in shown
    assert "postgresql://app:***@db:5432/app" in shown


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            "host=db user=app password=hunter2 dbname=app",
            "host=db user=app password=*** dbname=app",
        ),
        ("host=db password='hun ter2' dbname=app", "host=db password=*** dbname=app"),
        (
            "postgresql://db/app?password=hunter2&sslmode=require",
            "postgresql://db/app?password=***&sslmode=require",
        ),
        (
            "postgresql://app:hunter2@db/app?PASSWORD=hunter2",
            "postgresql://app:***@db/app?PASSWORD=***",
        ),
    ],
)
def test_every_form_of_dsn_password_is_masked(dsn: str, shown: str) -> None:
    redacted = Settings.from_env({"DATABASE_URL": dsn}).redacted()
    assert redacted["database_url"] == shown
    assert "hunter2" not in repr(Settings.from_env({"DATABASE_URL": dsn}))


@pytest.mark.parametrize("env", [{"SAGA_SHARDS": "zero"}, {"SAGA_SHARDS": "0"}])
def test_bad_shard_count_is_a_clear_error(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="SAGA_SHARDS"):
        Settings.from_env(env)


def test_the_task_token_key_is_read_checked_and_never_printed() -> None:
    key = "f" * 64
    settings = Settings.from_env({"SAGA_TASK_TOKEN_KEY": key})
    assert settings.task_token_key == key
    assert key not in repr(settings) + str(settings.redacted())
    assert Settings.from_env({}).task_token_key == "", "no key: unsigned tokens"
    with pytest.raises(ValueError, match="SAGA_TASK_TOKEN_KEY must have at least 32"):
        Settings.from_env({"SAGA_TASK_TOKEN_KEY": "short"})
