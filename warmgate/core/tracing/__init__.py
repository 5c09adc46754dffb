"""OpenTelemetry traces: one per request, from the HTTP edge through a cold start to the engine.

Off unless an OTLP endpoint is configured (``tracing.endpoint`` or the ``OTEL_*`` variables);
then ``setup.make_tracer`` builds the tracer and the middleware gives each sampled request a
``Trace`` on its ``RequestContext``. Code that takes a step worth a span asks for one here: it
gets None, at the cost of a context-variable read, when the request is not traced. Nothing in
this module imports OpenTelemetry.
"""

from __future__ import annotations

from typing import Any

from warmgate.core.context import request_context
from warmgate.core.tracing.spans import CLIENT, INTERNAL, SERVER, Span, Trace

__all__ = ["CLIENT", "INTERNAL", "SERVER", "Span", "Trace", "branch", "outgoing_headers", "record_error", "start_span"]


def start_span(name: str, kind: int = INTERNAL, attributes: dict[str, Any] | None = None) -> Span | None:
    """A span started now under the current request's innermost open one; None when the
    request is not traced (or there is none). End it with ``end()``."""
    context = request_context.get()
    trace = context.trace if context is not None else None
    return trace.start(name, kind, attributes) if trace is not None else None


def branch(name: str, attributes: dict[str, Any] | None = None) -> Trace | None:
    """Spans for work the current request starts and outlives (``Trace.branch``); None: untraced."""
    context = request_context.get()
    trace = context.trace if context is not None else None
    return trace.branch(name, attributes) if trace is not None else None


def outgoing_headers() -> dict[str, str] | None:
    """``traceparent`` (and ``tracestate``) for a call made now to another server (an engine),
    so that it continues the request's trace under its innermost open span; for a request that
    is not sampled, its trace flagged not sampled (the server records nothing for it); None:
    tracing is off."""
    context = request_context.get()
    if context is None:
        return None
    trace = context.trace
    return trace.current.headers() if trace is not None else context.trace_headers


def record_error(reason: str) -> None:
    """Why the current request failed (its error body's message): the status message of the
    spans it leaves open."""
    context = request_context.get()
    if context is not None and context.trace is not None:
        context.trace.reason = reason
