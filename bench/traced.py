"""Run the saga CLI with the OpenTelemetry SDK installed, for the tracing overhead in
``bench/engine_bench.py --tracing sdk``: every span is recorded and batched as an
application's SDK would, then handed to an exporter that counts and drops it (so the
figure is the cost of tracing in the worker, not of a collector on this machine).

    python -m bench.traced --log-level INFO worker --sagas bench.bench_sagas ...
"""

from __future__ import annotations

import atexit
import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class Dropping(SpanExporter):
    """Counts the spans it is given; sends them nowhere."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def main(argv: list[str]) -> None:
    exporter = Dropping()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    atexit.register(lambda: print(f"spans exported: {exporter.spans}", flush=True))
    from orchestrator.cli import main as saga

    saga(argv, prog_name="saga")


if __name__ == "__main__":
    main(sys.argv[1:])
