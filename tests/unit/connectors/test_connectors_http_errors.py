"""Classification of HTTP outcomes: statuses, Retry-After, every httpx exception."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from orchestrator.connectors.http import (
    EXCEPTION_RULES,
    error_for_exception,
    error_for_response,
    parse_retry_after,
    redact,
)
from orchestrator.exceptions import ApplicationError


def _httpx_exception_classes() -> set[type[BaseException]]:
    """Every exception class httpx exports, and every subclass of those, recursively."""
    found: set[type[BaseException]] = set()
    todo = [
        obj
        for obj in vars(httpx).values()
        if inspect.isclass(obj) and issubclass(obj, BaseException)
    ]
    while todo:
        klass = todo.pop()
        if klass in found or not klass.__module__.startswith("httpx"):
            continue
        found.add(klass)
        todo.extend(klass.__subclasses__())
    return found


def test_every_httpx_exception_class_has_an_explicit_rule() -> None:
    classes = _httpx_exception_classes()
    assert len(classes) >= 25  # sanity: the walk found the hierarchy
    missing = sorted(k.__name__ for k in classes if k not in EXCEPTION_RULES)
    assert missing == [], f"httpx exceptions without a rule: {missing}"


def _instance(klass: type[BaseException]) -> Exception:
    request = httpx.Request("POST", "https://bank.test/pay?api_key=hunter22")
    if issubclass(klass, httpx.HTTPStatusError):
        response = httpx.Response(502, request=request)
        return klass("bad gateway", request=request, response=response)
    if issubclass(klass, httpx.RequestError):
        return klass("boom", request=request)
    if klass in (httpx.ResponseNotRead, httpx.RequestNotRead, httpx.StreamConsumed,
                 httpx.StreamClosed):
        return klass()  # type: ignore[return-value]
    return klass("boom")  # type: ignore[return-value]


@pytest.mark.parametrize("klass", sorted(_httpx_exception_classes(), key=lambda k: k.__name__))
def test_each_httpx_exception_maps_to_an_application_error(klass: type[BaseException]) -> None:
    exc = _instance(klass)
    err = error_for_exception(exc, request=httpx.Request("GET", "https://x.test/a?token=t0ps3cret"))
    assert isinstance(err, ApplicationError)
    assert err.type.startswith("Http")
    assert "t0ps3cret" not in err.message


@pytest.mark.parametrize(
    ("klass", "retryable"),
    [
        (httpx.ConnectTimeout, True),
        (httpx.ReadTimeout, True),
        (httpx.WriteTimeout, True),
        (httpx.PoolTimeout, True),
        (httpx.ConnectError, True),
        (httpx.ReadError, True),
        (httpx.RemoteProtocolError, True),
        (httpx.ProxyError, True),
        (httpx.LocalProtocolError, False),
        (httpx.UnsupportedProtocol, False),
        (httpx.TooManyRedirects, False),
        (httpx.DecodingError, False),
        (httpx.InvalidURL, False),
        (httpx.StreamConsumed, False),
    ],
)
def test_exception_retryability(klass: type[BaseException], retryable: bool) -> None:
    assert error_for_exception(_instance(klass)).retryable is retryable


def test_http_status_error_is_classified_by_its_status() -> None:
    err = error_for_exception(_instance(httpx.HTTPStatusError))
    assert err.type == "HttpServerError"
    assert err.retryable


def test_unknown_subclass_inherits_its_parents_rule() -> None:
    class FutureTimeout(httpx.ReadTimeout):
        pass

    err = error_for_exception(FutureTimeout("later"))
    assert err.type == "HttpTimeout"
    assert err.retryable


def _response(status: int, body: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "https://user:pw1234@bank.test/withdraw?sig=abcdef")
    return httpx.Response(status, text=body, headers=headers, request=request)


@pytest.mark.parametrize("status", [200, 201, 204, 301, 304])
def test_success_and_redirect_statuses_are_not_errors(status: int) -> None:
    assert error_for_response(_response(status)) is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, "HttpServerError"),
        (502, "HttpServerError"),
        (503, "HttpServiceUnavailable"),
        (504, "HttpServerError"),
        (599, "HttpServerError"),
        (429, "HttpTooManyRequests"),
        (408, "HttpClientError"),
    ],
)
def test_retryable_statuses(status: int, kind: str) -> None:
    err = error_for_response(_response(status))
    assert err is not None
    assert err.retryable
    assert err.type == kind
    assert err.next_retry_delay is None


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 409, 410, 422, 451])
def test_other_4xx_are_terminal_with_status_and_excerpt(status: int) -> None:
    err = error_for_response(_response(status, '{"error": "nope"}'))
    assert err is not None
    assert not err.retryable
    assert err.type == "HttpClientError"
    assert f"-> {status} " in err.message
    assert '{"error": "nope"}' in err.message
    assert err.details[0] == {
        "status": status,
        "method": "POST",
        "url": "https://bank.test/withdraw",
    }


def test_body_excerpt_is_bounded() -> None:
    err = error_for_response(_response(400, "x" * 10_000), body_limit=50)
    assert err is not None
    assert len(err.message) < 200
    assert err.message.endswith("x...")


def test_url_query_and_password_never_appear() -> None:
    err = error_for_response(_response(400))
    assert err is not None
    assert "pw1234" not in err.message
    assert "abcdef" not in err.message


def test_secret_values_echoed_by_the_server_are_redacted() -> None:
    body = "bad request; you sent Authorization: Bearer sk_live_abcdef123456"
    err = error_for_response(_response(400, body), secrets=["Bearer sk_live_abcdef123456"])
    assert err is not None
    assert "sk_live_abcdef123456" not in err.message
    assert "[REDACTED]" in err.message


def test_redact_hides_bare_credentials_and_url_passwords() -> None:
    text = "token sk_live_abcdef123456 at postgresql://app:s3cr3t@db/x"
    out = redact(text, ["Bearer sk_live_abcdef123456"])
    assert "sk_live_abcdef123456" not in out
    assert "s3cr3t" not in out


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_becomes_next_retry_delay(status: int) -> None:
    err = error_for_response(_response(status, headers={"Retry-After": "120"}))
    assert err is not None
    assert err.next_retry_delay == timedelta(seconds=120)


def test_retry_after_http_date_becomes_next_retry_delay() -> None:
    when = datetime.now(UTC) + timedelta(hours=2)
    err = error_for_response(
        _response(503, headers={"Retry-After": format_datetime(when, usegmt=True)})
    )
    assert err is not None
    assert err.next_retry_delay is not None
    assert timedelta(hours=1, minutes=59) < err.next_retry_delay <= timedelta(hours=2)


def test_retry_after_is_capped_when_asked() -> None:
    err = error_for_response(
        _response(429, headers={"Retry-After": "86400"}), max_retry_after=timedelta(minutes=5)
    )
    assert err is not None
    assert err.next_retry_delay == timedelta(minutes=5)


def test_retry_after_is_ignored_on_other_statuses() -> None:
    err = error_for_response(_response(500, headers={"Retry-After": "9"}))
    assert err is not None
    assert err.next_retry_delay is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", timedelta(0)),
        ("  30 ", timedelta(seconds=30)),
        ("Wed, 21 Oct 2015 07:28:00 GMT", timedelta(0)),  # in the past: now
        ("Sun, 01 Jan 2090 00:00:10 GMT", timedelta(seconds=10)),
        ("Sunday, 01-Jan-90 00:00:10 GMT", timedelta(0)),  # RFC 850: year 1990, past
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: timedelta | None) -> None:
    now = datetime(2090, 1, 1, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected
