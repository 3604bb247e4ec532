"""A start/stop handle that runs the demo bank in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from types import TracebackType

from aiohttp import web

from orchestrator.connectors.postgres import Ledger
from orchestrator.devstack.bank.app import build_app
from orchestrator.devstack.bank.faults import Faults

__all__ = ["BankServer"]


class BankServer:
    """The bank on ``host`` (loopback by default) and a free port, with its own event loop.

    ::

        with BankServer(dsn) as bank:          # or bank = BankServer(dsn).start()
            bank.faults.outage(30)             # a 30-second bank holiday
            httpx.get(f"{bank.url}/total")

    The ledger tables are created in ``dsn`` on start. ``stop()`` answers or cancels
    in-flight requests within ``shutdown_timeout`` seconds and closes the pool.
    """

    def __init__(
        self,
        dsn: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        pool_size: int = 4,
        seed: int = 0,
        shutdown_timeout: float = 1.0,
    ) -> None:
        self.dsn = dsn
        self.host = host
        self.port = port
        self.faults = Faults(seed=seed)
        self._pool_size = pool_size
        self._shutdown_timeout = shutdown_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` once started."""
        if not self.port:
            raise RuntimeError("the bank is not started")
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> BankServer:
        """Start serving; returns when the bank answers, raises if it could not start."""
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._ready.clear()
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"bank-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"the bank did not start within {timeout} s")
        if self._error is not None:
            self.stop()
            raise RuntimeError(f"the bank could not start: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop serving and wait for the thread to end."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            # RuntimeError: the loop closed in between, nothing left to stop.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError("the bank did not stop in time")
        self._thread = self._loop = self._stop = None

    def __enter__(self) -> BankServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as exc:  # noqa: BLE001 (reported through start())
            self._error = exc
        finally:
            sock.close()
            self._ready.set()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        self._stop = asyncio.Event()
        async with Ledger.connect(self.dsn, max_size=self._pool_size) as ledger:
            runner = web.AppRunner(
                build_app(ledger, self.faults),
                shutdown_timeout=self._shutdown_timeout,
                access_log=None,
            )
            await runner.setup()
            try:
                await web.SockSite(runner, sock).start()
                self._ready.set()
                await self._stop.wait()
            finally:
                await runner.cleanup()
