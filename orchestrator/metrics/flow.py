"""Metrics of a flow-control dispatcher (``saga dispatcher --metrics-port``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from orchestrator.serde.records import FlowState


class FlowMetrics:
    """One dispatcher process's flow-control families, in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.waiting = Gauge(
            "saga_flow_waiting",
            "Tasks of a flow-controlled queue waiting in its dispatcher, by priority and key.",
            ["queue", "priority", "key"], registry=registry,
        )  # fmt: skip
        self.released = Counter(
            "saga_flow_released",
            "Tasks a dispatcher released to the workers, by fairness key.",
            ["queue", "key"], registry=registry,
        )  # fmt: skip
        self.throttled = Counter(
            "saga_flow_throttled",
            "Dispatch cycles a rate limit held waiting tasks back: key '' is the queue's "
            "limit, any other a key's.",
            ["queue", "key"], registry=registry,
        )  # fmt: skip
        self.window_full = Counter(
            "saga_flow_window_full",
            "Dispatch cycles that released nothing more because the window of unstarted "
            "released tasks was full.",
            ["queue"], registry=registry,
        )  # fmt: skip
        self.unstarted = Gauge(
            "saga_flow_unstarted",
            "Released tasks the workers have not finished, as the dispatcher last measured.",
            ["queue"], registry=registry,
        )  # fmt: skip
        self._last: dict[str, FlowState] = {}

    def observe(self, state: FlowState) -> None:
        """Update from a state the dispatcher committed (counters by difference)."""
        q = state.queue
        last = self._last.get(q)
        for key, n in state.released_keys.items():
            before = last.released_keys.get(key, 0) if last else 0
            if n > before:
                self.released.labels(q, key).inc(n - before)
        for key, n in state.throttled_keys.items():
            before = last.throttled_keys.get(key, 0) if last else 0
            if n > before:
                self.throttled.labels(q, key).inc(n - before)
        before = last.throttled if last else 0
        if state.throttled > before:
            self.throttled.labels(q, "").inc(state.throttled - before)
        before = last.window_full if last else 0
        if state.window_full > before:
            self.window_full.labels(q).inc(state.window_full - before)
        if last is not None:
            for gone in set(last.waiting) - set(state.waiting):
                priority, _, key = gone.partition("/")
                self.waiting.labels(q, priority, key).set(0)
        for label, n in state.waiting.items():
            priority, _, key = label.partition("/")
            self.waiting.labels(q, priority, key).set(n)
        self.unstarted.labels(q).set(state.unstarted)
        self._last[q] = state
