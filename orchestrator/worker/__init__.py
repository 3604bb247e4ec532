"""Workers: the engine worker (shard processor) and the activity worker.

``EngineWorker`` runs workflow shards and ``ActivityWorker`` runs a task queue's
activities, each in a background thread of your process (``with worker:`` or
``start()``/``stop()``); ``saga worker`` runs both from the command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.lazy import lazy_attributes

if TYPE_CHECKING:
    from orchestrator.worker.activity_worker import ActivityWorker, ActivityWorkerOptions
    from orchestrator.worker.engine_worker import EngineWorker
    from orchestrator.worker.shard.processor_options import ProcessorOptions

__all__ = ["ActivityWorker", "ActivityWorkerOptions", "EngineWorker", "ProcessorOptions"]

# imported on first use: importing one submodule must not load every worker
_MODULES = {
    "ActivityWorker": "orchestrator.worker.activity_worker",
    "ActivityWorkerOptions": "orchestrator.worker.activity_worker",
    "EngineWorker": "orchestrator.worker.engine_worker",
    "ProcessorOptions": "orchestrator.worker.shard.processor_options",
}


__getattr__ = lazy_attributes(__name__, _MODULES)
