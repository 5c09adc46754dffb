"""What recording and exporting one traced request costs: warmgate's tracer against the
OpenTelemetry SDK doing the same spans.

``bench/overhead.py --tracing`` measures what tracing costs a whole gateway; this puts the
tracing work itself beside the SDK's, so that figure has a yardstick. Each "request" is the span
tree a traced no-op request makes in the gateway (``POST /noop``: its server span with the HTTP
attributes and request id, then ``auth``, ``execute local`` and ``encode``), started from the
incoming headers and exported over OTLP/HTTP protobuf to a receiver in another process:

* ``warmgate``: ``Tracer.begin`` and ``finish``, ``Trace.start`` and ``Span.end``, exported by
  ``OTLPExporter`` from its thread;
* ``otel-sdk``: ``TracerProvider`` with ``BatchSpanProcessor`` and ``OTLPSpanExporter``
  (opentelemetry-exporter-otlp-proto-http), the W3C propagator reading the headers, the server
  span by ``start_as_current_span``, the steps under it by ``start_span``; its queue raised so
  that it drops nothing (and once at its default, which does).

Both run in this one process, in alternating rounds (this VM drifts); each round gets a new
tracer and ends by shutting it down, so its CPU time (all threads, ``time.process_time``)
includes exporting every span it made. The receiver's CPU is its own process's.

Usage: ``python bench/tracing_cost.py [--requests 20000] [--rounds 5]``. A script, not a test.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

SCOPE: dict[str, Any] = {
    "type": "http", "method": "POST", "scheme": "http", "path": "/noop", "path_template": "/noop",
    "client": ("127.0.0.1", 50000),
    "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                (b"authorization", b"Bearer bench-key"), (b"content-length", b"36")],
}
FUNCTION = "noop:noop"
SPANS_PER_REQUEST = 4
QUEUE = 1 << 20
"""Spans (the SDK) or traces (warmgate) a tracer may queue: more than a round makes."""

RECEIVER = """
import sys, time
from warmgate.testing.otlp import OTLPReceiver
with OTLPReceiver(decode_spans=False) as receiver:
    print(receiver.endpoint, flush=True)
    sys.stdin.read()
"""


def warmgate_round(endpoint: str, requests: int) -> tuple[float, int]:
    """CPU seconds for ``requests`` traced requests with warmgate's tracer, export included,
    and the spans it exported."""
    from warmgate.core.context import RequestContext
    from warmgate.core.tracing.setup import TracerConfig, build_tracer

    tracer = build_tracer(TracerConfig(f"{endpoint}/v1/traces", 1.0, {}, 10.0, QUEUE,
                                       {"service.name": "bench"}))
    tracer.start()
    function = SimpleNamespace(name=FUNCTION)  # what the tracer reads of the request's function
    began = time.process_time()
    for number in range(requests):
        context = RequestContext(f"{number:032x}", 0.0)
        tracer.begin(SCOPE, context)
        trace = context.trace
        assert trace is not None
        trace.start("auth").end()
        trace.start("execute local", attributes={"warmgate.function": FUNCTION}).end()
        trace.start("encode").end()
        context.function = function  # type: ignore[assignment]
        tracer.finish(trace, SCOPE, context, 200)
    tracer.shutdown()
    spent = time.process_time() - began
    exporter = tracer.exporter
    if exporter.failures:
        sys.exit(f"error: {exporter.failures} of warmgate's posts failed")
    return spent, (requests - exporter.dropped) * SPANS_PER_REQUEST


def sdk_round(endpoint: str, requests: int, queue: int | None = QUEUE) -> tuple[float, int]:
    """CPU seconds for ``requests`` traced requests with the OpenTelemetry SDK, export included,
    and the spans it exported; ``queue=None``: the SDK's default queue (2048 spans), which
    drops spans when they come faster than it exports."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    exported: list[int] = []
    exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")
    export = exporter.export

    def counted(spans: Any) -> Any:
        exported.append(len(spans))
        return export(spans)

    exporter.export = counted  # type: ignore[method-assign]
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=queue) if queue else BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("warmgate")
    propagator = TraceContextTextMapPropagator()
    began = time.process_time()
    for number in range(requests):
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in SCOPE["headers"]}
        parent = propagator.extract(headers)
        client = SCOPE["client"]
        with tracer.start_as_current_span(SCOPE["method"], context=parent, kind=SpanKind.SERVER, attributes={
                "http.request.method": SCOPE["method"], "url.path": SCOPE["path"], "url.scheme": SCOPE["scheme"],
                "client.address": client[0], "warmgate.request_id": f"{number:032x}"}) as root:
            tracer.start_span("auth").end()  # children of the current span, the root, as warmgate's
            tracer.start_span("execute local", attributes={"warmgate.function": FUNCTION}).end()
            tracer.start_span("encode").end()
            root.update_name(f"{SCOPE['method']} {SCOPE['path_template']}")
            root.set_attribute("http.route", SCOPE["path_template"])
            root.set_attribute("http.response.status_code", 200)
            root.set_attribute("warmgate.function", FUNCTION)
    provider.shutdown()
    return time.process_time() - began, sum(exported)


ROUNDS: dict[str, Callable[[str, int], tuple[float, int]]] = {
    "warmgate": warmgate_round, "otel-sdk": sdk_round,
    "otel-sdk, default queue": lambda endpoint, requests: sdk_round(endpoint, requests, queue=None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000, help="traced requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each, alternating")
    args = parser.parse_args()
    logging.getLogger("opentelemetry.sdk").setLevel(logging.ERROR)  # its "Queue full" warnings: the table counts the drops
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:
        sys.exit("error: needs opentelemetry-exporter-otlp-proto-http (pip install -e '.[dev,otel]')")
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        endpoint = receiver.stdout.readline().strip()
        for run in ROUNDS.values():
            run(endpoint, min(2000, args.requests))  # warm up: imports, caches
        seconds: dict[str, list[float]] = {name: [] for name in ROUNDS}
        exported: dict[str, int] = dict.fromkeys(ROUNDS, 0)
        for round_ in range(args.rounds):
            for name in ROUNDS if round_ % 2 == 0 else list(ROUNDS)[::-1]:
                spent, spans = ROUNDS[name](endpoint, args.requests)
                seconds[name].append(spent)
                exported[name] += spans
    finally:
        receiver.communicate("")
    made = args.requests * SPANS_PER_REQUEST * args.rounds
    cost = {name: statistics.median(got) / args.requests * 1e6 for name, got in seconds.items()}
    print(f"{'tracer':24} {'CPU us/request':>15} {'us/span':>8} {'vs warmgate':>12} {'spans exported':>15}")
    print("-" * 78)
    for name, micros in cost.items():
        print(f"{name:24} {micros:15.1f} {micros / SPANS_PER_REQUEST:8.2f} {micros / cost['warmgate']:11.2f}x "
              f"{exported[name] / made:14.1%}")
    print(f"\n{args.requests} requests of {SPANS_PER_REQUEST} spans a round, median of {args.rounds} rounds; "
          "CPU of this process's threads, OTLP/HTTP export to a receiver in another process included")


if __name__ == "__main__":
    main()
