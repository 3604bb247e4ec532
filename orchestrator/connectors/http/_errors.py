"""HTTP outcomes mapped into the orchestrator's error taxonomy.

Every failure leaves this module as an :class:`ApplicationError` whose ``type``
names the kind of failure (retry policies can list types in
``non_retryable_errors``) and whose ``non_retryable`` flag says whether the engine
may try again. The exception table covers every httpx exception class by name, so
a new httpx release with a new class fails ``tests/unit/connectors`` instead of
slipping through as an unclassified error.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import httpx

from orchestrator.exceptions import ApplicationError

__all__ = [
    "DEFAULT_RETRYABLE_STATUSES",
    "EXCEPTION_RULES",
    "ErrorRule",
    "error_for_exception",
    "error_for_response",
    "parse_retry_after",
    "query_secrets",
    "redact",
    "request_build_error",
]

DEFAULT_RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 429, *range(500, 600)})
"""Statuses retried by default: every 5xx, 429 Too Many Requests, 408 Request Timeout."""

_RETRY_AFTER_STATUSES = frozenset({429, 503})
REDACTED = "[REDACTED]"
_SECRET_HEADER = re.compile(r"authorization|cookie|api[-_]?key|token|secret|password", re.I)
#: query parameter names whose values are treated as credentials
_SECRET_PARAM = re.compile(
    r"key|token|secret|password|passwd|pwd|sig|auth|credential|session", re.I
)


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """How one httpx exception class is reported: error ``type`` and retryability."""

    type: str
    retryable: bool
    why: str


_TIMEOUT = ErrorRule("HttpTimeout", True, "no answer in time; outcome unknown, retry same key")
_CONNECTION = ErrorRule("HttpConnectionError", True, "network failure; retry same key")
_TERMINAL = ErrorRule("HttpRequestError", False, "the request itself is wrong; retrying repeats it")

EXCEPTION_RULES: Mapping[type[Exception], ErrorRule] = {
    # RequestError > TransportError > TimeoutException
    httpx.TimeoutException: _TIMEOUT,
    httpx.ConnectTimeout: _TIMEOUT,
    httpx.ReadTimeout: _TIMEOUT,
    httpx.WriteTimeout: _TIMEOUT,
    httpx.PoolTimeout: _TIMEOUT,
    # RequestError > TransportError > NetworkError
    httpx.NetworkError: _CONNECTION,
    httpx.ConnectError: _CONNECTION,
    httpx.ReadError: _CONNECTION,
    httpx.WriteError: _CONNECTION,
    httpx.CloseError: _CONNECTION,
    httpx.ProxyError: _CONNECTION,
    # RequestError > TransportError > ProtocolError
    httpx.RemoteProtocolError: ErrorRule(
        "HttpProtocolError", True, "server broke HTTP (often a dropped connection)"
    ),
    httpx.ProtocolError: ErrorRule("HttpProtocolError", True, "protocol failure on the wire"),
    httpx.LocalProtocolError: ErrorRule("HttpProtocolError", False, "we built an invalid request"),
    httpx.UnsupportedProtocol: _TERMINAL,
    httpx.TransportError: _CONNECTION,
    httpx.RequestError: _TERMINAL,
    httpx.DecodingError: ErrorRule(
        "HttpDecodingError", False, "the answer arrived but cannot be decoded; a retry "
        "with the same key gets the same answer"
    ),
    httpx.TooManyRedirects: _TERMINAL,
    httpx.HTTPError: _TERMINAL,
    # HTTPStatusError is classified by its response's status, see error_for_response.
    httpx.HTTPStatusError: ErrorRule("HttpStatusError", False, "classified by status"),
    httpx.InvalidURL: _TERMINAL,
    httpx.CookieConflict: _TERMINAL,
    httpx.StreamError: ErrorRule("HttpStreamError", False, "programming error with a stream"),
    httpx.StreamConsumed: ErrorRule("HttpStreamError", False, "programming error with a stream"),
    httpx.StreamClosed: ErrorRule("HttpStreamError", False, "programming error with a stream"),
    httpx.ResponseNotRead: ErrorRule("HttpStreamError", False, "programming error with a stream"),
    httpx.RequestNotRead: ErrorRule("HttpStreamError", False, "programming error with a stream"),
}


def _rule_for(exc: BaseException) -> ErrorRule:
    # Exact class first; an unknown subclass inherits its nearest mapped ancestor's rule.
    for klass in type(exc).__mro__:
        rule = EXCEPTION_RULES.get(klass)
        if rule is not None:
            return rule
    return _TERMINAL


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret value and URL password replaced by ``[REDACTED]``."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
        # Also hide the credential part of "Bearer xyz" / "Basic xyz" on its own.
        scheme, _, credential = secret.partition(" ")
        if scheme and len(credential) >= 4:
            text = text.replace(credential, REDACTED)
    return re.sub(r"(://[^/\s:@]+:)[^/\s@]+@", rf"\g<1>{REDACTED}@", text)


def secret_header_values(headers: httpx.Headers | Mapping[str, str]) -> list[str]:
    """Values of headers that carry credentials (Authorization, Cookie, *token*, ...)."""
    return [
        v for k, v in headers.items()
        if _SECRET_HEADER.search(k) and k.lower() != "idempotency-key"
    ]


def query_secrets(url: httpx.URL) -> list[str]:
    """The raw query string of ``url``, and the values (raw and decoded) of its query
    parameters whose names say they carry credentials (``api_key``, ``token``,
    ``sig``, ...): a server that echoes the URL in its body must not leak them into a
    message. Other values (ids, page numbers) stay: error bodies quote them usefully.
    """
    raw = url.query.decode("ascii", "replace")
    if not raw:
        return []
    found = {raw}
    for pair in raw.split("&"):
        name, _, value = pair.partition("=")
        if _SECRET_PARAM.search(name):
            found.add(value)
    found.update(value for name, value in url.params.multi_items() if _SECRET_PARAM.search(name))
    return sorted(found)


def _safe_url(url: httpx.URL) -> str:
    # Query strings carry API keys often enough that they never appear in errors.
    return str(url.copy_with(query=None, fragment=None, password=None))


def _safe_raw_url(url: str) -> str:
    # A URL httpx could not parse: cut the query and fragment off by hand.
    return redact(re.split(r"[?#]", url, maxsplit=1)[0])


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> timedelta | None:
    """The delay a ``Retry-After`` header asks for (delta-seconds or HTTP-date); None if bad.

    A date in the past means "now" (zero delay). Delta-seconds must be ASCII digits;
    a number too large for a ``timedelta`` is ignored like any unparseable value.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        try:
            return timedelta(seconds=int(value))
        except OverflowError:  # beyond timedelta's range (999,999,999 days): nonsense
            return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # RFC 850 / asctime forms parse naive; HTTP dates are GMT.
        when = when.replace(tzinfo=UTC)
    delta = when - (now or datetime.now(UTC))
    return max(delta, timedelta(0))


