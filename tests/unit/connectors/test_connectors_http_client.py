"""HttpConnector.request end to end over httpx.MockTransport: build errors, leaks."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.connectors.http import HttpConnector, parse_retry_after
from orchestrator.exceptions import ApplicationError


def _connector(handler: httpx.MockTransport | None = None) -> HttpConnector:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"ok": True})

    connector = HttpConnector(
        "https://bank.example",
        headers={"Authorization": "Bearer sk_live_abcdef123456"},
        transport=handler or httpx.MockTransport(record),
    )
    connector.sent = sent  # type: ignore[attr-defined]
    return connector


@pytest.mark.parametrize(
    ("call", "says"),
    [
        ({"url": "http://host:abc/pay?api_key=TOPSECRET"}, "invalid URL: Invalid port"),
        ({"url": "/pay", "json": {"amount": object()}}, "not JSON serializable"),
        ({"url": "/pay", "json": {"amount": float("nan")}}, "not JSON compliant"),
        ({"url": "/pay", "headers": {"X-Note": "café"}}, "header 'X-Note' is not ASCII"),
    ],
)
async def test_a_request_that_cannot_be_built_is_terminal_and_says_why(
    call: dict[str, object], says: str
) -> None:
    async with _connector() as bank:
        with pytest.raises(ApplicationError) as info:
            await bank.request("POST", **call)  # type: ignore[arg-type]
        assert bank.sent == []  # type: ignore[attr-defined]
    err = info.value
    assert err.non_retryable
    assert err.type == "HttpRequestError"
    assert says in err.message
    assert err.message.startswith("POST ")
    assert "TOPSECRET" not in err.message
    assert "sk_live_abcdef123456" not in err.message


async def test_a_secret_header_that_is_not_ascii_is_named_but_not_shown() -> None:
    async with _connector() as bank:
        with pytest.raises(ApplicationError) as info:
            await bank.get("/x", headers={"X-Api-Key": "sécret-value-42"})
    assert info.value.non_retryable
    assert "X-Api-Key" in info.value.message
    assert "cret-value-42" not in info.value.message


async def test_query_values_echoed_by_the_server_are_redacted() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "bad", "url": str(request.url)})

    async with _connector(httpx.MockTransport(echo)) as bank:
        with pytest.raises(ApplicationError) as info:
            await bank.get("/x?api_key=TOPSECRET", params={"sig": "a b+c/d==", "page": "2"})
        response = await bank.get("/x?api_key=TOPSECRET", raise_for_status=False)
        later = bank.error_for(response)
    message = info.value.message
    assert "/x -> 400 Bad Request" in message
    assert "[REDACTED]" in message
    for leak in ("TOPSECRET", "a b+c/d==", "a+b%2Bc%2Fd%3D%3D", "api_key="):
        assert leak not in message, leak
    assert later is not None
    assert "TOPSECRET" not in later.message


@pytest.mark.parametrize("value", ["99999999999999999999", "9" * 400, "٣", "²", "1٣"])
def test_retry_after_out_of_range_or_not_ascii_is_ignored(value: str) -> None:
    assert parse_retry_after(value) is None


async def test_an_absurd_retry_after_falls_back_to_the_policy_backoff() -> None:
    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "99999999999999999999"})

    async with _connector(httpx.MockTransport(busy)) as bank:
        with pytest.raises(ApplicationError) as info:
            await bank.get("/x")
    assert info.value.type == "HttpTooManyRequests"
    assert not info.value.non_retryable
    assert info.value.next_retry_delay is None

