"""Notice when a sagas module's source files change (polling their modification times)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ModuleWatch", "module_files"]


def module_files(module: str) -> list[Path]:
    """The source files of ``module`` (every ``.py`` under a package), found without
    importing it; empty when it cannot be found (the worker reports that)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return sorted(
            p for folder in spec.submodule_search_locations for p in Path(folder).rglob("*.py")
        )
    return [Path(spec.origin)] if spec.origin and spec.origin.endswith(".py") else []


class ModuleWatch:
    """The modification times of the modules' files; :meth:`changed` says when they move."""

    def __init__(self, modules: Iterable[str]) -> None:
        self._modules = tuple(modules)
        self._seen = self._stamp()

    def _stamp(self) -> dict[Path, int]:
        stamps: dict[Path, int] = {}
        for module in self._modules:
            for path in module_files(module):
                try:
                    stamps[path] = path.stat().st_mtime_ns
                except OSError:
                    continue  # removed between the listing and the stat
        return stamps

    def changed(self) -> list[Path]:
        """Files added, removed or modified since the last call (or construction)."""
        now = self._stamp()
        moved = [p for p in now.keys() | self._seen.keys() if now.get(p) != self._seen.get(p)]
        self._seen = now
        return sorted(moved)
