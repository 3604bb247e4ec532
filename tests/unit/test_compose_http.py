"""The compose file's HTTP API service matches what ``saga http`` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator import config
from orchestrator.devstack.paths import REPO_ROOT
from orchestrator.http.auth import READ_TOKENS_ENV, TOKENS_ENV


def services() -> dict[str, Any]:
    loaded = yaml.safe_load(Path(REPO_ROOT / "compose" / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return dict(loaded["services"])


def http_api() -> dict[str, Any]:
    return dict(services()["http-api"])


def test_http_api_service_uses_the_code_s_variables_and_ports() -> None:
    service = http_api()
    assert service["profiles"] == ["app"]
    assert service["command"][:2] == ["saga", "http"]
    env = {k: str(v) for k, v in service["environment"].items()}
    assert set(env) <= {*config.ENV_NAMES, TOKENS_ENV, READ_TOKENS_ENV}
    settings = config.Settings.from_env(env)
    assert f"{settings.http_port}:{settings.http_port}" in service["ports"]
    assert settings.topic_prefix == config.DEFAULT_TOPIC_PREFIX
    host_ports = {p.split(":")[0] for p in service["ports"]}
    for name, other in services().items():
        if name != "http-api":
            assert not host_ports & {p.split(":")[0] for p in other.get("ports", [])}, name


def test_http_api_tokens_come_from_the_environment_not_the_file() -> None:
    env = http_api()["environment"]
    assert env[TOKENS_ENV].startswith("${SAGA_HTTP_TOKENS")
    assert READ_TOKENS_ENV not in env or env[READ_TOKENS_ENV].startswith("${")
