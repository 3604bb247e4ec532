"""Real PostgreSQL from Debian's server binaries on a private data folder and port.

No system service is involved: ``initdb`` creates a throwaway cluster in a
temporary folder, and ``postgres`` runs as a child of this process on a free
loopback port with its socket in that folder. When this process runs as root the
server runs as the ``postgres`` account, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from orchestrator.devstack.processes import free_port, spawn, stop_process, tail, wait_until


class PostgresSetupError(RuntimeError):
    """The local PostgreSQL cannot be started; the message says what to install or fix."""


def postgres_bin_dir() -> Path:
    """Folder with ``initdb`` and ``postgres``: the newest Debian version, else PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if candidates:
        return Path(candidates[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PostgresSetupError(
        "PostgreSQL server binaries are missing: run scripts/bootstrap.sh "
        "(it installs Debian's 'postgresql' package) or set DATABASE_URL"
    )


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresSetupError(
            "running as root, and there is no 'postgres' account to run the server as; "
            "install Debian's 'postgresql' package (it creates one) or set DATABASE_URL"
        ) from exc
    return "postgres"


class LocalPostgres:
    """A PostgreSQL server owned by this process; use as a context manager."""

    def __init__(self, workdir: Path | None = None, port: int | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="saga-pg-"))
        self.port = port or free_port()
        self.user = _run_as()
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_in_s: float | None = None

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "postgres.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            account = pwd.getpwnam(self.user)
            os.chown(path, account.pw_uid, account.pw_gid)

    def init(self) -> None:
        """Create the cluster with trust auth on loopback (a throwaway test server)."""
        self.workdir.chmod(0o755)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        result = subprocess.run(
            [
                str(postgres_bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            check=False,
            user=self.user,
            group=self.user,
        )
        if result.returncode != 0:
            raise PostgresSetupError(f"initdb failed:\n{result.stdout}{result.stderr}")

    def start(self, timeout_s: float = 60.0) -> LocalPostgres:
        """Start the server (initialising it on first use) and wait until it accepts queries."""
        began = time.monotonic()
        if not (self.data_dir / "PG_VERSION").exists():
            self.init()
        self.log_path.touch()
        self._chown(self.log_path)
        argv = [
            str(postgres_bin_dir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-k",
            str(self.data_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
            # throwaway data: an OS crash may lose it, a process crash may not
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
        ]
        self.proc = spawn(argv, self.log_path, user=self.user)
        wait_until(
            self._accepts_queries,
            timeout_s,
            f"PostgreSQL on port {self.port}",
            interval_s=0.1,
            on_timeout=lambda: tail(self.log_path),
        )
        self.started_in_s = time.monotonic() - began
        return self

    def _accepts_queries(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise PostgresSetupError(
                f"postgres exited with {self.proc.returncode}" + tail(self.log_path)
            )
        import psycopg

        try:
            with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def kill(self) -> None:
        """Crash the server (SIGKILL to the postmaster); :meth:`start` recovers it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            # backends notice the postmaster is gone and exit; give them a moment
            time.sleep(0.5)

    def stop(self) -> None:
        """Fast shutdown (SIGINT): rolls back open transactions and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            stop_process(self.proc, grace_s=20)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and delete the data folder (the log stays for debugging)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
