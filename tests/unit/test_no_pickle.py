"""Nothing in the shipped code deserializes with pickle, marshal, eval/exec or unsafe YAML.

Records come from Kafka, where anyone with produce rights can write anything; a
single ``pickle.loads`` on such bytes is remote code execution. The scan walks the
syntax tree of every module (comments and strings cannot trigger it).
"""

from __future__ import annotations

import ast
from pathlib import Path

from orchestrator.devstack.paths import REPO_ROOT

SCANNED = ("orchestrator", "sagas")
BANNED_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"}
BANNED_CALLS = {"eval", "exec", "compile", "__import__"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}


def _python_files() -> list[Path]:
    files = [p for top in SCANNED for p in sorted((REPO_ROOT / top).rglob("*.py"))]
    assert len(files) > 20, f"the scan found too few modules under {SCANNED}: {files}"
    return files


def _yaml_load_is_unsafe(call: ast.Call) -> bool:
    loader = next((kw.value for kw in call.keywords if kw.arg == "Loader"), None)
    if loader is None and len(call.args) > 1:
        loader = call.args[1]
    name = loader.attr if isinstance(loader, ast.Attribute) else getattr(loader, "id", None)
    return name not in SAFE_YAML_LOADERS


def problems_in(source: str, where: str) -> list[str]:
    """Every banned import or call in ``source``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, where)):
        if isinstance(node, ast.Import):
            found += [
                f"{where}:{node.lineno}: import {a.name}"
                for a in node.names
                if a.name.split(".")[0] in BANNED_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in BANNED_MODULES:
                found.append(f"{where}:{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in BANNED_CALLS:
                found.append(f"{where}:{node.lineno}: {func.id}()")
            elif isinstance(func, ast.Attribute):
                owner = getattr(func.value, "id", None)
                if owner == "yaml" and func.attr in {"load", "load_all", "unsafe_load"}:
                    if func.attr == "unsafe_load" or _yaml_load_is_unsafe(node):
                        found.append(f"{where}:{node.lineno}: yaml.{func.attr} without SafeLoader")
                elif owner in BANNED_MODULES:
                    found.append(f"{where}:{node.lineno}: {owner}.{func.attr}()")
                elif owner == "builtins" and func.attr in BANNED_CALLS:
                    found.append(f"{where}:{node.lineno}: builtins.{func.attr}()")
    return found


def test_no_unsafe_deserialization_in_shipped_code() -> None:
    found: list[str] = []
    for path in _python_files():
        found += problems_in(path.read_text(), str(path.relative_to(REPO_ROOT)))
    assert not found, "unsafe deserialization:\n" + "\n".join(found)


def test_the_scan_catches_what_it_bans() -> None:
    bad = """
import pickle
from marshal import loads
import yaml
pickle.loads(b"")
eval("1")
exec("x = 1")
yaml.load(text)
yaml.load(text, Loader=yaml.FullLoader)
yaml.unsafe_load(text)
"""
    good = """
import yaml, json
yaml.safe_load(text)
yaml.load(text, Loader=yaml.SafeLoader)
json.loads("{}")
"the word pickle.loads in a string is harmless"
"""
    assert len(problems_in(bad, "bad.py")) == 8
    assert problems_in(good, "good.py") == []
