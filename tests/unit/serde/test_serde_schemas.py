"""The schema folder: self-contained files, consistent shared types, safe shapes, evolution."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import fastavro
import fastavro.utils
import pytest

from orchestrator.serde import (
    CancelWorkflow,
    SchemaError,
    SchemaRegistry,
    WireFormat,
)
from orchestrator.serde.avro import decode_datum, encode_datum
from orchestrator.serde.mapping import named_types

REGISTRY = SchemaRegistry()


def _walk(schema: Any) -> list[Any]:
    """Every schema node, depth first (named references stay strings)."""
    nodes = [schema]
    if isinstance(schema, list):
        for branch in schema:
            nodes += _walk(branch)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            for field in schema["fields"]:
                nodes += _walk(field["type"])
        elif schema.get("type") == "array":
            nodes += _walk(schema["items"])
        elif schema.get("type") == "map":
            nodes += _walk(schema["values"])
    return nodes


def test_the_folder_holds_every_family() -> None:
    assert REGISTRY.families() == [
        "saga.command.activity-completed",
        "saga.command.activity-failed",
        "saga.command.activity-heartbeat",
        "saga.command.cancel",
        "saga.command.child-result",
        "saga.command.pause",
        "saga.command.query",
        "saga.command.repair",
        "saga.command.reset",
        "saga.command.signal",
        "saga.command.start",
        "saga.command.terminate",
        "saga.command.unpause",
        "saga.command.update",
        "saga.control.activity-pause",
        "saga.flow.config",
        "saga.flow.state",
        "saga.history.event",
        "saga.history.snapshot",
        "saga.reply",
        "saga.reply.history-page",
        "saga.task.activity",
        "saga.task.cancel",
    ]


def _shape(node: Any, root: bool = True) -> Any:
    """A node with nested named types replaced by their names and docs dropped."""
    if isinstance(node, list):
        return [_shape(n, root=False) for n in node]
    if not isinstance(node, dict):
        return node
    if not root and node.get("type") in ("record", "enum", "fixed"):
        return node["name"]
    return {
        k: _shape(v, root=False) for k, v in node.items() if k != "doc" and not k.startswith("__")
    }


def test_shared_named_types_are_identical_in_every_file() -> None:
    seen: dict[str, tuple[str, str]] = {}
    for schema in REGISTRY:
        for name, node in named_types(schema.parsed).items():
            if name == schema.name or name.startswith(schema.family + "."):
                continue  # a family's own records evolve from version to version
            canonical = json.dumps(_shape(node), sort_keys=True)
            first = seen.setdefault(name, (schema.ce_type, canonical))
            assert first[1] == canonical, f"{name} differs in {schema.ce_type} and {first[0]}"
    assert {"saga.Payload", "saga.Failure", "saga.FailureCause"} <= set(seen)


def test_no_named_type_refers_to_itself() -> None:
    """Recursive types let a small hostile record overflow fastavro's C stack."""
    for schema in REGISTRY:
        for name, node in named_types(schema.parsed).items():
            inner = [n for n in _walk(node)[1:] if n == name]
            assert not inner, f"{schema.ce_type}: {name} is recursive"


def test_no_array_or_map_item_can_be_zero_bytes() -> None:
    """A zero-byte item would let a 10-byte count make the reader loop for ever."""
    for schema in REGISTRY:
        named = named_types(schema.parsed)
        for node in _walk(schema.parsed):
            if isinstance(node, dict) and node.get("type") in ("array", "map"):
                item = node.get("items", node.get("values"))
                item = named.get(item, item) if isinstance(item, str) else item
                assert item != "null", schema.ce_type
                if isinstance(item, dict) and item.get("type") == "record":
                    assert item["fields"], f"{schema.ce_type}: empty record as item"


def test_each_file_documents_its_ce_type_and_top_level_fields() -> None:
    for schema in REGISTRY:
        raw = json.loads(schema.path.read_text(encoding="utf-8"))
        assert f"CloudEvents type: {schema.ce_type}" in raw["doc"]
        undocumented = [f["name"] for f in raw["fields"] if not f.get("doc")]
        assert not undocumented, f"{schema.ce_type}: {undocumented}"


def test_every_file_parses_on_its_own() -> None:
    for path in sorted(REGISTRY.directory.glob("*.avsc")):
        fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")), named_schemas={})


def test_random_data_of_every_version_resolves_to_the_newest() -> None:
    """The backward-compatibility guarantee, checked for every published version."""
    checked = 0
    for family in REGISTRY.families():
        reader = REGISTRY.reader(family)
        for writer in REGISTRY.versions(family):
            for datum in fastavro.utils.generate_many(writer.parsed, 20):
                decode_datum(writer, reader, encode_datum(writer, datum))
                checked += 1
    assert checked == 20 * len(list(REGISTRY))


# --- evolution, end to end, with a folder holding an older version --------------------

