"""What the HTTP API talks to: one AsyncClient, the visibility store, a history reader pool.

The client and the store connect in the background and retry until they succeed
(Kafka, the orchestrator's topics or PostgreSQL may come up after the server), so
the server starts at once: ``/healthz`` answers 503 until the client is connected,
routes that need Kafka answer 503 with ``Retry-After``, and list/stats answer 503
while the store is unreachable or not configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from aiohttp import web

from orchestrator.client import AsyncClient
from orchestrator.config import DEFAULT_TOPIC_PREFIX
from orchestrator.converter import DataConverter
from orchestrator.http.auth import Tokens
from orchestrator.http.errors import ApiError
from orchestrator.log.topics import TopicLayout
from orchestrator.operations.config import OperationsConfig
from orchestrator.visibility import VisibilityStore

__all__ = [
    "SERVICES",
    "ApiOptions",
    "KafkaAccess",
    "Services",
    "VisibilityAccess",
    "database_down",
    "visibility_error",
]

log = logging.getLogger(__name__)

_RETRY_MAX_S: Final = 10.0


@dataclass(frozen=True)
class ApiOptions:
    """How the HTTP API reaches Kafka and PostgreSQL, and who may call it.

    ``tokens=None`` disables authentication (``saga http --insecure-no-auth``,
    loopback only); ``database_url=None`` disables list/search/stats.
    """

    kafka_config: Mapping[str, Any] = field(repr=False)
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    database_url: str | None = field(default=None, repr=False)
    tokens: Tokens | None = None
    converter: DataConverter = field(default_factory=DataConverter)
    visibility_table: str = "saga_runs"
    source: str = "/saga/http"
    operations: OperationsConfig = field(default_factory=OperationsConfig)
    """Operations this server handles and endpoints whose callbacks it takes
    (docs/operations-api.md)."""


async def _retry(
    what: str, attempt: Callable[[], Awaitable[None]], on_error: Callable[[str], None]
) -> None:
    """Run ``attempt`` until it succeeds, backing off up to 10 s between tries."""
    delay = 0.5
    while True:
        try:
            await attempt()
        except Exception as exc:  # noqa: BLE001 - any failure is retried; reported via on_error
            reason = f"{type(exc).__name__}: {exc}"
            on_error(reason)
            log.warning("%s not ready (%s); retrying in %.1f s", what, reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)
        else:
            return


class KafkaAccess:
    """The server's one :class:`AsyncClient`, connected in the background."""

    def __init__(self, options: ApiOptions) -> None:
        self._options = options
        self.client: AsyncClient | None = None
        self.layout: TopicLayout | None = None
        self.last_error: str | None = "connecting"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin connecting (retried until it works)."""
        self._task = asyncio.get_running_loop().create_task(
            _retry("Kafka client", self._connect, self._failed), name="saga-http-kafka"
        )

    def _failed(self, reason: str) -> None:
        self.last_error = reason

    async def _connect(self) -> None:
        o = self._options
        client = await AsyncClient.connect(
            dict(o.kafka_config),
            layout=TopicLayout(prefix=o.topic_prefix),
            converter=o.converter,
            source=o.source,
        )
        self.layout = TopicLayout(prefix=o.topic_prefix, shards=client.builder.shards)
        self.client, self.last_error = client, None
        log.info(
            "Kafka client connected (prefix %r, %d shards)", o.topic_prefix, self.layout.shards
        )

    def require(self) -> AsyncClient:
        """The connected client, or a 503."""
        if self.client is None:
            raise ApiError(
                503,
                "unavailable",
                f"not connected to Kafka yet ({self.last_error})",
                {"Retry-After": "2"},
            )
        return self.client

    async def close(self) -> None:
        """Stop connecting; close the client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.client is not None:
            await self.client.close()
            self.client = None


class VisibilityAccess:
    """The visibility store, opened in the background when a database is configured."""

    def __init__(self, options: ApiOptions) -> None:
        self._dsn = options.database_url or None
        self._table = options.visibility_table
        self.store: VisibilityStore | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        """``disabled`` (no database), ``ok`` or ``unavailable``."""
        if self._dsn is None:
            return "disabled"
        return "ok" if self.store is not None else "unavailable"

    def start(self) -> None:
        """Begin opening the store (retried until it works)."""
        if self._dsn is not None:
            self._task = asyncio.get_running_loop().create_task(
                _retry("visibility store", self._open, self._failed), name="saga-http-visibility"
            )

    def _failed(self, reason: str) -> None:
        self.last_error = reason

    async def _open(self) -> None:
        assert self._dsn is not None
        store = VisibilityStore(self._dsn, table=self._table)
        try:
            await store.open()
        except BaseException:
            await store.close()  # open() may fail after its pool was created
            raise
        self.store, self.last_error = store, None
        log.info("visibility store open (table %s)", self._table)

    def require(self) -> VisibilityStore:
        """The open store, or a 503 saying why not."""
        if self._dsn is None:
            raise ApiError(
                503,
                "visibility_disabled",
                "listing and stats need the visibility database: set DATABASE_URL "
                "or pass --database-url to `saga http`",
            )
        if self.store is None:
            raise ApiError(
                503,
                "visibility_unavailable",
                "the visibility database is not reachable yet (see the server log)",
                {"Retry-After": "5"},
            )
        return self.store

    async def close(self) -> None:
        """Stop opening; close the store."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.store is not None:
            await self.store.close()
            self.store = None


def database_down(exc: psycopg.Error) -> ApiError:
    """The 503 for a failed visibility query; the error is logged, never answered (its
    text may name the database's host and user)."""
    log.warning("visibility query failed: %s: %s", type(exc).__name__, exc)
    return ApiError(
        503,
        "visibility_unavailable",
        "the visibility database did not answer (see the server log)",
        {"Retry-After": "5"},
    )


def visibility_error(exc: psycopg.Error) -> ApiError:
    """The answer for a failed visibility query whose values came from the request: 400
    when PostgreSQL refused one of them (a ``DataError``: retrying cannot help), else
    :func:`database_down`."""
    if isinstance(exc, psycopg.DataError):
        log.info("visibility query refused a value: %s", exc)
        why = (str(exc).strip().splitlines() or ["no detail"])[0]
        return ApiError(
            400, "bad_request", f"the visibility database refused a value of the request: {why}"
        )
    return database_down(exc)


class Services:
    """Everything one server instance uses, started and closed with the application."""

    def __init__(self, options: ApiOptions) -> None:
        self.options = options
        self.kafka = KafkaAccess(options)
        self.visibility = VisibilityAccess(options)

    def start(self) -> None:
        """Start connecting to Kafka and PostgreSQL in the background."""
        self.kafka.start()
        self.visibility.start()

    async def close(self) -> None:
        """Close the client, the store and the reader pool."""
        await self.kafka.close()
        await self.visibility.close()


SERVICES: Final = web.AppKey("saga.services", Services)
"""The application key of the server's :class:`Services`."""
