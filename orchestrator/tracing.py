"""OpenTelemetry spans for each hop of a saga; the context travels in record headers.

The project depends on the OpenTelemetry *API* only. Until the application installs an
SDK (``trace.set_tracer_provider``, or ``opentelemetry-instrument``), nothing is
recorded and each hop costs one check: records carry the W3C ``traceparent`` they
received, as they always did. With an SDK every hop is a span, and the records it
writes carry that span's context, so the next hop becomes its child:

* the client's start, signal, update, cancel, terminate and query: a ``PRODUCER`` span,
  child of the caller's current span (or of the ``traceparent`` it passed);
* each decision of the engine for one run (a command, a timer, a local activity):
  a ``CONSUMER`` span, child of the command's context, or of the run's when a timer
  fired; the run's context is kept in its history, so a saga that sleeps for days
  and moves between workers stays one trace;
* each activity attempt on the activity worker: a ``CONSUMER`` span, child of the
  decision that scheduled it, with its attempt number and outcome;
* each reply a client waited for, when it takes it: a ``CONSUMER`` span, child of the
  context the reply carries (the command it answers; for a RESULT, the closing
  decision).

Attribute names follow OpenTelemetry's messaging conventions for Kafka where one
applies (``messaging.*``) and use a ``saga.`` prefix for ours.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

PRODUCER = SpanKind.PRODUCER
CONSUMER = SpanKind.CONSUMER
INTERNAL = SpanKind.INTERNAL

_TRACER = trace.get_tracer("orchestrator")  # a proxy: it binds to the SDK once one is set
_PROPAGATOR = TraceContextTextMapPropagator()
_NO_SDK = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


_installed = False
_checked_at = float("-inf")


def recording() -> bool:
    """True once the application installed an SDK's tracer provider. Looking it up
    costs 2.6 us, and every hop asks: without an SDK the answer is kept for a second
    (hops in the first second after an SDK is installed late may go unrecorded)."""
    global _installed, _checked_at  # noqa: PLW0603 - a process-wide fact, set once
    if _installed:
        return True
    now = time.monotonic()
    if now - _checked_at < 1.0:
        return False
    _checked_at = now
    _installed = not isinstance(trace.get_tracer_provider(), _NO_SDK)
    return _installed


def _context(traceparent: str | None) -> Context | None:
    if traceparent is None:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})


def _traceparent(span: Span) -> str | None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


class Hop:
    """The span of one hop, as the code that does the hop sees it."""

    def __init__(self, span: Span | None) -> None:
        self._span = span
        #: the context to write on the records this hop produces (None without an SDK:
        #: the caller then writes what it received)
        self.traceparent = None if span is None else _traceparent(span)

    def set(self, name: str, value: str | int | bool) -> None:
        if self._span is not None:
            self._span.set_attribute(name, value)

    def fail(self, message: str) -> None:
        if self._span is not None:
            self._span.set_status(Status(StatusCode.ERROR, message))


_OFF = Hop(None)


@contextmanager
def hop(
    name: str,
    kind: SpanKind,
    parent: str | None,
    attributes: Mapping[str, str | int | bool],
    *,
    current: bool = False,
) -> Iterator[Hop]:
    """A span named ``name``, child of the ``parent`` traceparent, or of the caller's
    current span when ``parent`` is None and ``current`` is set."""
    if not recording():
        yield _OFF
        return
    context = _context(parent)
    if context is None and not current:
        context = Context()  # a new trace, not a child of whatever runs around it
    with _TRACER.start_as_current_span(
        name, context=context, kind=kind, attributes=dict(attributes)
    ) as span:
        yield Hop(span)


def kafka_attributes(topic: str, operation: str, **extra: Any) -> dict[str, str | int | bool]:
    """Messaging attributes of a hop over ``topic`` (``send`` or ``process``)."""
    attributes: dict[str, str | int | bool] = {
        "messaging.system": "kafka",
        "messaging.operation.type": operation,
        "messaging.destination.name": topic,
    }
    attributes.update({k: v for k, v in extra.items() if v is not None})
    return attributes
