"""Find the workflows (and activities) defined in saga modules."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.engine.registry import WorkflowRegistry
from orchestrator.exceptions import DefinitionError
from orchestrator.workflow import definition_of

_ACTIVITY_ATTR = "__activity_definition__"


@dataclass
class Discovered:
    """Workflow definitions by type name and version, and decorated activity callables."""

    workflows: WorkflowRegistry = field(default_factory=WorkflowRegistry)
    activities: list[Any] = field(default_factory=list)


def discover(module_names: Iterable[str]) -> Discovered:
    """Import each module and collect what ``@workflow.defn`` / ``@activity.defn`` marked."""
    found = Discovered()
    for name in module_names:
        module = importlib.import_module(name)
        for value in vars(module).values():
            try:
                definition = definition_of(value)
            except DefinitionError:
                is_activity = callable(value) and hasattr(value, _ACTIVITY_ATTR)
                if is_activity and value not in found.activities:
                    found.activities.append(value)
                continue
            # several versions of one type (in one module or several) are held side by
            # side; the same name and version twice is a DefinitionError
            found.workflows.add(definition)
    return found
