"""pyproject.toml declares what the shipped code imports, and imports what it declares.

The shipped packages are those ``[tool.setuptools.packages.find]`` includes. Their
third-party imports (found with ``ast``, including imports inside functions and
``TYPE_CHECKING`` blocks) are mapped to distributions with
``importlib.metadata.packages_distributions`` and compared with ``[project]
dependencies``. A module the code imports only inside functions may come from an
optional extra instead, when ``OPTIONAL`` names it; so may one that whole modules of
an optional part import (``WHOLE_MODULES``).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

OPTIONAL = {
    "testcontainers": "docker",
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
    "aiohttp": "http",
    "aiokafka": "asyncio",
}
"""Modules imported only where an optional feature runs, and the extra declaring them."""

WHOLE_MODULES = {"psycopg", "psycopg_pool", "aiohttp", "aiokafka"}
"""Optional modules that whole modules of their part import at module level: the core
never loads those modules (tests/unit/test_extras.py runs it with them refused)."""


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def shipped_packages() -> list[str]:
    patterns = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({p.rstrip("*").rstrip(".") for p in patterns})


def imports() -> Iterator[tuple[str, Path, bool]]:
    """(top-level module, file, at module level?) for every absolute import shipped."""
    for package in shipped_packages():
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            top_level = {id(node) for node in tree.body}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    yield name.partition(".")[0], path, id(node) in top_level


def third_party() -> dict[str, list[tuple[Path, bool]]]:
    own = set(shipped_packages())
    found: dict[str, list[tuple[Path, bool]]] = {}
    for module, path, at_top in imports():
        if module in sys.stdlib_module_names or module in own:
            continue
        found.setdefault(module, []).append((path, at_top))
    return found


@functools.cache
def installed() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def distributions_of(module: str) -> set[str]:
    dists = installed().get(module)
    assert dists, f"{module!r} is imported but no installed distribution provides it"
    return {normal(d) for d in dists}


def provided(requirements: list[str]) -> set[str]:
    """The distributions these requirements install: each one, plus its extras' own."""
    names: set[str] = set()
    for text in requirements:
        req = Requirement(text)
        names.add(normal(req.name))
        for extra in req.extras:
            for dep in importlib.metadata.requires(req.name) or []:
                inner = Requirement(dep)
                if inner.marker is not None and inner.marker.evaluate({"extra": extra}):
                    names.add(normal(inner.name))
    return names


def test_every_third_party_import_is_declared_where_it_is_used() -> None:
    runtime = provided(PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    problems: list[str] = []
    for module, places in sorted(third_party().items()):
        dists = distributions_of(module)
        if dists & runtime:
            continue
        where = ", ".join(sorted({str(p.relative_to(ROOT)) for p, _ in places}))
        extra = OPTIONAL.get(module)
        if extra is None:
            problems.append(f"{module} ({where}) is not a runtime dependency")
        elif not dists & provided(extras.get(extra, [])):
            problems.append(f"{module} ({where}) is not in the {extra!r} extra")
        elif module not in WHOLE_MODULES and any(at_top for _, at_top in places):
            problems.append(f"{module} ({where}) is imported at module level but optional")
    assert not problems, "\n".join(problems)


def test_every_runtime_dependency_is_imported_by_the_shipped_code() -> None:
    imported: set[str] = set()
    for module in third_party():
        imported |= distributions_of(module)
    declared = {normal(Requirement(t).name) for t in PYPROJECT["project"]["dependencies"]}
    unused = sorted(declared - imported)
    assert not unused, f"declared but imported nowhere in {shipped_packages()}: {unused}"
