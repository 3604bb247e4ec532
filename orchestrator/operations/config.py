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
    with."""

    url: str
    service: str
    token: str = field(repr=False)
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class OperationHandler:
    """What ``service/operation`` starts here: a workflow type on a task queue."""

    workflow: str
    task_queue: str


@dataclass(frozen=True, slots=True)
class CallerEntry:
    """A callback URL prefix this deployment may call back, and the secret to sign with."""

    url_prefix: str
    secret: str = field(repr=False)

    def matches(self, url: str) -> bool:
        """True when ``url`` has this entry's scheme, host and port, and its path
        starts with the entry's path (compared on parsed parts, not as text, so
        ``https://a.example.evil`` does not match ``https://a.example``)."""
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


@dataclass(frozen=True, slots=True)
class OperationsConfig:
    """Both halves of the configuration (empty: no operations)."""

    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    callback_url: str = ""
    handlers: Mapping[str, OperationHandler] = field(default_factory=dict)
    callers: tuple[CallerEntry, ...] = ()

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


def parse_config(data: Any) -> OperationsConfig:
    """The configuration from decoded JSON; ConfigError names the first bad field."""
    top = _object(data, "the operations configuration")
    unknown = set(top) - {"callback_url", "endpoints", "handlers", "callers"}
    if unknown:
        raise ConfigError(f"unknown keys in the operations configuration: {sorted(unknown)}")
    endpoints = {}
    for name, raw in _object(top.get("endpoints", {}), "endpoints").items():
        where = f"endpoints.{name}"
        e = _object(raw, where)
        endpoints[name] = Endpoint(
            _http_url(e.get("url"), f"{where}.url").rstrip("/"),
            _text(e, "service", where),
            _text(e, "token", where),
            _text(e, "secret", where, secret=True),
        )
    callback_url = top.get("callback_url", "")
    if callback_url:
        callback_url = _http_url(callback_url, "callback_url")
    if endpoints and not callback_url:
        raise ConfigError("callback_url is needed when endpoints are configured")
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
        c = _object(raw, f"callers[{i}]")
        callers.append(
            CallerEntry(
                _http_url(c.get("url_prefix"), f"callers[{i}].url_prefix"),
                _text(c, "secret", f"callers[{i}]", secret=True),
            )
        )
    return OperationsConfig(endpoints, callback_url, handlers, tuple(callers))


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
