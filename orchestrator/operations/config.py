"""Who a deployment calls, and who may call it: the operations configuration.

One JSON file (``SAGA_OPERATIONS_CONFIG`` names it) read by the workers and by
``saga http``::

    {
      "callback_url": "https://a.example/v1/operation-callbacks",
      "endpoints": {"payments": {"url": "https://b.example", "service": "billing",
                                 "token": "...", "secret": "..."}},
      "handlers": {"billing/charge": {"workflow": "billing.charge", "task_queue": "billing"}},
      "callers": [{"url_prefix": "https://a.example/v1/operation-callbacks",
                   "secret": "..."}]
    }

``endpoints`` and ``callback_url`` serve the calling side, ``handlers`` and
``callers`` the handling side; either half may be left out.

The Kafka binding (both deployments on Kafka, no ``saga http`` involved): an endpoint
names ``kafka`` (librdkafka settings of the handler's cluster), the handler's
``topic_prefix`` and ``task_queue`` instead of ``url`` and ``token``; the calling side
then names its own ``callback_topic_prefix``. A ``callers`` entry names ``kafka`` and
the caller's ``topic_prefix`` instead of ``url_prefix``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CONFIG_ENV",
    "MIN_SECRET_CHARS",
    "CallerEntry",
    "ConfigError",
    "Endpoint",
    "OperationHandler",
    "OperationsConfig",
    "load_config",
    "parse_config",
]

CONFIG_ENV = "SAGA_OPERATIONS_CONFIG"
MIN_SECRET_CHARS = 16


class ConfigError(ValueError):
    """The operations configuration is unusable; the message says where."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A service this deployment calls: its base URL, service name, the bearer
    ``token`` its ``saga http`` accepts, and the ``secret`` both sides sign callbacks
    with. On Kafka: ``kafka`` settings, ``topic_prefix`` and ``task_queue`` of the
    handler deployment instead of ``url`` and ``token``."""

    url: str
    service: str
    token: str = field(repr=False)
    secret: str = field(repr=False)
    kafka: Mapping[str, str] = field(default_factory=dict, repr=False)
    topic_prefix: str = ""
    task_queue: str = ""

    @property
    def on_kafka(self) -> bool:
        """True for an endpoint reached through its deployment's Kafka topics."""
        return bool(self.topic_prefix)


@dataclass(frozen=True, slots=True)
class OperationHandler:
    """What ``service/operation`` starts here: a workflow type on a task queue."""

    workflow: str
    task_queue: str


@dataclass(frozen=True, slots=True)
class CallerEntry:
    """A callback URL prefix this deployment may call back, and the secret to sign with;
    on Kafka, the caller's ``kafka`` settings and ``topic_prefix`` instead."""

    url_prefix: str
    secret: str = field(repr=False)
    kafka: Mapping[str, str] = field(default_factory=dict, repr=False)
    topic_prefix: str = ""

    def matches(self, url: str) -> bool:
        """True when ``url`` has this entry's scheme, host and port, and its path
        starts with the entry's path (compared on parsed parts, not as text, so
        ``https://a.example.evil`` does not match ``https://a.example``). A Kafka entry
        matches ``kafka:<its topic_prefix>`` only."""
        if self.topic_prefix:
            return url == kafka_callback(self.topic_prefix)
        try:
            want, got = urlsplit(self.url_prefix), urlsplit(url)
            if (want.scheme, want.hostname, want.port) != (got.scheme, got.hostname, got.port):
                return False
        except ValueError:  # not a URL (say, a port out of range)
            return False
        if got.username or got.password or got.fragment:
            return False
        segments = got.path.lower().replace("%2e", ".").split("/")
        if ".." in segments or "." in segments:
            return False
        prefix = want.path.rstrip("/")
        return not prefix or got.path == prefix or got.path.startswith(prefix + "/")


def kafka_callback(topic_prefix: str) -> str:
    """The callback address of a deployment reached on Kafka: ``kafka:<prefix>``."""
    return f"kafka:{topic_prefix}"


