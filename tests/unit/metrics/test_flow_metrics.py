"""The dispatcher's metrics follow the states it commits: counters by difference."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from orchestrator.metrics.flow import FlowMetrics
from orchestrator.serde.records import FlowState


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_counters_and_gauges_follow_the_states() -> None:
    registry = CollectorRegistry()
    metrics = FlowMetrics(registry)
    base = {"queue": "q", "time_ms": 0, "low": 0, "position": 0}
    metrics.observe(FlowState(**base, released=3, released_keys={"a": 3}, throttled=2,
                              throttled_keys={"a": 1}, waiting={"0/a": 5, "9/b": 1},
                              unstarted=4))  # fmt: skip
    metrics.observe(FlowState(**base, released=7, released_keys={"a": 5, "b": 2}, throttled=2,
                              throttled_keys={"a": 1}, waiting={"0/a": 3}, window_full=1,
                              unstarted=2))  # fmt: skip
    assert _value(registry, "saga_flow_released_total", queue="q", key="a") == 5
    assert _value(registry, "saga_flow_released_total", queue="q", key="b") == 2
    assert _value(registry, "saga_flow_throttled_total", queue="q", key="") == 2
    assert _value(registry, "saga_flow_throttled_total", queue="q", key="a") == 1
    assert _value(registry, "saga_flow_window_full_total", queue="q") == 1
    assert _value(registry, "saga_flow_waiting", queue="q", priority="0", key="a") == 3
    assert _value(registry, "saga_flow_waiting", queue="q", priority="9", key="b") == 0
    assert _value(registry, "saga_flow_unstarted", queue="q") == 2
