"""Where the development stack finds its files and keeps its caches."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def local_infra_dir() -> Path:
    """``compose/local``: the pom.xml that pins Kafka's version and the broker's log4j2 config."""
    return REPO_ROOT / "compose" / "local"


def cache_root() -> Path:
    """Cache shared by every checkout on this machine (``SAGA_CACHE_DIR`` overrides)."""
    explicit = os.environ.get("SAGA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "saga-orchestrator"


def kafka_version() -> str:
    """The Apache Kafka version pinned in ``compose/local/pom.xml``."""
    pom = (local_infra_dir() / "pom.xml").read_text()
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    if match is None:
        raise RuntimeError("compose/local/pom.xml does not pin <kafka.version>")
    return match.group(1)


def kafka_libs_dir() -> Path:
    """Folder holding Kafka's runtime jars for the pinned version."""
    return cache_root() / f"kafka-{kafka_version()}" / "libs"
