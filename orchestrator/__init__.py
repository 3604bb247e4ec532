"""Durable-execution saga orchestrator for Python, on Kafka.

Saga code imports :mod:`orchestrator.workflow` and :mod:`orchestrator.activity`;
outside callers use :mod:`orchestrator.client`; unit tests use
:mod:`orchestrator.testing`. :mod:`orchestrator.status` holds the one run-status
enum that the workflow and client modules both export. Everything else is internal.
"""

__version__ = "0.1.0"
