"""``saga http`` over TLS: it serves HTTPS with the given certificate, refuses plain
HTTP off loopback unless told, and refuses half a TLS configuration. No broker runs:
the bootstrap address is a closed loopback port (the console's files need none)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchestrator.devstack.processes import free_port
from tests.unit.http_api.test_http_auth import ADMIN, saga_http
from tests.unit.http_api.test_http_unavailable import closed_port


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_plain_http_off_loopback_and_half_tls_are_refused(tmp_path: Path) -> None:
    tokens = {"SAGA_HTTP_TOKENS": ADMIN}
    code, output = saga_http("--host", "0.0.0.0", env=tokens)
    assert code == 2 and "--tls-cert" in output
    cert, _ = self_signed(tmp_path)
    code, output = saga_http("--tls-cert", str(cert), env=tokens)
    assert code == 2 and "go together" in output


def test_serves_https_with_the_given_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    env = {
        **os.environ,
        "SAGA_HTTP_TOKENS": ADMIN,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}",
        "DATABASE_URL": "",
    }
    argv = [sys.executable, "-m", "orchestrator.cli", "http", "--port", str(port)]
    argv += ["--tls-cert", str(cert), "--tls-key", str(key)]
    with (tmp_path / "server.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                page = httpx.get(f"https://127.0.0.1:{port}/console/", verify=trust)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.2)
        assert page.status_code == 200
        assert "saga console" in page.text
        r = httpx.get(f"https://127.0.0.1:{port}/v1/stats", verify=trust)
        assert r.status_code == 401
        try:
            plain = httpx.get(f"http://127.0.0.1:{port}/console/").status_code
        except httpx.TransportError:
            plain = None
        assert plain != 200  # no page over plain HTTP on a TLS port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert ADMIN not in (tmp_path / "server.log").read_text()
