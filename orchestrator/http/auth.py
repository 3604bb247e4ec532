"""Bearer-token authentication for the HTTP API.

Admin tokens come from ``SAGA_HTTP_TOKENS`` (comma-separated) and/or a token file
(one per line; blank lines and ``#`` comments ignored); read-only tokens from
``SAGA_HTTP_READ_TOKENS`` and/or a read-token file. Only SHA-256 digests of the
tokens are kept. A presented token is hashed and compared with every digest by
:func:`hmac.compare_digest`, so the time taken says nothing about how close a
guess was. Tokens never reach a log line: refusals log the method, path, peer and
the reason ("no bearer token", "unknown token").
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from orchestrator.http.console_routes import is_console_path
from orchestrator.http.errors import ApiError
from orchestrator.http.validation import check_query

__all__ = [
    "MIN_TOKEN_CHARS",
    "ROLE",
    "Role",
    "TokenError",
    "Tokens",
    "auth_middleware",
    "is_loopback",
    "load_tokens",
    "routes",
    "whoami",
]

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS: Final = 16
TOKENS_ENV: Final = "SAGA_HTTP_TOKENS"
READ_TOKENS_ENV: Final = "SAGA_HTTP_READ_TOKENS"
_OPEN_PATHS: Final = frozenset({"/healthz"})
# authenticated by their HMAC signature instead (orchestrator/http/operations.py)
_SIGNED_PATHS: Final = frozenset({"/v1/operation-callbacks"})
_CHALLENGE: Final = 'Bearer realm="saga"'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Role(enum.Enum):
    """What a token may do: READ (GET routes and queries) or ADMIN (everything)."""

    READ = "read"
    ADMIN = "admin"


ROLE: Final = web.RequestKey("saga.role", Role)
"""The role of the request's token, set by the middleware (ADMIN when no token is
configured: then every route is open)."""


class TokenError(ValueError):
    """A configured token is unusable (too short, contains whitespace)."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _check(token: str, origin: str) -> str:
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenError(
            f"a token from {origin} is shorter than {MIN_TOKEN_CHARS} characters; "
            "use a random one, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    if any(c.isspace() for c in token) or not token.isprintable():
        raise TokenError(f"a token from {origin} contains whitespace or control characters")
    return token


@dataclass(frozen=True)
class Tokens:
    """Digests of the admin and read-only tokens."""

    admin: tuple[bytes, ...]
    read: tuple[bytes, ...] = ()

    @classmethod
    def of(cls, admin: Iterable[str], read: Iterable[str] = ()) -> Tokens:
        """Tokens from plain values (checked: at least 16 characters, no whitespace)."""
        return cls(
            tuple(_digest(_check(t, "the admin tokens")) for t in admin),
            tuple(_digest(_check(t, "the read tokens")) for t in read),
        )

    def __bool__(self) -> bool:
        return bool(self.admin or self.read)

    def __repr__(self) -> str:
        return f"Tokens(admin={len(self.admin)}, read={len(self.read)})"

    def role_of(self, presented: str) -> Role | None:
        """The role of ``presented``, or None; compares against every digest."""
        digest = _digest(presented)
        admin = read = False
        for known in self.admin:
            admin |= hmac.compare_digest(digest, known)
        for known in self.read:
            read |= hmac.compare_digest(digest, known)
        return Role.ADMIN if admin else Role.READ if read else None


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _read_file(path: Path) -> list[str]:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("token file %s is readable by group or others; chmod 600 it", path)
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def load_tokens(
    env: Mapping[str, str] | None = None,
    token_file: Path | None = None,
    read_token_file: Path | None = None,
) -> Tokens:
    """Tokens from the environment (``SAGA_HTTP_TOKENS``, ``SAGA_HTTP_READ_TOKENS``)
    and the given files; empty when none is configured."""
    env = os.environ if env is None else env
    admin = _split(env.get(TOKENS_ENV, ""))
    read = _split(env.get(READ_TOKENS_ENV, ""))
    if token_file is not None:
        admin += _read_file(token_file)
    if read_token_file is not None:
        read += _read_file(read_token_file)
    return Tokens.of(admin, read)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _needed(request: web.Request) -> Role:
    if request.method in ("GET", "HEAD"):
        return Role.READ
    # decide by the matched route, never by the path text: a workflow id may hold
    # "/queries/" once its %2F are decoded
    resource = request.match_info.route.resource
    if resource is not None and resource.canonical.endswith("/queries/{name}"):
        return Role.READ  # queries change nothing
    return Role.ADMIN


def _refuse(request: web.Request, reason: str, challenge: str) -> ApiError:
    log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote, reason)
    return ApiError(401, "unauthorized", reason, {"WWW-Authenticate": challenge})


def _open(request: web.Request) -> bool:
    """/healthz, and GETs of the console's files: they hold no data (the page asks the
    user for a token, then calls the authenticated API). Also POSTs of operation
    callbacks, which their route authenticates by signature."""
    if request.path in _OPEN_PATHS:
        return True
    if request.method == "POST" and request.path in _SIGNED_PATHS:
        return True
    return request.method == "GET" and is_console_path(request.path)


def auth_middleware(tokens: Tokens | None) -> Middleware:
    """Require a bearer token on every path but /healthz and the console's files
    (``None``: no authentication)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if tokens is None or _open(request):
            request[ROLE] = Role.ADMIN
            return await handler(request)
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _refuse(request, "no bearer token", _CHALLENGE)
        role = tokens.role_of(value.strip())
        if role is None:
            raise _refuse(request, "unknown token", f'{_CHALLENGE}, error="invalid_token"')
        if role is Role.READ and _needed(request) is Role.ADMIN:
            raise ApiError(403, "forbidden", "this token is read-only")
        request[ROLE] = role
        return await handler(request)

    return middleware


async def whoami(request: web.Request) -> web.Response:
    """``GET /v1/whoami``: what the presented token may do, ``{"role": "admin"}`` or
    ``{"role": "read"}``, so a client (the console) offers only what it may do. It
    says nothing about the token itself."""
    check_query(request, ())
    return web.json_response({"role": request.get(ROLE, Role.ADMIN).value})


def routes() -> list[web.RouteDef]:
    """The route that tells a caller its role."""
    return [web.get("/v1/whoami", whoami, allow_head=False)]
