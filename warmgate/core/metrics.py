"""Prometheus metrics, one registry per app so several apps (tests) never collide.

Serving a request must stay cheap, so the per-request numbers are plain Python counters read
when ``/metrics`` is scraped: function state, queue depth and in-flight requests come from the
functions themselves, and request counts and latencies from ``_RequestStats``. (prometheus-client's
own Counter and Histogram take a lock per sample, which cost more than the rest of the gateway's
request path; loads are rare and use them.)

Under ``serve --workers`` (``$PROMETHEUS_MULTIPROC_DIR`` set) every worker writes its numbers to
prometheus-client's per-process files and ``/metrics`` adds them up, whichever worker answers:
requests and latencies as counters and histograms, and each function's queue depth, requests in
flight and state (the number of workers whose function is in it) as gauges each worker samples
every second (``sample_forever``), and each runner of a remote function: its counts as counters
(each worker adds what it counted since its last sample), its requests in flight summed and its
warmth as the most any worker saw.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import os
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    StateSetMetricFamily,
)

from warmgate.core.functions.function import Function, FunctionState

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LOAD_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


_RUNNER_COUNTS = (
    ("requests", "Requests sent to each runner of a routed function."),
    ("failures", "Attempts that failed on each runner (refused, reset, timed out, 5xx, stream cut)."),
    ("retries", "Failed attempts on each runner that were tried again on another one."),
    ("cooldowns", "Times each runner was put in cooldown after failing in a row."),
)


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
        yield from _runner_metrics(self.functions)


def _runner_metrics(functions: list[Function]) -> Iterator[Metric]:
    """Per runner of a routed function: requests, failures, retries and cooldowns as counters,
    requests in flight and whether its model is warm as gauges."""
    labels = ["function", "runner"]
    counters = {name: CounterMetricFamily(f"warmgate_runner_{name}", text, labels=labels)
                for name, text in _RUNNER_COUNTS}
    in_flight = GaugeMetricFamily("warmgate_runner_in_flight", "Requests in flight per runner.", labels=labels)
    warm = GaugeMetricFamily("warmgate_runner_warm", "1 when the runner has the function's model warm.",
                             labels=labels)
    for fn in functions:
        for runner in fn.executor.runner_info() or ():
            values = [fn.name, runner.url]
            for name, family in counters.items():
                family.add_metric(values, getattr(runner, name))
            in_flight.add_metric(values, runner.in_flight)
            warm.add_metric(values, 1 if runner.warm else 0)
    yield from (*counters.values(), in_flight, warm)


class _Series:
    __slots__ = ("count", "total", "per_bucket")

    def __init__(self, buckets: int) -> None:
        self.count = 0
        self.total = 0.0
        self.per_bucket = [0] * buckets


class _RequestStats:
    """Request counts and a latency histogram per (route, method, status), event-loop only."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.series: dict[tuple[str, str, int], _Series] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        series = self.series.get((route, method, status))
        if series is None:
            series = self.series[(route, method, status)] = _Series(len(self.bounds) + 1)
        series.count += 1
        series.total += seconds
        series.per_bucket[bisect.bisect_left(self.bounds, seconds)] += 1

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        labels = ["route", "method", "status"]
        requests = CounterMetricFamily("warmgate_requests", "HTTP requests by route, method and status.",
                                       labels=labels)
        latency = HistogramMetricFamily("warmgate_request_duration_seconds",
                                        "HTTP request latency by route, method and status.", labels=labels)
        for (route, method, status), series in list(self.series.items()):
            values = [route, method, str(status)]
            requests.add_metric(values, series.count)
            cumulative = itertools.accumulate(series.per_bucket[:-1])
            buckets = [(repr(float(b)), float(c)) for b, c in zip(self.bounds, cumulative, strict=True)]
            latency.add_metric(values, [*buckets, ("+Inf", float(series.count))], sum_value=series.total)
        yield from (requests, latency)