@dataclass(frozen=True, slots=True)
class OperationsConfig:
    """Both halves of the configuration (empty: no operations)."""

    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    callback_url: str = ""
    handlers: Mapping[str, OperationHandler] = field(default_factory=dict)
    callers: tuple[CallerEntry, ...] = ()
    callback_topic_prefix: str = ""

    def callback_for(self, endpoint: Endpoint) -> str:
        """Where ``endpoint``'s handler calls back: this deployment's callback URL, or
        its commands topic (``kafka:<callback_topic_prefix>``) for a Kafka endpoint."""
        if endpoint.on_kafka:
            return kafka_callback(self.callback_topic_prefix)
        return self.callback_url

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint ``name``; KeyError when it is not configured."""
        return self.endpoints[name]

    def caller_for(self, callback_url: str) -> CallerEntry | None:
        """The first allow-list entry that ``callback_url`` matches, or None."""
        return next((c for c in self.callers if c.matches(callback_url)), None)

    def handler_for(self, service: str, operation: str) -> OperationHandler | None:
        """The workflow that ``service/operation`` starts, or None."""
        return self.handlers.get(f"{service}/{operation}")


def _http_url(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ConfigError(f"{where} must be an http(s) URL, not {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where} must be an http(s) URL, not {value!r}")
    return value


def _text(obj: Mapping[str, Any], key: str, where: str, *, secret: bool = False) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key} must be a non-empty string")
    if secret and len(value) < MIN_SECRET_CHARS:
        raise ConfigError(f"{where}.{key} must have at least {MIN_SECRET_CHARS} characters")
    return value


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be an object")
    return value


def _kafka(obj: Mapping[str, Any], where: str) -> dict[str, str]:
    settings = _object(obj.get("kafka"), f"{where}.kafka")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in settings.items()):
        raise ConfigError(f"{where}.kafka must map setting names to strings")
    _text(settings, "bootstrap.servers", f"{where}.kafka")
    return dict(settings)


def _endpoint(e: Mapping[str, Any], where: str) -> Endpoint:
    if "kafka" not in e:
        return Endpoint(
            _http_url(e.get("url"), f"{where}.url").rstrip("/"),
            _text(e, "service", where),
            _text(e, "token", where),
            _text(e, "secret", where, secret=True),
        )
    if "url" in e or "token" in e:
        raise ConfigError(f"{where}: a Kafka endpoint has no url or token")
    return Endpoint(
        "", _text(e, "service", where), "", _text(e, "secret", where, secret=True),
        kafka=_kafka(e, where), topic_prefix=_text(e, "topic_prefix", where),
        task_queue=_text(e, "task_queue", where),
    )


def _caller(c: Mapping[str, Any], where: str) -> CallerEntry:
    secret = _text(c, "secret", where, secret=True)
    if "kafka" not in c:
        return CallerEntry(_http_url(c.get("url_prefix"), f"{where}.url_prefix"), secret)
    if "url_prefix" in c:
        raise ConfigError(f"{where}: a Kafka caller has no url_prefix")
    return CallerEntry("", secret, kafka=_kafka(c, where),
                       topic_prefix=_text(c, "topic_prefix", where))


def parse_config(data: Any) -> OperationsConfig:
    """The configuration from decoded JSON; ConfigError names the first bad field."""
    top = _object(data, "the operations configuration")
    unknown = set(top) - {"callback_url", "callback_topic_prefix", "endpoints", "handlers",
                          "callers"}
    if unknown:
        raise ConfigError(f"unknown keys in the operations configuration: {sorted(unknown)}")
    endpoints = {}
    for name, raw in _object(top.get("endpoints", {}), "endpoints").items():
        where = f"endpoints.{name}"
        endpoints[name] = _endpoint(_object(raw, where), where)
    callback_url = top.get("callback_url", "")
    if callback_url:
        callback_url = _http_url(callback_url, "callback_url")
    if any(not e.on_kafka for e in endpoints.values()) and not callback_url:
        raise ConfigError("callback_url is needed when HTTP endpoints are configured")
    callback_prefix = ""
    if any(e.on_kafka for e in endpoints.values()):
        callback_prefix = _text(top, "callback_topic_prefix", "the operations configuration")
    handlers = {}
    for key, raw in _object(top.get("handlers", {}), "handlers").items():
        where = f"handlers.{key}"
        if key.count("/") != 1 or not all(key.split("/")):
            raise ConfigError(f"{where}: keys are 'service/operation'")
        h = _object(raw, where)
        handlers[key] = OperationHandler(_text(h, "workflow", where), _text(h, "task_queue", where))
    callers = []
    raw_callers = top.get("callers", [])
    if not isinstance(raw_callers, list):
        raise ConfigError("callers must be a list")
    for i, raw in enumerate(raw_callers):
        callers.append(_caller(_object(raw, f"callers[{i}]"), f"callers[{i}]"))
    return OperationsConfig(endpoints, callback_url, handlers, tuple(callers), callback_prefix)


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> OperationsConfig:
    """The configuration in ``path``, else in the file ``SAGA_OPERATIONS_CONFIG`` names;
    empty when neither is given."""
    env = os.environ if env is None else env
    if path is None:
        named = env.get(CONFIG_ENV, "")
        if not named:
            return OperationsConfig()
        path = Path(named)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the operations configuration {path}: {exc}") from None
    return parse_config(data)
