"""The workflow definitions a worker holds, by type name and version.

A worker may hold several versions of one workflow type side by side. New runs start
on the newest; a run records the version it started on (``WorkflowStarted``) and is
replayed with that version and no other. Read as a mapping, the registry maps each
type name to its newest version, so "does this worker know the type" stays a
membership test.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from orchestrator.engine import events as ev
from orchestrator.exceptions import DefinitionError
from orchestrator.workflow import WorkflowDefinition, definition_of


class WorkflowRegistry(Mapping[str, WorkflowDefinition]):
    """Workflow definitions by (name, version); as a mapping, name -> newest version."""

    def __init__(self, workflows: Iterable[Any] = ()) -> None:
        """``workflows``: decorated functions or classes, or definitions. The same name
        and version twice is a DefinitionError (the same definition twice is not)."""
        self._by_name: dict[str, dict[int, WorkflowDefinition]] = {}
        for item in workflows:
            self.add(item)

    def add(self, workflow: Any) -> WorkflowDefinition:
        """Hold one more definition; a different one with the same name and version is
        refused, since runs of that version could no longer tell which to replay."""
        definition = definition_of(workflow)
        versions = self._by_name.setdefault(definition.name, {})
        known = versions.get(definition.version)
        if known is not None and known is not definition:
            raise DefinitionError(
                definition.name,
                [f"version {definition.version} is defined twice ({_where(known)} and "
                 f"{_where(definition)})"],
            )
        versions[definition.version] = definition
        return definition

    def get_version(self, name: str, version: int | None = None) -> WorkflowDefinition | None:
        """Version ``version`` of type ``name`` (None: the newest), None if not held."""
        versions = self._by_name.get(name)
        if not versions:
            return None
        if version is None:
            return versions[max(versions)]
        return versions.get(version)

    def newest_version(self, name: str) -> int | None:
        """The newest version of ``name`` held, None when the type is unknown."""
        versions = self._by_name.get(name)
        return max(versions) if versions else None

    def versions(self, name: str) -> tuple[int, ...]:
        """The versions of ``name`` held, oldest first (empty when the type is unknown)."""
        return tuple(sorted(self._by_name.get(name, ())))

    def held(self) -> frozenset[tuple[str, int]]:
        """Every (name, version) held."""
        return frozenset((n, v) for n, versions in self._by_name.items() for v in versions)

    def all(self) -> list[WorkflowDefinition]:
        """Every definition held, by name, oldest version first."""
        return [self._by_name[n][v] for n in sorted(self._by_name) for v in self.versions(n)]

    def describe(self) -> list[str]:
        """``name`` or ``name@v1,v2`` per type, for logs and refusals."""
        out = []
        for name in sorted(self._by_name):
            held = self.versions(name)
            out.append(name if held == (1,) else f"{name}@v{',v'.join(map(str, held))}")
        return out

    def __getitem__(self, name: str) -> WorkflowDefinition:
        found = self.get_version(name)
        if found is None:
            raise KeyError(name)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


def _where(definition: WorkflowDefinition) -> str:
    target: Any = definition.cls if definition.cls is not None else definition.run
    module = getattr(target, "__module__", "?")
    return f"{module}.{getattr(target, '__qualname__', '?')}"


def pinned_version(events: Sequence[ev.Event]) -> int | None:
    """The version a run's history is pinned to (its WorkflowStarted's), None when the
    history does not begin with one (a new run, not started yet)."""
    first = events[0] if events else None
    return first.workflow_version if isinstance(first, ev.WorkflowStarted) else None


def missing_version(registry: WorkflowRegistry, name: str, version: int | None) -> str:
    """Why a run of ``name`` pinned to ``version`` cannot be driven by this worker."""
    held = registry.versions(name)
    if not held:
        return f"unknown workflow type {name!r}"
    have = ", ".join(f"v{v}" for v in held)
    return (
        f"waiting for version {version} of workflow type {name!r}, which this worker "
        f"does not hold (it holds {have}); it resumes when a worker holding it owns the shard"
    )


def registry_of(workflows: Iterable[Any] | Mapping[str, WorkflowDefinition]) -> WorkflowRegistry:
    """``workflows`` as a registry (itself when it already is one)."""
    if isinstance(workflows, WorkflowRegistry):
        return workflows
    if isinstance(workflows, Mapping):
        return WorkflowRegistry(workflows.values())
    return WorkflowRegistry(workflows)
