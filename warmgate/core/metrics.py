"""Prometheus metrics, one registry per app so several apps (tests) never collide.

Function state, queue depth and in-flight counts are read from the functions when ``/metrics``
is scraped, so serving a request updates no gauge; only loads and requests are counted live.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric, StateSetMetricFamily

from warmgate.core.functions import Function, FunctionState

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LOAD_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


class _FunctionCollector:
    """Reads state, queue depth and in-flight requests of every function at scrape time."""

    def __init__(self) -> None:
        self.functions: list[Function] = []

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        state = StateSetMetricFamily("warmgate_function_state", "Lifecycle state of each function.",
                                     labels=["function"])
        queued = GaugeMetricFamily("warmgate_queue_depth", "Requests waiting for a slot, per function.",
                                   labels=["function"])
        running = GaugeMetricFamily("warmgate_in_flight", "Requests running, per function.", labels=["function"])
        for fn in self.functions:
            state.add_metric([fn.name], {s.value: fn.state is s for s in FunctionState})
            queued.add_metric([fn.name], fn.waiting)
            running.add_metric([fn.name], fn.in_flight)
        yield from (state, queued, running)


class Metrics:
    """Request, function-state, cold-start, load-time and queue metrics; a FunctionObserver."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("warmgate_requests", "HTTP requests by route, method and status.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("warmgate_request_duration_seconds", "HTTP request latency by route and status.",
                                 ["route", "method", "status"], buckets=_LATENCY_BUCKETS, registry=r)
        self.cold_starts = Counter("warmgate_cold_starts", "Model loads (cold starts) per function.",
                                   ["function"], registry=r)
        self.load_seconds = Histogram("warmgate_load_seconds", "Seconds to load a function's model.",
                                      ["function"], buckets=_LOAD_BUCKETS, registry=r)
        self._functions = _FunctionCollector()
        r.register(self._functions)
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def track(self, functions: Iterable[Function]) -> None:
        self._functions.functions = list(functions)
        for fn in self._functions.functions:
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
        if new is FunctionState.LOADING:
            self.cold_starts.labels(fn.name).inc()

    def loaded(self, fn: Function, seconds: float) -> None:
        self.load_seconds.labels(fn.name).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
