"""The HTTP API: start and steer workflows, read their state, list and search them.

``saga http`` serves it (see docs/http-api.md); :func:`build_app` builds the aiohttp
application for embedding or tests. It uses the public client
(:class:`~orchestrator.client.AsyncClient`) and the visibility store, never the
engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.lazy import lazy_attributes

if TYPE_CHECKING:
    from orchestrator.http.app import build_app
    from orchestrator.http.auth import Role, Tokens, load_tokens
    from orchestrator.http.services import ApiOptions

__all__ = ["ApiOptions", "Role", "Tokens", "build_app", "load_tokens"]

# imported on first use: `saga worker` loads this package's CLI, not its servers
_MODULES = {
    "build_app": "orchestrator.http.app",
    "Role": "orchestrator.http.auth",
    "Tokens": "orchestrator.http.auth",
    "load_tokens": "orchestrator.http.auth",
    "ApiOptions": "orchestrator.http.services",
}


__getattr__ = lazy_attributes(__name__, _MODULES)
