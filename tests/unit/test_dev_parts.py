"""``saga dev``'s parts that need no server: the module watch, the port book, the
admin token file, and the package data that carries the console."""

from __future__ import annotations

import os
import socket
import stat
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.dev.stack import admin_token
from orchestrator.dev.watch import ModuleWatch, module_files
from orchestrator.devstack.paths import REPO_ROOT
from orchestrator.devstack.persistent import PortBook


@pytest.fixture
def importable(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))


def touch_later(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000, before + 1_000_000))  # a coarse clock moves too


def test_the_watch_sees_a_module_and_a_package_change(importable: Path) -> None:
    (importable / "wmod_single.py").write_text("X = 1\n")
    package = importable / "wmod_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "flows.py").write_text("Y = 1\n")
    assert module_files("wmod_single") == [importable / "wmod_single.py"]
    assert module_files("wmod_pkg") == [package / "__init__.py", package / "flows.py"]
    assert module_files("no_such_module_here") == []

    watch = ModuleWatch(["wmod_single", "wmod_pkg"])
    assert watch.changed() == []
    touch_later(package / "flows.py", "Y = 2\n")
    assert watch.changed() == [package / "flows.py"]
    assert watch.changed() == []
    (package / "more.py").write_text("Z = 1\n")
    assert watch.changed() == [package / "more.py"]


def test_the_port_book_keeps_a_port_while_it_is_free(tmp_path: Path) -> None:
    book = PortBook(tmp_path / "ports.json")
    first = book.port("http")
    assert PortBook(tmp_path / "ports.json").port("http") == first
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        other = PortBook(tmp_path / "ports.json").port("http")
    assert other != first
    assert PortBook(tmp_path / "ports.json").port("http") == other


def test_the_admin_token_is_made_once_and_private(tmp_path: Path) -> None:
    path = admin_token(tmp_path / "state" / "http-token")
    token = path.read_text().strip()
    assert len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert admin_token(path).read_text().strip() == token


def test_the_console_ships_as_package_data() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    data = pyproject["tool"]["setuptools"]["package-data"]["orchestrator"]
    assert "http/console/*" in data
    shipped = {p.name for p in (REPO_ROOT / "orchestrator" / "http" / "console").iterdir()}
    assert {"index.html", "app.js", "style.css"} <= shipped
