"""Settings shared by workers, clients, the CLI and the demo, read from the environment.

Every Kafka client setting passes through: ``SAGA_KAFKA_<NAME>`` becomes the
librdkafka property ``<name>`` with underscores turned into dots, e.g.
``SAGA_KAFKA_SECURITY_PROTOCOL=SASL_SSL``, ``SAGA_KAFKA_SASL_MECHANISM=SCRAM-SHA-512``,
``SAGA_KAFKA_SASL_USERNAME``, ``SAGA_KAFKA_SASL_PASSWORD``, ``SAGA_KAFKA_SSL_CA_LOCATION``.
Secrets are never printed: :meth:`Settings.redacted` masks them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_BOOTSTRAP_SERVERS = "localhost:9092"
DEFAULT_DATABASE_URL = "postgresql://saga:saga@localhost:5432/saga"
DEFAULT_TOPIC_PREFIX = "saga"
DEFAULT_SHARDS = 8
DEFAULT_HTTP_PORT = 8080
#: how long a closed run is kept before its records are tombstoned (7 days)
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
#: executions an engine shard keeps in memory besides those in flight
DEFAULT_CACHE_SIZE = 10_000


def default_state_dir() -> Path:
    """Where ``saga worker`` keeps its shard stores: ``$SAGA_STATE_DIR``, else
    ``$SAGA_CACHE_DIR/state``, else ``~/.cache/saga-orchestrator/state``."""
    explicit = os.environ.get("SAGA_STATE_DIR")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("SAGA_CACHE_DIR")
    base = Path(cache) if cache else Path.home() / ".cache" / "saga-orchestrator"
    return base / "state"


KAFKA_PASSTHROUGH_PREFIX = "SAGA_KAFKA_"
ENV_NAMES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
    "SAGA_TOPIC_PREFIX",
    "SAGA_SHARDS",
    "SAGA_HTTP_PORT",
)
_SECRET_MARKERS = ("password", "secret", "token", "key.pem", "sasl.oauthbearer.config")


def is_secret(name: str) -> bool:
    """True for settings whose value must never reach a log line."""
    lowered = name.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def _kafka_passthrough(env: Mapping[str, str]) -> dict[str, str]:
    return {
        name[len(KAFKA_PASSTHROUGH_PREFIX) :].lower().replace("_", "."): value
        for name, value in env.items()
        if name.startswith(KAFKA_PASSTHROUGH_PREFIX)
    }


MIN_TOKEN_KEY_CHARS = 32
"""A task-token key shorter than this is refused (an HMAC key worth the name)."""


class SettingsError(ValueError):
    """An environment variable the settings read holds a value they cannot take."""


@dataclass(frozen=True)
class Settings:
    """Where the orchestrator's infrastructure is and how its topics are named."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    database_url: str = DEFAULT_DATABASE_URL
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    shards: int = DEFAULT_SHARDS
    http_port: int = DEFAULT_HTTP_PORT
    kafka_extra: Mapping[str, str] = field(default_factory=dict)
    task_token_key: str = ""
    """``SAGA_TASK_TOKEN_KEY``: the engine workers sign activity attempts with it and
    refuse outcomes whose signature does not match (empty: unsigned task tokens)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``env`` (the process environment by default)."""
        env = os.environ if env is None else env
        try:
            shards = int(env.get("SAGA_SHARDS", DEFAULT_SHARDS))
            http_port = int(env.get("SAGA_HTTP_PORT", DEFAULT_HTTP_PORT))
        except ValueError as exc:
            raise SettingsError(f"SAGA_SHARDS and SAGA_HTTP_PORT must be integers: {exc}") from exc
        if shards < 1:
            raise SettingsError(f"SAGA_SHARDS must be at least 1, got {shards}")
        token_key = env.get("SAGA_TASK_TOKEN_KEY", "")
        if token_key and len(token_key) < MIN_TOKEN_KEY_CHARS:
            raise SettingsError(
                f"SAGA_TASK_TOKEN_KEY must have at least {MIN_TOKEN_KEY_CHARS} characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return cls(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP_SERVERS),
            database_url=env.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            topic_prefix=env.get("SAGA_TOPIC_PREFIX", DEFAULT_TOPIC_PREFIX),
            shards=shards,
            http_port=http_port,
            kafka_extra=_kafka_passthrough(env),
            task_token_key=token_key,
        )

    def kafka_config(self, **overrides: Any) -> dict[str, Any]:
        """librdkafka settings: bootstrap servers, pass-through security settings, overrides."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.kafka_extra, **overrides}

    def redacted(self) -> dict[str, Any]:
        """A copy safe to log: secret values and the database password are masked."""
        kafka = {k: ("***" if is_secret(k) else v) for k, v in self.kafka_extra.items()}
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "database_url": _mask_dsn_password(self.database_url),
            "topic_prefix": self.topic_prefix,
            "shards": self.shards,
            "http_port": self.http_port,
            "kafka_extra": kafka,
            "task_token_key": "***" if self.task_token_key else "",
        }

    def __repr__(self) -> str:
        return f"Settings({self.redacted()!r})"


#: a ``password=`` term of a key/value DSN (quoted or not) or of a URI's query string
_PASSWORD_TERM = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE)


def _mask_dsn_password(dsn: str) -> str:
    """``dsn`` with its password masked, in every form libpq takes: ``user:pass@`` in a
    URI, ``password=`` in its query string, or a key/value term."""
    dsn = _PASSWORD_TERM.sub(r"\1***", dsn)
    scheme, sep, rest = dsn.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return dsn
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
