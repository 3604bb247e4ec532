"""The engine's view of run status: the public :mod:`orchestrator.status`, re-exported.

The engine imports the public API, never the reverse; this module keeps the engine's
older import path working for the modules that still use it.
"""

from __future__ import annotations

from orchestrator.status import TRANSITIONS, WorkflowStatus, is_transition_valid

__all__ = ["TRANSITIONS", "WorkflowStatus", "is_transition_valid"]
