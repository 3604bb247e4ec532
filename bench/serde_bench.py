"""Micro benchmark of the wire format: records/s to encode and decode, per record type.

Run: .venv/bin/python bench/serde_bench.py [--seconds 2]
Prints one line per record type: full path (dataclass -> headers + bytes -> dataclass)
and, for reference, bare fastavro on the same datum.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from typing import Any

import fastavro

from orchestrator.converter import JsonPayloadConverter
from orchestrator.engine.events import (
    ActivityCompleted,
    ActivityScheduled,
    RetryPolicyRecord,
    WorkflowStarted,
)
from orchestrator.serde import ActivityTask, StartWorkflow, WireFormat
from orchestrator.serde.wire import EVENT_FAMILY

PAYLOAD = JsonPayloadConverter().encode(
    {"from": "acc-001", "to": "acc-002", "amount": 12_500, "currency": "EUR", "ref": "inv-8812"}
)
NOW = 1_764_000_000_000


def _rate(fn: Callable[[], Any], seconds: float) -> float:
    count = 0
    batch = 1000
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    wire = WireFormat(source="/bench")
    scheduled = ActivityScheduled(
        seq=5,
        time=NOW,
        build_id="build-2024.11.25",
        activity_seq=2,
        activity_type="withdraw",
        task_queue="payments",
        input=[PAYLOAD],
        retry_policy=RetryPolicyRecord(initial_ms=1000, backoff=2.0, maximum_ms=3_600_000),
        start_to_close_ms=30_000,
    )
    cases: list[tuple[str, Callable[[], Any], Callable[[Any], Any]]] = [
        (
            "event ActivityScheduled",
            lambda: wire.encode_event("transfer-8812", "0f1e2d3c4b5a", scheduled),
            lambda r: wire.decode_event(r.headers, r.value),
        ),
        (
            "event ActivityCompleted",
            lambda: wire.encode_event(
                "transfer-8812",
                "0f1e2d3c4b5a",
                ActivityCompleted(seq=6, time=NOW, activity_seq=2, attempt=1, result=PAYLOAD),
            ),
            lambda r: wire.decode_event(r.headers, r.value),
        ),
        (
            "event WorkflowStarted",
            lambda: wire.encode_event(
                "transfer-8812",
                "0f1e2d3c4b5a",
                WorkflowStarted(
                    seq=1,
                    time=NOW,
                    workflow_type="transfer",
                    workflow_id="transfer-8812",
                    run_id="0f1e2d3c4b5a",
                    task_queue="payments",
                    input=[PAYLOAD],
                ),
            ),
            lambda r: wire.decode_event(r.headers, r.value),
        ),
        (
            "command StartWorkflow",
            lambda: wire.encode_command(
                StartWorkflow(
                    workflow_id="transfer-8812",
                    workflow_type="transfer",
                    task_queue="payments",
                    input=[PAYLOAD],
                )
            ),
            lambda r: wire.decode_command(r.headers, r.value),
        ),
        (
            "task ActivityTask",
            lambda: wire.encode_task(
                ActivityTask(
                    workflow_id="transfer-8812",
                    run_id="0f1e2d3c4b5a",
                    activity_seq=2,
                    activity_type="withdraw",
                    attempt=1,
                    task_queue="payments",
                    scheduled_time=NOW,
                    args=[PAYLOAD],
                    start_to_close_timeout_ms=30_000,
                )
            ),
            lambda r: wire.decode_task(r.headers, r.value),
        ),
    ]
    print(f"{'record':<26}{'encode/s':>12}{'decode/s':>12}{'bytes':>8}")
    for name, encode, decode in cases:
        record = encode()
        enc = _rate(encode, args.seconds)
        dec = _rate(lambda record=record, decode=decode: decode(record), args.seconds)
        print(f"{name:<26}{enc:>12,.0f}{dec:>12,.0f}{len(record.value):>8}")

    # Reference: bare fastavro on the same envelope datum (no headers, no dataclasses).
    schema = wire.registry.writer(EVENT_FAMILY).parsed
    datum = wire._kinds[EVENT_FAMILY].to_avro(("transfer-8812", "0f1e2d3c4b5a", scheduled))
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, datum)
    value = out.getvalue()

    def bare_encode() -> bytes:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, datum)
        return buffer.getvalue()

    def bare_decode() -> Any:
        return fastavro.schemaless_reader(
            io.BytesIO(value), schema, return_record_name=True, return_record_name_override=True
        )

    enc, dec = _rate(bare_encode, args.seconds), _rate(bare_decode, args.seconds)
    print(f"{'(bare fastavro, event)':<26}{enc:>12,.0f}{dec:>12,.0f}{len(value):>8}")


if __name__ == "__main__":
    main()