class _WorkerMetrics:
    """This worker's share of the numbers, in prometheus-client's multiprocess files."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["route", "method", "status"]
        self.requests = Counter("warmgate_requests", "HTTP requests by route, method and status.", labels,
                                registry=registry)
        self.latency = Histogram("warmgate_request_duration_seconds", "HTTP request latency by route, method and "
                                 "status.", labels, buckets=_LATENCY_BUCKETS, registry=registry)
        self.state = Gauge("warmgate_function_state", "Workers whose function is in each lifecycle state.",
                           ["function", "state"], multiprocess_mode="livesum", registry=registry)
        self.queued = Gauge("warmgate_queue_depth", "Requests waiting for a slot, per function.", ["function"],
                            multiprocess_mode="livesum", registry=registry)
        self.running = Gauge("warmgate_in_flight", "Requests running, per function.", ["function"],
                             multiprocess_mode="livesum", registry=registry)
        labels = ["function", "runner"]
        self.runner_counts = {name: Counter(f"warmgate_runner_{name}", text, labels, registry=registry)
                              for name, text in _RUNNER_COUNTS}
        self.runner_in_flight = Gauge("warmgate_runner_in_flight", "Requests in flight per runner.", labels,
                                      multiprocess_mode="livesum", registry=registry)
        self.runner_warm = Gauge("warmgate_runner_warm", "1 when a worker sees the runner with the function's "
                                 "model warm.", labels, multiprocess_mode="livemax", registry=registry)
        self._counted: dict[tuple[str, str, str], int] = {}
        """What each runner counter held at the last sample: a sample adds what came since."""

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method, str(status)).observe(seconds)

    def sample(self, functions: list[Function]) -> None:
        for fn in functions:
            for state in FunctionState:
                self.state.labels(fn.name, state.value).set(1 if fn.state is state else 0)
            self.queued.labels(fn.name).set(fn.waiting)
            self.running.labels(fn.name).set(fn.in_flight)
            for runner in fn.executor.runner_info() or ():
                for name, _ in _RUNNER_COUNTS:
                    now, key = getattr(runner, name), (fn.name, runner.url, name)
                    if now > self._counted.get(key, 0):
                        self.runner_counts[name].labels(fn.name, runner.url).inc(now - self._counted.get(key, 0))
                        self._counted[key] = now
                self.runner_in_flight.labels(fn.name, runner.url).set(runner.in_flight)
                self.runner_warm.labels(fn.name, runner.url).set(1 if runner.warm else 0)


class Metrics:
    """Request, function-state, cold-start, load-time and queue metrics; a FunctionObserver."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cold_starts = Counter("warmgate_cold_starts", "Model loads (cold starts) per function.",
                                   ["function"], registry=r)
        self.load_seconds = Histogram("warmgate_load_seconds", "Seconds to load a function's model.",
                                      ["function"], buckets=_LOAD_BUCKETS, registry=r)
        self._functions = _FunctionCollector()
        self._worker = _WorkerMetrics(r) if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else None
        if self._worker is None:
            r.register(self._functions)
            self._requests = _RequestStats(_LATENCY_BUCKETS)
            r.register(self._requests)
        self.observe_request = self._requests.observe if self._worker is None else self._worker.observe
        """``observe_request(route, method, status, seconds)``, called once per HTTP request."""

    def track(self, functions: Iterable[Function]) -> None:
        self._functions.functions = list(functions)
        for fn in self._functions.functions:
            self.cold_starts.labels(fn.name)

    async def sample_forever(self, every: float = 1.0) -> None:
        """Under ``serve --workers``: write this worker's function gauges every ``every`` seconds."""
        if self._worker is None:
            return
        while True:
            self._worker.sample(self._functions.functions)
            await asyncio.sleep(every)

    # FunctionObserver
    def state_changed(self, fn: Function, old: FunctionState, new: FunctionState) -> None:
        if new is FunctionState.LOADING:
            self.cold_starts.labels(fn.name).inc()

    def loaded(self, fn: Function, seconds: float) -> None:
        self.load_seconds.labels(fn.name).observe(seconds)

    def render(self) -> bytes:
        if self._worker is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        self._worker.sample(self._functions.functions)  # this worker's, fresh; the others' of the last second
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged)
