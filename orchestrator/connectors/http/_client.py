"""An httpx-based helper for activities that call HTTP APIs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from types import TracebackType
from typing import Any

import httpx

from orchestrator import activity
from orchestrator.connectors.http._errors import (
    DEFAULT_RETRYABLE_STATUSES,
    error_for_exception,
    error_for_response,
    request_build_error,
    secret_header_values,
)
from orchestrator.exceptions import ApplicationError

__all__ = ["IDEMPOTENCY_HEADER", "HttpConnector", "Timeout"]

IDEMPOTENCY_HEADER = "Idempotency-Key"

Timeout = float | httpx.Timeout
"""Seconds for every phase, or an ``httpx.Timeout`` for connect/read/write/pool apart."""


class HttpConnector:
    """Calls an HTTP API from activity code, with idempotency keys and classified errors.

    Each request carries ``Idempotency-Key``: the ``idempotency_key`` argument, else the
    running activity's key (stable across attempts). Failures are raised as
    :class:`~orchestrator.exceptions.ApplicationError`: retryable for 5xx, 408, 429,
    timeouts and network errors (429/503 ``Retry-After`` becomes ``next_retry_delay``),
    terminal for other 4xx and for requests that cannot succeed or cannot even be
    built (bad URL, unencodable body, non-ASCII header). Credentials in headers and
    query values never appear in error messages.

    Use one connector per worker process (it owns a connection pool)::

        bank = HttpConnector("https://bank.example", timeout=5.0,
                             headers={"Authorization": f"Bearer {token}"})

        @activity.defn(name="withdraw")
        async def withdraw(req: Withdrawal) -> dict[str, Any]:
            r = await bank.post(f"/accounts/{req.account}/withdraw", json={...})
            return r.json()
    """

    def __init__(
        self,
        base_url: str = "",
        *,
        timeout: Timeout = 10.0,
        headers: Mapping[str, str] | None = None,
        retryable_statuses: frozenset[int] = DEFAULT_RETRYABLE_STATUSES,
        body_limit: int = 300,
        max_retry_after: timedelta | None = None,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            headers=dict(headers or {}),
            transport=transport,
        )
        self._retryable = retryable_statuses
        self._body_limit = body_limit
        self._max_retry_after = max_retry_after

    @property
    def client(self) -> httpx.AsyncClient:
        """The underlying client (for calls that need none of this helper's handling)."""
        return self._client

    async def aclose(self) -> None:
        """Close the connection pool (only if this connector created the client)."""
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> HttpConnector:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | str | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        timeout: Timeout | None = None,  # noqa: ASYNC109 (httpx's own per-phase timeouts)
        raise_for_status: bool = True,
    ) -> httpx.Response:
        """Send one request; return the response or raise a classified ApplicationError.

        ``timeout`` overrides the connector's for this call. With
        ``raise_for_status=False`` any status is returned (see :meth:`error_for`).
        """
        key = idempotency_key
        if key is None and activity.in_activity():
            key = activity.info().idempotency_key
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = timeout
        secrets = secret_header_values(self._client.headers)
        try:
            secrets += secret_header_values(headers or {})
            merged = httpx.Headers(self._client.headers)
            merged.update(headers or {})
            if key is not None:
                merged[IDEMPOTENCY_HEADER] = key
            request = self._client.build_request(
                method, url, json=json, content=content, params=params, headers=merged, **extra
            )
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            # A request that cannot be built never will be: terminal, not retried.
            raise request_build_error(
                exc,
                method=method,
                url=str(url),
                headers=headers,
                secrets=secrets,
            ) from None
        try:
            response = await self._client.send(request)
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, httpx.CookieConflict) as exc:
            # Our error replaces httpx's, whose text may quote the full URL.
            raise error_for_exception(
                exc,
                request=request,
                secrets=secrets,
                retryable_statuses=self._retryable,
                body_limit=self._body_limit,
            ) from None
        if raise_for_status:
            err = self.error_for(response, secrets=secrets)
            if err is not None:
                raise err
        return response

    def error_for(
        self, response: httpx.Response, *, secrets: list[str] | None = None
    ) -> ApplicationError | None:
        """The classified error a response stands for, or None if it succeeded."""
        if secrets is None:
            secrets = secret_header_values(response.request.headers)
        return error_for_response(
            response,
            retryable_statuses=self._retryable,
            body_limit=self._body_limit,
            secrets=secrets,
            max_retry_after=self._max_retry_after,
        )

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """``request("GET", url, ...)``."""
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> httpx.Response:
        """``request("POST", url, ...)``."""
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> httpx.Response:
        """``request("PUT", url, ...)``."""
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        """``request("PATCH", url, ...)``."""
        return await self.request("PATCH", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        """``request("DELETE", url, ...)``."""
        return await self.request("DELETE", url, **kwargs)