_CANCEL_V1_WITHOUT_REASON = {
    "type": "record",
    "name": "CancelWorkflow",
    "namespace": "saga.command",
    "doc": "An older cancel. CloudEvents type: saga.command.cancel.v1.",
    "fields": [
        {"name": "workflow_id", "type": "string", "doc": "Workflow id."},
        {"name": "run_id", "type": ["null", "string"], "default": None, "doc": "Run."},
    ],
}


@pytest.fixture
def evolved(tmp_path: Path) -> SchemaRegistry:
    """Today's schemas, where cancel v2 is today's cancel and v1 lacked ``reason``."""
    for path in REGISTRY.directory.glob("*.avsc"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "saga.command.cancel.v1.avsc").write_text(json.dumps(_CANCEL_V1_WITHOUT_REASON))
    (tmp_path / "saga.command.cancel.v2.avsc").write_text(
        (REGISTRY.directory / "saga.command.cancel.v1.avsc").read_text(encoding="utf-8")
    )
    return SchemaRegistry(tmp_path)


def test_a_record_written_with_an_older_version_decodes_with_the_current_reader(
    evolved: SchemaRegistry,
) -> None:
    old = fastavro.parse_schema(_CANCEL_V1_WITHOUT_REASON, named_schemas={})
    value = io.BytesIO()
    fastavro.schemaless_writer(value, old, {"workflow_id": "w", "run_id": "r"})
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"1"),
        ("ce_type", b"saga.command.cancel.v1"),
        ("ce_source", b"/old-client"),
    ]
    decoded = WireFormat(evolved).decode_command(headers, value.getvalue())
    assert decoded.record == CancelWorkflow(workflow_id="w", run_id="r", reason="")


def test_new_records_are_written_with_the_newest_version(evolved: SchemaRegistry) -> None:
    encoded = WireFormat(evolved).encode_command(CancelWorkflow(workflow_id="w", reason="x"))
    assert dict(encoded.headers)["ce_type"] == b"saga.command.cancel.v2"


def test_a_pinned_older_version_is_written_during_a_rolling_upgrade(tmp_path: Path) -> None:
    for path in REGISTRY.directory.glob("*.avsc"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "saga.command.cancel.v1.avsc").write_text(json.dumps(_CANCEL_V1_WITHOUT_REASON))
    (tmp_path / "saga.command.cancel.v2.avsc").write_text(
        (REGISTRY.directory / "saga.command.cancel.v1.avsc").read_text(encoding="utf-8")
    )
    pinned = WireFormat(SchemaRegistry(tmp_path, write_versions={"saga.command.cancel": 1}))
    encoded = pinned.encode_command(CancelWorkflow(workflow_id="w", run_id="r"))
    assert dict(encoded.headers)["ce_type"] == b"saga.command.cancel.v1"
    assert pinned.decode_command(encoded.headers, encoded.value).record == CancelWorkflow(
        workflow_id="w", run_id="r"
    )


def test_a_renamed_record_across_versions_is_refused(tmp_path: Path) -> None:
    renamed = dict(_CANCEL_V1_WITHOUT_REASON, name="StopWorkflow")
    (tmp_path / "saga.command.cancel.v1.avsc").write_text(json.dumps(renamed))
    shutil.copy(
        REGISTRY.directory / "saga.command.cancel.v1.avsc", tmp_path / "saga.command.cancel.v2.avsc"
    )
    with pytest.raises(SchemaError, match="renamed"):
        SchemaRegistry(tmp_path)


def test_badly_named_or_broken_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "start.avsc").write_text("{}")
    with pytest.raises(SchemaError, match=r"start\.avsc"):
        SchemaRegistry(tmp_path)
    (tmp_path / "start.avsc").unlink()
    (tmp_path / "saga.command.start.v1.avsc").write_text('{"type": "record", "name": "X"')
    with pytest.raises(SchemaError, match=r"saga\.command\.start\.v1\.avsc"):
        SchemaRegistry(tmp_path)


def test_a_missing_folder_names_the_override(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="SAGA_SCHEMA_DIR"):
        SchemaRegistry(tmp_path / "nowhere")


def test_the_override_variable_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(REGISTRY.directory / "saga.reply.v1.avsc", tmp_path)
    monkeypatch.setenv("SAGA_SCHEMA_DIR", str(tmp_path))
    assert SchemaRegistry().families() == ["saga.reply"]


def test_a_family_without_a_python_type_is_refused(tmp_path: Path) -> None:
    for path in REGISTRY.directory.glob("*.avsc"):
        shutil.copy(path, tmp_path / path.name)
    extra = dict(_CANCEL_V1_WITHOUT_REASON, name="Snooze")
    (tmp_path / "saga.command.snooze.v1.avsc").write_text(json.dumps(extra))
    with pytest.raises(SchemaError, match=r"saga\.command\.snooze"):
        WireFormat(SchemaRegistry(tmp_path))


def test_the_packaged_schema_folder_is_the_repository_folder() -> None:
    """orchestrator/serde/schemas links to schemas/ (and is copied into wheels)."""
    repository = Path(__file__).resolve().parents[3] / "schemas"
    assert REGISTRY.directory.resolve() == repository.resolve()
    assert {p.name for p in repository.glob("*.avsc")} == {s.path.name for s in REGISTRY}