def _excerpt(response: httpx.Response, limit: int) -> str:
    try:
        text = response.text
    except (httpx.StreamError, UnicodeDecodeError, LookupError):
        return "<body not read>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def error_for_response(
    response: httpx.Response,
    *,
    retryable_statuses: frozenset[int] = DEFAULT_RETRYABLE_STATUSES,
    body_limit: int = 300,
    secrets: Iterable[str] = (),
    max_retry_after: timedelta | None = None,
) -> ApplicationError | None:
    """None for a 1xx-3xx answer, else the error that a failed status stands for.

    The message names method, URL (without query or password), status and a bounded,
    redacted body excerpt; ``details[0]`` is ``{"status", "method", "url"}``. Besides
    ``secrets``, the request's query values are redacted (see :func:`query_secrets`).
    """
    status = response.status_code
    if status < 400:
        return None
    request = response.request
    secrets = [*secrets, *query_secrets(request.url)]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = response.reason_phrase or ""
    url = _safe_url(request.url)
    message = redact(
        f"{request.method} {url} -> {status} {phrase}: {_excerpt(response, body_limit)}",
        secrets,
    )
    details = {"status": status, "method": request.method, "url": url}
    if status not in retryable_statuses:
        kind = "HttpClientError" if status < 500 else "HttpServerError"
        return ApplicationError(message, details, type=kind, non_retryable=True)
    delay = None
    if status in _RETRY_AFTER_STATUSES:
        delay = parse_retry_after(response.headers.get("retry-after"))
        if delay is not None and max_retry_after is not None:
            delay = min(delay, max_retry_after)
    kind = {429: "HttpTooManyRequests", 503: "HttpServiceUnavailable"}.get(
        status, "HttpServerError" if status >= 500 else "HttpClientError"
    )
    return ApplicationError(message, details, type=kind, next_retry_delay=delay)


def error_for_exception(
    exc: Exception,
    *,
    request: httpx.Request | None = None,
    secrets: Iterable[str] = (),
    retryable_statuses: frozenset[int] = DEFAULT_RETRYABLE_STATUSES,
    body_limit: int = 300,
) -> ApplicationError:
    """The error an httpx exception stands for (see :data:`EXCEPTION_RULES`)."""
    if isinstance(exc, httpx.HTTPStatusError):
        err = error_for_response(
            exc.response,
            retryable_statuses=retryable_statuses,
            body_limit=body_limit,
            secrets=secrets,
        )
        if err is not None:
            return err
    rule = _rule_for(exc)
    where = ""
    if request is not None:
        where = f"{request.method} {_safe_url(request.url)}: "
        secrets = [*secrets, *query_secrets(request.url)]
    message = redact(f"{where}{type(exc).__name__}: {str(exc) or rule.why}", secrets)
    return ApplicationError(
        message,
        {"exception": type(exc).__name__},
        type=rule.type,
        non_retryable=not rule.retryable,
    )


def _non_ascii_header(headers: Mapping[str, str]) -> str | None:
    for name, value in headers.items():
        if not (str(name).isascii() and str(value).isascii()):
            return name
    return None


def request_build_error(
    exc: Exception,
    *,
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> ApplicationError:
    """The terminal error for a request that could not even be built.

    ``exc`` is what httpx raised while building it: ``InvalidURL``, a ``TypeError`` or
    ``ValueError`` from encoding the body, a ``UnicodeEncodeError`` from a non-ASCII
    header. No retry can fix any of them. ``headers`` are the call's own headers (to
    name the one at fault, never its value); ``secrets`` are redacted.
    """
    where = f"{method} {_safe_raw_url(url)}: "
    if isinstance(exc, httpx.InvalidURL):
        what = f"invalid URL: {exc}"
    elif isinstance(exc, UnicodeEncodeError):
        name = _non_ascii_header(headers or {})
        header = f"header {name!r}" if name is not None else "a header"
        what = (
            f"{header} is not ASCII; HTTP header names and values must be ASCII "
            "(percent-encode the value or send it in the body)"
        )
    else:
        what = f"cannot encode the request: {type(exc).__name__}: {exc}"
    return ApplicationError(
        redact(where + what, secrets)[:1000],
        {"exception": type(exc).__name__},
        type=_TERMINAL.type,
        non_retryable=True,
    )
