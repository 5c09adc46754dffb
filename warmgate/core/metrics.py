"""Prometheus metrics, one registry per app so several apps (tests) never collide."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import Enum as StateMetric

from warmgate.core.functions import Function, FunctionState

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LOAD_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    """Request, function-state, cold-start, load-time and queue metrics; a FunctionObserver."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("warmgate_requests", "HTTP requests by route, method and status.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("warmgate_request_duration_seconds", "HTTP request latency by route and status.",
                                 ["route", "method", "status"], buckets=_LATENCY_BUCKETS, registry=r)
        self.function_state = StateMetric("warmgate_function_state", "Lifecycle state of each function.",
                                          ["function"], states=[s.value for s in FunctionState], registry=r)
        self.cold_starts = Counter("warmgate_cold_starts", "Model loads (cold starts) per function.",
                                   ["function"], registry=r)
        self.load_seconds = Histogram("warmgate_load_seconds", "Seconds to load a function's model.",
                                      ["function"], buckets=_LOAD_BUCKETS, registry=r)
        self.queue_depth = Gauge("warmgate_queue_depth", "Requests waiting for a slot, per function.",
                                 ["function"], registry=r)
        self.in_flight = Gauge("warmgate_in_flight", "Requests running, per function.", ["function"], registry=r)
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def track(self, functions: Iterable[Function]) -> None:
        for fn in functions:
            self.function_state.labels(fn.name).state(fn.state.value)
            self.queue_depth.labels(fn.name).set(0)
            self.in_flight.labels(fn.name).set(0)
            self.cold_starts.labels(fn.name)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = self._request_children[key] = (self.requests.labels(*labels), self.latency.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)

    # FunctionObserver
    def state_changed(self, fn: Function, old: FunctionState, new: FunctionState) -> None:
        self.function_state.labels(fn.name).state(new.value)
        if new is FunctionState.LOADING:
            self.cold_starts.labels(fn.name).inc()

    def loaded(self, fn: Function, seconds: float) -> None:
        self.load_seconds.labels(fn.name).observe(seconds)

    def queue_changed(self, fn: Function) -> None:
        self.queue_depth.labels(fn.name).set(fn.waiting)
        self.in_flight.labels(fn.name).set(fn.in_flight)

    def render(self) -> bytes:
        return generate_latest(self.registry)
