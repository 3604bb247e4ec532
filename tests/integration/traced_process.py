"""A process with the OpenTelemetry SDK installed, as a deployment configures one
(``opentelemetry-instrument`` does the same from environment variables): each span is
written, when it ends, as one JSON line to a file.

    python -m tests.integration.traced_process SPANS saga worker ...   # the saga CLI
    python -m tests.integration.traced_process SPANS client BOOTSTRAP PREFIX ID
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class JsonLines(SpanExporter):
    """Appends each span to a file (a span ended before a kill -9 is on disk)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a", encoding="utf-8") as out:
            for span in spans:
                assert span.context is not None
                line = {
                    "name": span.name,
                    "kind": span.kind.name,
                    "trace_id": f"{span.context.trace_id:032x}",
                    "span_id": f"{span.context.span_id:016x}",
                    "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
                    "status": span.status.status_code.name,
                    "attributes": dict(span.attributes or {}),
                }
                out.write(json.dumps(line) + "\n")
        return SpanExportResult.SUCCESS


def client(bootstrap: str, prefix: str, workflow_id: str) -> None:
    """Start the traced saga inside an application span and wait for its result, as a
    service would."""
    from orchestrator.client import Client
    from orchestrator.log.topics import TopicLayout
    from tests.integration.traced_sagas import QUEUE, steps

    tracer = trace.get_tracer("shop")
    with (
        Client({"bootstrap.servers": bootstrap}, layout=TopicLayout(prefix=prefix)) as c,
        tracer.start_as_current_span("checkout"),
    ):
        handle = c.start(steps, 3, id=workflow_id, task_queue=QUEUE, wait_started=30)
        handle.result(timeout=150)  # the reply seen by the client is a hop of the trace


def main(argv: list[str]) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLines(Path(argv[0]))))
    trace.set_tracer_provider(provider)
    if argv[1] == "client":
        client(*argv[2:5])
        provider.shutdown()
        return
    from orchestrator.cli import main as saga

    saga(argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
