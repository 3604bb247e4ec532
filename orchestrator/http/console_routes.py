"""The web console's files: one HTML page, JavaScript modules and a style sheet.

They are packaged with the project (``orchestrator/http/console/``), so nothing is
fetched from elsewhere at run time. They hold no data: the page asks the user for a
token and calls the API with it, so these routes are the only ones served without
authentication (see :mod:`orchestrator.http.auth`). A strict Content-Security-Policy
lets the page load only its own files and talk only to this server.
"""

from __future__ import annotations

import importlib.resources
import re
from typing import Final

from aiohttp import web

__all__ = ["CONSOLE_PREFIX", "is_console_path", "routes"]

CONSOLE_PREFIX: Final = "/console/"
_FILE: Final = re.compile(r"^[a-z][a-z0-9_-]*\.(html|js|css|svg)$")
_TYPES: Final = {
    "html": "text/html",
    "js": "text/javascript",
    "css": "text/css",
    "svg": "image/svg+xml",
}
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_console_path(path: str) -> bool:
    """True for the console's page and files (and ``/``, which redirects to it)."""
    return path in ("/", "/console") or path.startswith(CONSOLE_PREFIX)


def _read(name: str) -> bytes | None:
    resource = importlib.resources.files("orchestrator.http") / "console" / name
    try:
        return resource.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None


async def asset(request: web.Request) -> web.Response:
    """``GET /console/{name}``: one of the console's files (``/console/`` is the page)."""
    name = request.match_info.get("name") or "index.html"
    match = _FILE.match(name)
    body = _read(name) if match else None
    if match is None or body is None:
        raise web.HTTPNotFound(text=f"no console file {name!r}")
    return web.Response(body=body, content_type=_TYPES[match.group(1)], headers=_HEADERS)


async def to_console(request: web.Request) -> web.Response:
    """``GET /`` and ``GET /console``: redirect to the console's page."""
    raise web.HTTPFound(CONSOLE_PREFIX)


def routes() -> list[web.RouteDef]:
    """The console's routes."""
    return [
        web.get("/", to_console, allow_head=False),
        web.get("/console", to_console, allow_head=False),
        web.get(CONSOLE_PREFIX, asset, allow_head=False),
        web.get(CONSOLE_PREFIX + "{name}", asset, allow_head=False),
    ]
