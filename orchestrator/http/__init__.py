"""The HTTP API: start and steer workflows, read their state, list and search them.

``saga http`` serves it (see docs/http-api.md); :func:`build_app` builds the aiohttp
application for embedding or tests. It uses the public client
(:class:`~orchestrator.client.AsyncClient`), the history reader and the visibility
store, never the engine.
"""

from orchestrator.http.app import build_app
from orchestrator.http.auth import Role, Tokens, load_tokens
from orchestrator.http.services import ApiOptions

__all__ = ["ApiOptions", "Role", "Tokens", "build_app", "load_tokens"]
