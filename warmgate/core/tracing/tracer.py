"""The gateway's tracer: which requests are traced, their server spans, and model loads.

A request is traced when its caller's ``traceparent`` says it is sampled, or, without one, when
its new trace id falls under ``sample_ratio`` (OpenTelemetry's parent-based trace-id-ratio
sampler). Its server span follows the HTTP semantic conventions and continues the caller's
trace; a model load is a trace of its own, which every request that waited for it links to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from warmgate.core.tracing.spans import SERVER, Span, Trace, new_span_id, new_trace_id

if TYPE_CHECKING:
    from warmgate.core.context import RequestContext
    from warmgate.core.functions.function import Function, FunctionObserver, FunctionState
    from warmgate.core.tracing.export import OTLPExporter

__all__ = ["LoadObserver", "Tracer"]

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def parse_traceparent(value: str) -> tuple[int, int, bool] | None:
    """(trace id, parent span id, sampled) of a W3C ``traceparent``, or None when it is not one
    (then the request starts a trace of its own, as the spec says)."""
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return int(trace_id, 16), int(span_id, 16), bool(int(flags, 16) & 1)


class Tracer:
    """Starts and finishes traced requests and hands their spans to the exporter."""

    def __init__(self, exporter: OTLPExporter, sample_ratio: float) -> None:
        self.exporter = exporter
        self.sample_ratio = sample_ratio
        self._bound = round(sample_ratio * 2**64)
        self.loads: dict[str, Trace] = {}
        """The trace of each function's current or last model load."""

    def _sampled(self, trace_id: int) -> bool:
        return (trace_id & 0xFFFFFFFFFFFFFFFF) < self._bound  # the SDK's TraceIdRatioBased, on the low 64 bits

    def begin(self, scope: dict[str, Any], context: RequestContext) -> None:
        """Give the request its trace, with its server span started, when it is sampled; else
        the ``traceparent`` it sends on, flagged not sampled (its caller's, or one of its own).
        Either way its trace id goes into its log line."""
        parent = incoming = tracestate = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                incoming = value.decode("latin-1")
                parent = parse_traceparent(incoming)
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
        if parent is None:  # a trace of its own, kept by the ratio (decided before anything is built)
            trace_id, parent_id, tracestate = new_trace_id(), 0, ""
            sampled = self._sampled(trace_id)
        else:
            trace_id, parent_id, sampled = parent
        context.log_fields["trace_id"] = f"{trace_id:032x}"
        if not sampled:
            if parent is None:
                context.trace_headers = {"traceparent": f"00-{trace_id:032x}-{new_span_id():016x}-00"}
            else:  # not recorded here: passed on as it came (W3C trace context)
                context.trace_headers = {"traceparent": incoming, "tracestate": tracestate} if tracestate \
                    else {"traceparent": incoming}  # type: ignore[dict-item]
            return
        method = scope["method"]
        attributes = {"http.request.method": method, "url.path": scope["path"], "url.scheme": scope["scheme"]}
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
        trace = context.trace = Trace(self.exporter.submit, method, kind=SERVER, attributes=attributes,
                                      trace_id=trace_id, parent_id=parent_id, tracestate=tracestate or "")
        trace.request_id = context.request_id

    def continued(self, name: str, headers: Mapping[str, str]) -> Trace | None:
        """A trace carried here in ``headers`` (``traceparent``, ``tracestate``) by another
        process that is not HTTP (a Ray replica's call), or None when it is not sampled."""
        parent = parse_traceparent(headers.get("traceparent", ""))
        if parent is None or not parent[2]:
            return None
        return Trace(self.exporter.submit, name, kind=SERVER, trace_id=parent[0], parent_id=parent[1],
                     tracestate=headers.get("tracestate", ""))

    def finish(self, trace: Trace, scope: dict[str, Any], context: RequestContext, status: int) -> None:
        """Name the server span by its route, record the answer (and an LLM call's usage) and export."""
        root = trace.root
        route = scope.get("path_template")
        if route:
            root.name = f"{scope['method']} {route}"
            root.attributes["http.route"] = route
        attributes = root.attributes
        attributes["http.response.status_code"] = status
        if status >= 500:  # a 4xx is the client's: the server span stays unset (HTTP semantic conventions)
            attributes["error.type"] = str(status)
            root.error = trace.reason or f"HTTP {status}"
        elif status >= 400 and trace.reason is None:
            trace.reason = f"HTTP {status}"
        fn = context.function
        if fn is not None:
            attributes["warmgate.function"] = fn.name
        llm = context.log_fields.get("llm")
        if llm is not None:
            attributes["gen_ai.request.model"] = llm["model"]
            usage = context.usage
            if usage.prompt_tokens is not None:
                attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            if usage.completion_tokens is not None:
                attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
        trace.finish()

    def load_started(self, fn: Function) -> None:
        """A load is a trace of its own, sampled as a new request's trace is."""
        config = fn.config
        trace_id = new_trace_id()
        if not self._sampled(trace_id):
            self.loads.pop(fn.name, None)
            return
        self.loads[fn.name] = Trace(self.exporter.submit, f"load {fn.name}", trace_id=trace_id, attributes={
            "warmgate.function": fn.name, "warmgate.model_id": config.model_id, "warmgate.executor": config.executor})

    def load_ended(self, fn: Function, failed: bool) -> None:
        trace = self.loads.get(fn.name)
        if trace is None or trace.root.end_ns:
            return
        if failed:
            trace.reason = trace.root.error = fn.last_error or "the load failed"
        trace.finish()

    def waited(self, span: Span, fn: Function) -> None:
        """Link a request's wait for ``fn`` to the load it waited for, if one ended (or runs) meanwhile."""
        load = self.loads.get(fn.name)
        if load is not None and (not load.root.end_ns or load.root.end_ns >= span.start_ns):
            span.link(load.root)

    def observe(self, inner: FunctionObserver) -> LoadObserver:
        return LoadObserver(self, inner)

    def start(self) -> None:
        """Export from a thread (no event loop at hand: a Ray replica's constructor)."""
        self.exporter.start()

    def start_in_loop(self) -> None:
        """Export from a task on the running event loop (a gateway)."""
        self.exporter.start_in_loop()

    def shutdown(self) -> None:
        self.exporter.shutdown()

    async def aclose(self) -> None:
        await self.exporter.aclose()


class LoadObserver:
    """A function observer that adds load spans to another one's work (the metrics)."""

    def __init__(self, tracer: Tracer, inner: FunctionObserver) -> None:
        self._tracer = tracer
        self._inner = inner

    def state_changed(self, fn: Function, old: FunctionState, new: FunctionState) -> None:
        self._inner.state_changed(fn, old, new)
        if new.value == "loading":
            self._tracer.load_started(fn)
        elif old.value == "loading":
            self._tracer.load_ended(fn, failed=new.value == "error")

    def loaded(self, fn: Function, seconds: float) -> None:
        self._inner.loaded(fn, seconds)
