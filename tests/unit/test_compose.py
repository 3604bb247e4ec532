"""compose/docker-compose.yml stays in step with the defaults the code uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from orchestrator import config
from orchestrator.devstack import providers
from orchestrator.devstack.paths import REPO_ROOT, kafka_version

COMPOSE = REPO_ROOT / "compose" / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(Path(COMPOSE).read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"service {name} has no image"
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"service {name} image {image!r} is not pinned"


def test_kafka_is_kraft_on_the_default_port_and_pinned_version(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{kafka_version()}"  # same version as the local jars
    env = kafka["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"]
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    default_port = config.DEFAULT_BOOTSTRAP_SERVERS.rsplit(":", 1)[1]
    assert f"{default_port}:{default_port}" in kafka["ports"]
    assert f"HOST://localhost:{default_port}" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_postgres_matches_default_database_url(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]
    url = urlparse(config.DEFAULT_DATABASE_URL)
    assert f"{url.port}:5432" in pg["ports"]
    assert pg["environment"]["POSTGRES_USER"] == url.username
    assert pg["environment"]["POSTGRES_PASSWORD"] == url.password
    assert pg["environment"]["POSTGRES_DB"] == url.path.lstrip("/")
    assert pg["image"] == providers.POSTGRES_IMAGE  # same image as the testcontainers path


def test_app_services_use_the_code_s_variable_names(compose: dict[str, Any]) -> None:
    for name in ("engine-worker", "activity-worker", "projector"):
        env = compose["services"][name]["environment"]
        assert set(env) <= set(config.ENV_NAMES), f"{name} sets unknown variables"
        assert {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"} <= set(env)
        loaded = config.Settings.from_env({k: str(v) for k, v in env.items()})
        assert loaded.topic_prefix == config.DEFAULT_TOPIC_PREFIX
