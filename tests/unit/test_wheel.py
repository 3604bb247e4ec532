"""What ``pip install saga-orchestrator`` puts into a user's environment.

The wheel is built from a copy of the sources (so no build files land in the
checkout) with ``pip wheel --no-deps``; pip fetches the build backend from PyPI, or
from its cache. Its top level must be the ``orchestrator`` package and its metadata
only: no generic top-level names (``sagas``, ``connectors``), no demo, no demo bank.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("orchestrator", "sagas"):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=110, check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (built,) = out.glob("saga_orchestrator-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_installs_the_orchestrator_package_and_nothing_beside_it(
    wheel: zipfile.ZipFile,
) -> None:
    names = wheel.namelist()
    top = {n.split("/")[0] for n in names}
    assert top == {"orchestrator", next(t for t in top if t.endswith(".dist-info"))}
    assert not [n for n in names if n.startswith("orchestrator/devstack/bank/")]
    assert "orchestrator/demo.py" not in names
    for shipped in (
        "orchestrator/py.typed",
        "orchestrator/connectors/http/__init__.py",
        "orchestrator/connectors/schemas/payments.transfer-event.v1.avsc",
        "orchestrator/devstack/persistent.py",  # saga dev runs Kafka and PostgreSQL with it
        "orchestrator/http/console/index.html",
    ):
        assert shipped in names, shipped
    assert [n for n in names if n.startswith("orchestrator/serde/schemas/") and n.endswith(".avsc")]


def test_the_heavy_parts_are_extras(wheel: zipfile.ZipFile) -> None:
    meta_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(wheel.read(meta_name).decode())
    requires = meta.get_all("Requires-Dist") or []
    core = [r for r in requires if "extra ==" not in r]
    assert not [r for r in core if r.startswith(("psycopg", "aiohttp", "aiokafka"))], core
    assert {"postgres", "http", "asyncio", "all"} <= set(meta.get_all("Provides-Extra") or [])

    def extra(name: str) -> set[str]:
        return {r.split("[")[0].split(">")[0].strip() for r in requires
                if f'extra == "{name}"' in r}

    assert extra("postgres") == {"psycopg"}
    assert extra("asyncio") == {"aiokafka"}
    assert extra("http") == {"aiohttp", "aiokafka", "psycopg"}
    assert extra("all") >= extra("postgres") | extra("asyncio") | extra("http")
    entry = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert "saga = orchestrator.cli:main" in wheel.read(entry).decode()
