"""A one-node local Kafka that only speaks SASL_SSL with SCRAM, for security tests.

Everything is made at start-up and thrown away at stop: a throwaway CA and a broker
certificate for ``127.0.0.1``/``localhost`` (PEM files, which Kafka reads directly
with ``ssl.keystore.type=PEM``), and SCRAM credentials written into the metadata
log when the node is formatted (``kafka-storage format --add-scram``), so they exist
before the broker accepts its first connection. The broker's own inter-broker
connections use the same listener with a user of their own: no plaintext port is
open besides the controller's.

Clients need the CA file (``ssl.ca.location``) and a user's name and password.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchestrator.devstack.kafka_local import (
    KafkaSetupError,
    LocalKafkaCluster,
    LocalKafkaNode,
    _node_config,
)
from orchestrator.devstack.processes import free_port

MECHANISM = "SCRAM-SHA-512"
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
_BROKER_USER = "saga-broker"


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8, unencrypted: Kafka's PEM keystore reads it without ssl.key.password
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the generated CA certificate and the broker's PEM keystore."""

    ca_pem: Path
    keystore_pem: Path


def make_tls_files(folder: Path, *, valid_days: int = 2) -> TlsFiles:
    """A fresh CA and a broker certificate signed by it (SAN: 127.0.0.1, localhost)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "saga test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    broker_key = ec.generate_private_key(ec.SECP256R1())
    broker_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "broker-keystore.pem")
    files.ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.keystore_pem.write_bytes(
        _pem_key(broker_key) + broker_cert.public_bytes(serialization.Encoding.PEM)
    )
    files.keystore_pem.chmod(0o600)
    return files


@dataclass
class SecureKafkaNode(LocalKafkaNode):
    """A node whose storage is formatted with SCRAM credentials for ``users``."""

    users: dict[str, str] = field(default_factory=dict, repr=False)

    def format(self, cluster_id: str) -> None:
        scram: list[str] = []
        for name, password in self.users.items():
            scram += ["--add-scram", f"{MECHANISM}=[name={name},password={password}]"]
        argv = self._java_argv(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(self.config_path),
            *scram,
        )
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            # the output may echo the credentials: say what failed, not what was passed
            raise KafkaSetupError(
                f"formatting secure node {self.node_id} failed (exit {result.returncode}); "
                f"see {self.log_path.parent}"
            )


def _secure_config(node: SecureKafkaNode, voters: str, tls: TlsFiles, broker_password: str) -> str:
    lines: dict[str, str] = {}
    for line in _node_config(node, voters, 1).splitlines():
        key, _, value = line.partition("=")
        lines[key] = value
    jaas = f"{_SCRAM_LOGIN} required"
    lines.update(
        {
            "listeners": f"SASL_SSL://127.0.0.1:{node.broker_port},"
            f"CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{node.broker_port}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": (
                f'{jaas} username="{_BROKER_USER}" password="{broker_password}";'
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(tls.keystore_pem),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(tls.ca_pem),
            "ssl.endpoint.identification.algorithm": "https",
            "ssl.client.auth": "none",
        }
    )
    return "".join(f"{key}={value}\n" for key, value in lines.items())


class SecureKafkaCluster(LocalKafkaCluster):
    """One KRaft node reachable only through SASL_SSL + SCRAM-SHA-512.

    ``users`` maps user names to passwords (letters and digits only: the storage
    tool's ``--add-scram`` syntax has no quoting). :attr:`ca_location` is the CA
    file clients must trust.
    """

    def __init__(self, users: dict[str, str], workdir: Path | None = None) -> None:
        for name, password in users.items():
            if not (name.replace("-", "").isalnum() and password.isalnum()):
                raise ValueError("SCRAM user names and passwords must be alphanumeric here")
        super().__init__(size=1, workdir=workdir)
        self.users = dict(users)
        self._broker_password = secrets.token_hex(16)
        self.tls = make_tls_files(self.workdir / "tls")

    @property
    def ca_location(self) -> str:
        return str(self.tls.ca_pem)

    def client_config(self, username: str, password: str) -> dict[str, str]:
        """librdkafka settings for ``username`` on this cluster."""
        return {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": MECHANISM,
            "sasl.username": username,
            "sasl.password": password,
            "ssl.ca.location": self.ca_location,
        }

    def _layout(self) -> None:
        node = SecureKafkaNode(
            node_id=1,
            broker_port=free_port(),
            controller_port=free_port(),
            home=self.workdir / "node-1",
            users={**self.users, _BROKER_USER: self._broker_password},
        )
        self.nodes = [node]
        voters = f"1@127.0.0.1:{node.controller_port}"
        shutil.rmtree(node.data_dir, ignore_errors=True)
        node.home.mkdir(parents=True, exist_ok=True)
        node.config_path.write_text(_secure_config(node, voters, self.tls, self._broker_password))
        node.config_path.chmod(0o600)

    def stop(self, keep_workdir: bool = True) -> None:
        super().stop(keep_workdir=keep_workdir)
        for node in self.nodes:
            node.config_path.unlink(missing_ok=True)  # it holds the broker's own password
        shutil.rmtree(self.workdir / "tls", ignore_errors=True)
