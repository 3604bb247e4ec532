"""Where the operations configuration takes effect: ``saga worker`` registers the
built-in activities when ``SAGA_OPERATIONS_CONFIG`` is set, ``saga http`` refuses a bad
file, and the OpenAPI document lists exactly the routes the server has."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator import activity
from orchestrator.cli import _operation_activities, main
from orchestrator.http import ApiOptions, build_app

ROOT = Path(__file__).resolve().parents[3]
SECRET = "0123456789abcdef-secret"


def test_the_worker_registers_the_operation_activities_only_when_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAGA_OPERATIONS_CONFIG", raising=False)
    assert _operation_activities() == []
    path = tmp_path / "ops.json"
    path.write_text(json.dumps({"callers": [{"url_prefix": "https://a.example/cb",
                                             "secret": SECRET}]}))
    monkeypatch.setenv("SAGA_OPERATIONS_CONFIG", str(path))
    names = sorted(activity.definition_of(a).name for a in _operation_activities())
    assert names == [
        "saga.operation.callback", "saga.operation.cancel", "saga.operation.resolve",
        "saga.operation.start", "saga.operation.status",
    ]


def test_saga_http_refuses_a_bad_operations_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ops.json"
    path.write_text(json.dumps({"endpoints": {}, "callers": [{"url_prefix": "ftp://x",
                                                              "secret": SECRET}]}))
    monkeypatch.setenv("SAGA_HTTP_TOKENS", "admin-token-0123456789abcdef")
    result = CliRunner().invoke(main, ["http", "--operations", str(path)])
    assert result.exit_code == 2
    assert "callers[0].url_prefix must be an http(s) URL" in result.output


def test_the_openapi_document_lists_the_servers_operation_routes() -> None:
    text = (ROOT / "docs" / "operations-api.yaml").read_text()
    documented = set()
    path = ""
    for line in text.splitlines():
        if m := re.fullmatch(r"  (/v1/\S+):", line):
            path = m.group(1)
        elif m := re.fullmatch(r"    (get|post):", line):
            documented.add((m.group(1).upper(), path))
    app = build_app(ApiOptions(kafka_config={}))
    served = {
        (route.method, resource.canonical)
        for resource in app.router.resources()
        if resource.canonical.startswith(("/v1/operations", "/v1/operation-callbacks"))
        for route in resource
    }
    assert documented == served
