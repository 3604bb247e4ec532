"""The deterministic asyncio event loop that workflow code runs on.

Its clock is workflow time and it does no I/O. Ready callbacks run in FIFO order,
so the interleaving of workflow coroutines is a function of the inputs alone.
Every ``call_at``/``call_later`` (hence ``asyncio.sleep``, ``wait_for``,
``asyncio.timeout``) becomes a durable timer through :class:`TimerHooks`; the loop
never fires timers by itself: the executor does so when history says they fired.

``asyncio.gather``, ``wait``, ``wait_for``, ``shield``, ``timeout``, tasks and
futures work unchanged. I/O methods (sockets, subprocesses, executors) raise
NondeterministicCallError.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import collections
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from orchestrator.exceptions import NondeterministicCallError

__all__ = ["TimerHooks", "WorkflowEventLoop"]

T = TypeVar("T")

_FIRST_PRUNE = 64


class TimerHooks(Protocol):
    """How the loop reports timers to the executor."""

    def timer_started(self, handle: asyncio.TimerHandle, fire_at_ms: int) -> None:
        """A durable timer was requested."""
        ...

    def timer_cancelled(self, handle: asyncio.TimerHandle) -> None:
        """A timer handle was cancelled (it may already have fired)."""
        ...


def _no_io(name: str) -> Callable[..., Any]:
    def method(self: WorkflowEventLoop, *args: Any, **kwargs: Any) -> Any:
        raise NondeterministicCallError(
            f"loop.{name}() is I/O and not allowed in workflow code; use an activity"
        )

    method.__name__ = name
    return method


class WorkflowEventLoop(asyncio.AbstractEventLoop):
    """A single-threaded loop driven step by step by the executor."""

    def __init__(self, hooks: TimerHooks, now_ms: int) -> None:
        self._hooks = hooks
        self.now_ms = now_ms
        self._ready: collections.deque[asyncio.Handle] = collections.deque()
        self._running = False
        self._closed = False
        self.exceptions: list[dict[str, Any]] = []
        # asyncio.all_tasks(loop) scans every task of every loop in the process; a
        # worker holds thousands of runs, so each loop keeps its own. A plain list (a
        # WeakSet cost 3% of a timer firing): finished tasks are pruned as it grows,
        # and an unfinished one stays until the run is evicted or closes
        self._tasks: list[asyncio.Task[Any]] = []
        self._prune_at = _FIRST_PRUNE

    # --- driving ------------------------------------------------------------------

    def run_ready(self) -> None:
        """Run callbacks until none is ready (every coroutine is blocked)."""
        outer = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        self._running = True
        try:
            while self._ready:
                handle = self._ready.popleft()
                if not handle._cancelled:
                    handle._run()
        finally:
            self._running = False
            asyncio.events._set_running_loop(outer)

    def fire(self, handle: asyncio.TimerHandle) -> None:
        """Queue a timer's callback (the executor calls this when the timer fired)."""
        self._ready.append(handle)

    @property
    def has_ready(self) -> bool:
        """True when callbacks are waiting to run."""
        return bool(self._ready)

    # --- the AbstractEventLoop surface asyncio needs ------------------------------

    def time(self) -> float:
        """Workflow time in seconds since the epoch."""
        return self.now_ms / 1000.0

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        fire_at_ms = round(when * 1000)
        if fire_at_ms <= self.now_ms:
            # Already due: not worth a durable timer, and deterministic either way.
            self._ready.append(handle)
        else:
            self._hooks.timer_started(handle, fire_at_ms)
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        self._hooks.timer_cancelled(handle)

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        task = asyncio.Task(coro, loop=self, name=name, context=context)
        self._tasks.append(task)
        if len(self._tasks) > self._prune_at:
            self._tasks = [t for t in self._tasks if not t.done()]
            self._prune_at = max(_FIRST_PRUNE, 2 * len(self._tasks))
        return task

    def own_tasks(self) -> list[asyncio.Task[Any]]:
        """Unfinished tasks created on this loop (what ``asyncio.all_tasks(loop)`` returns)."""
        return [t for t in self._tasks if not t.done()]

    def call_soon_threadsafe(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        raise NondeterministicCallError("threads must not touch a workflow's loop")

    def get_debug(self) -> bool:
        return False

    def set_debug(self, enabled: bool) -> None:
        pass

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._ready.clear()
        self._tasks = []  # tasks hold the loop: no cycle left for the collector

    def get_exception_handler(self) -> None:
        return None

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        # Collected, not logged: "task destroyed while pending" and similar reports
        # are normal when an evicted or finished run drops its coroutines.
        self.exceptions.append(context)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.exceptions.append(context)

    def run_forever(self) -> None:
        raise RuntimeError("a workflow loop is driven by its executor")

    def run_until_complete(self, future: Any) -> Any:
        raise RuntimeError("a workflow loop is driven by its executor")

    run_in_executor = _no_io("run_in_executor")  # type: ignore[assignment]
    getaddrinfo = _no_io("getaddrinfo")
    getnameinfo = _no_io("getnameinfo")
    create_connection = _no_io("create_connection")
    create_server = _no_io("create_server")
    create_datagram_endpoint = _no_io("create_datagram_endpoint")
    create_unix_connection = _no_io("create_unix_connection")
    create_unix_server = _no_io("create_unix_server")
    subprocess_exec = _no_io("subprocess_exec")
    subprocess_shell = _no_io("subprocess_shell")
    sock_connect = _no_io("sock_connect")
    sock_recv = _no_io("sock_recv")
    sock_sendall = _no_io("sock_sendall")
    add_reader = _no_io("add_reader")  # type: ignore[assignment]
    add_writer = _no_io("add_writer")  # type: ignore[assignment]
    stop = _no_io("stop")
    shutdown_asyncgens = _no_io("shutdown_asyncgens")
    shutdown_default_executor = _no_io("shutdown_default_executor")
    set_default_executor = _no_io("set_default_executor")
    sendfile = _no_io("sendfile")
    start_tls = _no_io("start_tls")
    connect_accepted_socket = _no_io("connect_accepted_socket")
    connect_read_pipe = _no_io("connect_read_pipe")
    connect_write_pipe = _no_io("connect_write_pipe")
    remove_reader = _no_io("remove_reader")
    remove_writer = _no_io("remove_writer")
    sock_recv_into = _no_io("sock_recv_into")
    sock_recvfrom = _no_io("sock_recvfrom")
    sock_recvfrom_into = _no_io("sock_recvfrom_into")
    sock_sendto = _no_io("sock_sendto")
    sock_accept = _no_io("sock_accept")
    sock_sendfile = _no_io("sock_sendfile")
    add_signal_handler = _no_io("add_signal_handler")  # type: ignore[assignment]
    remove_signal_handler = _no_io("remove_signal_handler")
    set_task_factory = _no_io("set_task_factory")
    get_task_factory = _no_io("get_task_factory")
    set_exception_handler = _no_io("set_exception_handler")
