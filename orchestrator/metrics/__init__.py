"""Prometheus metrics of the orchestrator's processes.

Each process makes one :class:`SagaMetrics` (its own ``CollectorRegistry``, never
the global one, so tests and several workers in one interpreter do not clash) and
hands its parts to what it runs: :attr:`SagaMetrics.engine` to the engine worker,
:attr:`SagaMetrics.activities` to activity workers; ``saga http`` uses
:class:`HttpMetrics`. :func:`serve` exposes a registry on ``/metrics``.
Every metric is listed in docs/operations.md (Metrics).
"""

from __future__ import annotations

import functools

from prometheus_client import CollectorRegistry, Counter, ProcessCollector

from orchestrator.metrics.activities import ActivityMetrics
from orchestrator.metrics.engine import EngineMetrics, ShardGauges
from orchestrator.metrics.http_api import HttpMetrics
from orchestrator.metrics.reasons import DLQ_REASONS, dlq_reason_label
from orchestrator.metrics.server import MetricsServer, serve

__all__ = [
    "DLQ_REASONS",
    "ActivityMetrics",
    "EngineMetrics",
    "HttpMetrics",
    "MetricsServer",
    "SagaMetrics",
    "ShardGauges",
    "dlq_reason_label",
    "metric_names",
    "serve",
]


class SagaMetrics:
    """One process's metrics: a registry with the process collector, and the engine's
    and activity workers' families, created when first asked for."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.dead_letters = Counter(
            "saga_dead_letters",
            "Records sent to the DLQ, by who refused them (engine, activity_worker) and why.",
            ["source", "reason"],
            registry=self.registry,
        )

    @functools.cached_property
    def engine(self) -> EngineMetrics:
        return EngineMetrics(self.registry, self.dead_letters)

    @functools.cached_property
    def activities(self) -> ActivityMetrics:
        return ActivityMetrics(self.registry, self.dead_letters)


def metric_names() -> set[str]:
    """Every sample name the orchestrator can export (``_total``, ``_bucket``,
    ``_sum``, ``_count`` included), for checking dashboards and alert rules."""
    metrics = SagaMetrics()
    metrics.engine.watch_processor(_Zero())
    _ = metrics.activities
    HttpMetrics(metrics.registry)
    names: set[str] = set()
    for family in metrics.registry.collect():
        base = family.name
        if family.type == "counter":
            names |= {base + "_total", base + "_created"}
        elif family.type == "histogram":
            names |= {base + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(base)
    return names


class _Zero:
    records_in = records_out = forwarded = aborted = stuck_fenced = transactions = 0
