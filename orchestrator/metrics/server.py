"""``/metrics`` over HTTP for a worker process, on a thread of its own."""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

__all__ = ["MetricsServer", "serve"]

log = logging.getLogger(__name__)


class MetricsServer:
    """A running endpoint; :meth:`close` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The port bound (useful when 0 was asked for)."""
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve(registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0) -> MetricsServer:
    """Serve ``registry`` on ``http://host:port/metrics`` (every path answers the same,
    as prometheus_client's server does) until :meth:`MetricsServer.close`."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    endpoint = MetricsServer(server, thread)
    log.info("metrics on http://%s:%d/metrics", host, endpoint.port)
    return endpoint
