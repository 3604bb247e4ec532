"""``saga http`` as a process: it serves with tokens from the environment and a file,
stops on SIGTERM, and its log (at DEBUG) never contains a token."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from orchestrator.log.topics import TopicLayout, ensure_topics
from orchestrator.worker.engine_worker import EngineWorker
from orchestrator.worker.shard.processor import ProcessorOptions
from tests.integration.e2e_sagas import nap

pytestmark = pytest.mark.integration

ENV_TOKEN = "env-token-Zx81mQ0pLw7yTb2c"
FILE_TOKEN = "file-token-Hq5vN3kR9sJd4uEa"
WRONG_TOKEN = "wrong-token-Pk2wX7cV1bNm6zQe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"saga http exited with {proc.returncode}"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("saga http did not become healthy")


def test_saga_http_process_with_env_and_file_tokens(
    kafka_config: dict[str, Any], admin: AdminClient, topic_prefix: str, tmp_path: Path
) -> None:
    layout = TopicLayout(prefix=topic_prefix, shards=2)
    ensure_topics(admin, layout)
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# the deploy pipeline's token\n\n{FILE_TOKEN}\n")
    token_file.chmod(0o600)
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"],
        "SAGA_TOPIC_PREFIX": topic_prefix,
        "SAGA_HTTP_TOKENS": f"{ENV_TOKEN}, ",
        "DATABASE_URL": "",
    }
    log_path = tmp_path / "server.log"
    options = ProcessorOptions(worker_id=f"{topic_prefix}-w", transaction_timeout_ms=5000)
    with (
        EngineWorker(kafka_config, layout, [nap], options=options),
        log_path.open("wb") as log_file,
    ):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator.cli",
                "--log-level",
                "DEBUG",
                "http",
                "--port",
                str(port),
                "--token-file",
                str(token_file),
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc)
            with httpx.Client(base_url=url, timeout=60) as http:
                r = http.post(
                    "/v1/workflows",
                    json={"workflow": "e2e.nap", "id": "p-1", "task_queue": "q", "args": ["p", 20]},
                    headers={"Authorization": f"Bearer {ENV_TOKEN}"},
                )
                assert r.status_code == 201, r.text
                r = http.get(
                    "/v1/workflows/p-1/result",
                    params={"wait": 20},
                    headers={"Authorization": f"Bearer {FILE_TOKEN}"},
                )
                assert (r.status_code, r.json()["result"]) == (200, "rested:p"), r.text
                r = http.get(
                    "/v1/workflows/p-1", headers={"Authorization": f"Bearer {WRONG_TOKEN}"}
                )
                assert r.status_code == 401
                assert http.get("/v1/workflows/p-1").status_code == 401
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(20)
    assert code == 0
    logged = log_path.read_text()
    assert "refused GET /v1/workflows/p-1" in logged and "unknown token" in logged
    assert '"POST /v1/workflows HTTP/1.1" 201' in logged  # the access log is on
    assert "Tokens(admin=2, read=0)" in logged
    for token in (ENV_TOKEN, FILE_TOKEN, WRONG_TOKEN):
        assert token not in logged
