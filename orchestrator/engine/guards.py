"""Catching non-deterministic calls made by workflow code.

While the executor runs workflow code (and only on that thread), these functions
are replaced by checking wrappers:

- clocks: ``time.time``, ``time.time_ns``, ``time.monotonic``, ``time.perf_counter``,
  ``time.sleep`` (blocking);
- randomness: ``random.random``, ``randint``, ``randrange``, ``choice``,
  ``shuffle``, ``uniform``, ``getrandbits``, ``uuid.uuid1``, ``uuid.uuid4``,
  ``os.urandom``;
- I/O: ``builtins.open``, ``socket.socket.connect``, ``socket.create_connection``,
  ``socket.getaddrinfo``, ``subprocess.Popen``.

A call from workflow code raises :class:`NondeterministicCallError` (mode
``"raise"``, the default) or emits a :class:`NondeterminismWarning` (mode
``"warn"``). Either way the executor notices and refuses to commit the activation,
so even a swallowed error is loud. Calls made by the standard library on the
code's behalf (logging's timestamps, asyncio internals) are allowed.

Limits: a name bound before the guard existed (``from time import time``) and
``datetime.now()`` (a C type) cannot be replaced; use ``ctx.now()``,
``ctx.random()`` and ``ctx.uuid4()``, and do I/O in activities.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Literal

from orchestrator.converter import Payload, PayloadCodec
from orchestrator.exceptions import NondeterministicCallError

__all__ = [
    "GuardMode",
    "NondeterminismWarning",
    "UnguardedCodec",
    "guarded",
    "installed",
    "suspended",
]

GuardMode = Literal["raise", "warn", "off"]


class NondeterminismWarning(UserWarning):
    """Workflow code called something non-deterministic (mode ``"warn"``)."""


_TARGETS: list[tuple[Any, str, str]] = [
    (time, "time", "time.time"),
    (time, "time_ns", "time.time_ns"),
    (time, "monotonic", "time.monotonic"),
    (time, "perf_counter", "time.perf_counter"),
    (time, "sleep", "time.sleep"),
    (random, "random", "random.random"),
    (random, "randint", "random.randint"),
    (random, "randrange", "random.randrange"),
    (random, "choice", "random.choice"),
    (random, "shuffle", "random.shuffle"),
    (random, "uniform", "random.uniform"),
    (random, "getrandbits", "random.getrandbits"),
    (uuid, "uuid1", "uuid.uuid1"),
    (uuid, "uuid4", "uuid.uuid4"),
    (os, "urandom", "os.urandom"),
    (builtins, "open", "open"),
    (socket.socket, "connect", "socket.connect"),
    (socket, "create_connection", "socket.create_connection"),
    (socket, "getaddrinfo", "socket.getaddrinfo"),
    (subprocess, "Popen", "subprocess.Popen"),
]

# Modules whose own calls are not the workflow's doing.
_ALLOWED_CALLERS = (
    "logging",
    "asyncio",
    "threading",
    "concurrent",
    "uuid",
    "random",
    "tempfile",
    "importlib",
    "linecache",
    "traceback",
    "warnings",
    "orchestrator.engine",
    "orchestrator.converter",
    "_pytest",
    "pytest",
    "hypothesis",
)


class _State(threading.local):
    def __init__(self) -> None:
        self.mode: GuardMode = "off"
        self.violations: list[str] = []


_state = _State()


class _Installation:
    """Process-wide: how many guarded blocks are active, and what was replaced."""

    lock = threading.Lock()
    depth = 0
    # (owner, attribute, original, guard): built once, then only swapped in and out.
    swaps: ClassVar[list[tuple[Any, str, Any, Any]]] = []


def _check(label: str) -> None:
    st = _state
    if st.mode == "off":
        return
    caller = sys._getframe(2).f_globals.get("__name__", "")
    if caller.startswith(_ALLOWED_CALLERS):
        return
    msg = (
        f"{label}() called inside workflow code: it is not deterministic on replay; "
        "use ctx.now()/ctx.random()/ctx.uuid4(), or do it in an activity"
    )
    st.violations.append(msg)
    if st.mode == "raise":
        raise NondeterministicCallError(msg)
    warnings.warn(msg, NondeterminismWarning, stacklevel=3)


def _wrap(orig: Any, label: str) -> Any:
    if isinstance(orig, type):
        # subprocess.Popen: keep isinstance() working by wrapping the constructor.
        class Guarded(orig):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                _check(label)
                super().__init__(*args, **kwargs)

        Guarded.__name__ = orig.__name__
        Guarded.__qualname__ = orig.__qualname__
        return Guarded

    def guard(*args: Any, **kwargs: Any) -> Any:
        _check(label)
        return orig(*args, **kwargs)

    guard.__name__ = getattr(orig, "__name__", label)
    guard.__doc__ = getattr(orig, "__doc__", None)
    return guard


def _install() -> None:
    inst = _Installation
    with inst.lock:
        inst.depth += 1
        if inst.depth > 1:
            return
        if not inst.swaps:
            for owner, attr, label in _TARGETS:
                orig = getattr(owner, attr)
                inst.swaps.append((owner, attr, orig, _wrap(orig, label)))
        for owner, attr, _, guard in inst.swaps:
            setattr(owner, attr, guard)


def _uninstall() -> None:
    inst = _Installation
    with inst.lock:
        inst.depth -= 1
        if inst.depth:
            return
        for owner, attr, orig, _ in inst.swaps:
            setattr(owner, attr, orig)


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """Run infrastructure code (e.g. a payload codec) inside a guarded block, unchecked.

    For code whose randomness or I/O cannot change what the workflow decides: replay
    compares decisions, never encoded payload bytes.
    """
    prev = _state.mode
    _state.mode = "off"
    try:
        yield
    finally:
        _state.mode = prev


class UnguardedCodec:
    """A payload codec run with the guards suspended (encryption draws random nonces)."""

    def __init__(self, inner: PayloadCodec) -> None:
        self.inner = inner

    def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        with suspended():
            return self.inner.encode(payloads)

    def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        with suspended():
            return self.inner.decode(payloads)


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """Keep the checking wrappers in place for a while, unchecked outside ``guarded``.

    For a runtime about to run many workflow activations in a row (a wake-up storm
    replays and fires thousands of runs): each ``guarded`` block inside then finds
    the wrappers installed instead of swapping twenty attributes in and out. Calls
    outside a guarded block only pass through a wrapper (the mode is off).
    """
    _install()
    try:
        yield
    finally:
        _uninstall()


@contextlib.contextmanager
def guarded(mode: GuardMode, on_violation: Callable[[str], None]) -> Iterator[None]:
    """Guard the current thread while the block runs workflow code.

    ``on_violation`` receives each violation message after the block, whatever the
    code did with the error.
    """
    if mode == "off":
        yield
        return
    _install()
    prev_mode, prev_violations = _state.mode, _state.violations
    _state.mode, _state.violations = mode, []
    try:
        yield
    finally:
        found = _state.violations
        _state.mode, _state.violations = prev_mode, prev_violations
        _uninstall()
        for msg in found:
            on_violation(msg)
