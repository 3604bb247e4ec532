"""The executor is composed of collaborators mypy checks, not mixins with stubs.

A class body that restates its host's attributes under ``if TYPE_CHECKING:`` is a
contract mypy never checks against the real class (../shared/STYLE.md, lesson 14).
"""

from __future__ import annotations

import ast
from pathlib import Path

import orchestrator
from orchestrator.engine.executor import WorkflowExecutor

PACKAGE = Path(orchestrator.__file__).parent


def _type_checking_blocks_in_classes(tree: ast.AST) -> list[str]:
    found = []
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            test = stmt.test if isinstance(stmt, ast.If) else None
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                found.append(f"{cls.name} (line {stmt.lineno})")
    return found


def test_no_class_restates_attributes_under_type_checking() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if (hits := _type_checking_blocks_in_classes(ast.parse(path.read_text())))
    }
    assert offenders == {}


def test_the_executor_has_no_base_class_but_object() -> None:
    assert WorkflowExecutor.__bases__ == (object,)


def test_the_detector_finds_a_stub() -> None:
    source = "class M:\n    if TYPE_CHECKING:\n        _x: int\n"
    assert _type_checking_blocks_in_classes(ast.parse(source)) == ["M (line 2)"]
