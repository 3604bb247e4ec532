"""The start example in schemas/README.md works as pasted: real schema, a shipped saga.

The example's statements up to the producer run as they are; the record they build
is then decoded as the engine decodes commands, and its workflow type and input
are checked against the shipped saga's definition.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from orchestrator.converter import DataConverter
from orchestrator.serde import StartWorkflow, WireFormat
from orchestrator.worker.discovery import discover
from sagas.payments import TransferRequest

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "schemas" / "README.md"


def start_example() -> ast.Module:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Start a saga from any Kafka client", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "no python example in the start section"
    return ast.parse(match.group(1))


def run_until_the_producer(module: ast.Module, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the example's statements before it builds a Producer; return its names."""
    before: list[ast.stmt] = []
    for statement in module.body:
        if "Producer(" in ast.unparse(statement) and not isinstance(statement, ast.ImportFrom):
            break
        before.append(statement)
    monkeypatch.chdir(ROOT)  # the example opens schemas/... from the repository root
    names: dict[str, Any] = {}
    exec(compile(ast.Module(body=before, type_ignores=[]), str(README), "exec"), names)
    return names


def produce_call(module: ast.Module) -> ast.Call:
    for node in ast.walk(module):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "producer.produce":
            return node
    raise AssertionError("the example produces nothing")


def test_the_start_example_encodes_a_start_of_a_shipped_saga(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = start_example()
    names = run_until_the_producer(module, monkeypatch)
    call = produce_call(module)
    kwargs = {k.arg: k.value for k in call.keywords}
    headers = [
        (ast.literal_eval(item.elts[0]), b"example-id")
        if ast.literal_eval(item.elts[0]) == "ce_id"
        else ast.literal_eval(item)
        for item in kwargs["headers"].elts
    ]

    decoded = WireFormat().decode_command(headers, names["value"].getvalue())
    start = decoded.record
    assert isinstance(start, StartWorkflow)
    assert decoded.cloud_event.type == "saga.command.start.v1"
    assert ast.literal_eval(kwargs["key"]) == start.workflow_id.encode()
    assert ast.literal_eval(call.args[0]).endswith(".commands")

    shipped = discover(["sagas.payments", "sagas.retry_forward"]).workflows
    assert start.workflow_type in shipped, f"{start.workflow_type!r} is no shipped saga"
    assert start.task_queue == "payments"
    [payload] = start.input
    request = DataConverter().from_payload(payload, TransferRequest)
    assert request.transfer_id == start.workflow_id and request.amount > 0


def test_the_example_producer_uses_java_s_partitioner() -> None:
    config = next(
        node for node in ast.walk(start_example())
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "Producer"
    )
    settings = ast.literal_eval(config.args[0])
    assert settings["partitioner"] == "murmur2_random"
