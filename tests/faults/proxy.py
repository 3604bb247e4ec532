"""A TCP proxy on loopback that delays traffic and cuts connections at random.

It runs its own asyncio loop in a daemon thread, so blocking test code and
subprocesses can use it. Bytes are forwarded in order per direction; when chaos is
on, each forwarded chunk waits a random delay first (which also slows everything
behind it on that connection, like a congested link), and a cutter task aborts a
random live connection (sometimes all of them) every so often. Aborting sends a
RST to both sides, the way a failing middlebox or a flapping link looks to a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
from dataclasses import dataclass


@dataclass
class ProxyStats:
    """What the proxy did, for the scenario's summary line."""

    connections: int = 0
    cuts: int = 0
    cut_all: int = 0
    delayed_chunks: int = 0
    forwarded_bytes: int = 0


class ChaosProxy:
    """Listen on ``127.0.0.1:<port>`` and forward to :attr:`target` once it is set."""

    def __init__(
        self,
        *,
        delay_s: tuple[float, float] = (0.0, 0.02),
        cut_every_s: tuple[float, float] = (0.5, 3.0),
        cut_all_probability: float = 0.15,
        seed: int = 0,
    ) -> None:
        self.delay_s = delay_s
        self.cut_every_s = cut_every_s
        self.cut_all_probability = cut_all_probability
        self.target: tuple[str, int] | None = None
        self.chaos = False
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="proxy", daemon=True)
        self._live: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ChaosProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Close the listener and every connection; stop the loop thread."""
        if not self._thread.is_alive():
            self._sock.close()
            return
        with contextlib.suppress(TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._sock.close()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._accept, sock=self._sock)
        self._spawn(self._cutter())

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for pair in list(self._live):
            self._abort(pair)
        await asyncio.sleep(0)

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = self._loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.target is None:
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()  # broker down: the client sees a refused/reset link
            return
        self.stats.connections += 1
        pair = (client_w, server_w)
        self._live.add(pair)
        self._spawn(self._pump(client_r, server_w, pair))
        self._spawn(self._pump(server_r, client_w, pair))

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if self.chaos and self.delay_s[1] > 0:
                    self.stats.delayed_chunks += 1
                    await asyncio.sleep(self._rng.uniform(*self.delay_s))
                writer.write(chunk)
                await writer.drain()
                self.stats.forwarded_bytes += len(chunk)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._abort(pair)

    def _abort(self, pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        if pair in self._live:
            self._live.discard(pair)
            for writer in pair:
                writer.transport.abort()

    async def _cutter(self) -> None:
        while True:
            await asyncio.sleep(self._rng.uniform(*self.cut_every_s))
            if not self.chaos or not self._live:
                continue
            if self._rng.random() < self.cut_all_probability:
                self.stats.cut_all += 1
                victims = list(self._live)
            else:
                victims = [self._rng.choice(sorted(self._live, key=id))]
            for pair in victims:
                self.stats.cuts += 1
                self._abort(pair)
