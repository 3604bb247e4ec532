"""Long-running operations across deployments (docs/operations-api.md).

A saga calls an operation of another service with ``ctx.execute_operation`` (the
built-in activities of :mod:`orchestrator.operations.activities` start and cancel it;
the handler's signed callback reaches the run through ``saga http``). A deployment
exposes its own sagas as operations through ``saga http`` and the built-in handler
workflow (:mod:`orchestrator.operations.handler`). Between two deployments on Kafka,
the same calls travel as commands on each other's topics
(:mod:`orchestrator.operations.kafka_binding`).
"""

from orchestrator.operations.config import (
    CONFIG_ENV,
    CallerEntry,
    Endpoint,
    OperationHandler,
    OperationsConfig,
    load_config,
)

__all__ = [
    "CONFIG_ENV",
    "CallerEntry",
    "Endpoint",
    "OperationHandler",
    "OperationsConfig",
    "load_config",
]
