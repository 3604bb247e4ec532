"""``saga worker --sagas`` discovery with versions: several versions of one type in one
module or in several are held side by side; the same name and version twice is a
DefinitionError naming both definitions."""

from __future__ import annotations

import pytest

from orchestrator.exceptions import DefinitionError
from orchestrator.worker.discovery import discover
from orchestrator.worker.engine_worker import definitions

ONE = "tests.unit.worker.versioned_module"
CLASH = "tests.unit.worker.versioned_clash"
V1 = "tests.integration.version_sagas_v1"
V2 = "tests.integration.version_sagas_v2"


def test_two_versions_in_one_module() -> None:
    found = discover([ONE]).workflows
    assert found.versions("unit.versioned") == (1, 2)
    assert found["unit.versioned"].version == 2


def test_two_versions_in_two_modules_and_a_module_named_twice() -> None:
    found = discover([V1, V2, V1]).workflows
    assert found.versions("ver.pay") == (1, 2) and found.versions("ver.nap") == (1, 2)
    assert found.describe() == ["ver.nap@v1,v2", "ver.pay@v1,v2", "ver.tick@v1,v2"]


def test_the_same_version_in_two_modules_is_refused() -> None:
    with pytest.raises(DefinitionError, match="version 2 is defined twice") as caught:
        discover([ONE, CLASH])
    assert "versioned_v2_again" in str(caught.value)


def test_an_engine_worker_holds_every_version_it_is_given() -> None:
    registry = definitions(discover([ONE]).workflows)
    assert registry.versions("unit.versioned") == (1, 2)
    assert [d.version for d in definitions(registry.all()).all()] == [1, 2]
