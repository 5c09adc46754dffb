"""Spans as plain objects: what one trace records while it runs, exported when it ends.

The OpenTelemetry SDK's spans, recorded and exported over OTLP, cost about 90 µs of CPU each on
the machine this was measured on (``bench/tracing_cost.py``): a traced no-op request's four
would cost more than the gateway's whole work for it. These record a name, two clocks and a few
attributes, ``wire`` encodes a finished trace into OTLP's protobuf bytes, and ``export`` posts
them in the background: about 4 µs a span, all told, on the same machine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CLIENT", "INTERNAL", "SERVER", "Span", "Trace", "traceparent"]

INTERNAL, SERVER, CLIENT = 1, 2, 3
"""OTLP's ``SpanKind`` values."""

_random_bits = random.getrandbits  # W3C asks for random ids, not secret ones; reseeded in forked workers


def new_span_id() -> int:
    return _random_bits(64) or 1


def new_trace_id() -> int:
    return _random_bits(128) or 1


def traceparent(trace_id: int, span_id: int) -> str:
    """The W3C ``traceparent`` of a sampled span."""
    return f"00-{trace_id:032x}-{span_id:016x}-01"


class Span:
    """One timed step of a trace. ``end()`` is idempotent; a span still open when its trace
    finishes is ended then (with the request's error, if it failed). A span does not point back
    at its ``Trace`` (only at the trace's list of open spans, empty once it finishes), so a
    finished trace is freed by reference counting, not left to the cyclic garbage collector."""

    __slots__ = ("_open", "attributes", "end_ns", "error", "events", "kind", "links", "name", "parent_id",
                 "span_id", "start_ns", "trace_id", "tracestate")

    def __init__(self, trace: Trace, name: str, parent_id: int, kind: int = INTERNAL,
                 attributes: dict[str, Any] | None = None) -> None:
        self.trace_id = trace.trace_id
        self.tracestate = trace.tracestate
        self._open = trace._open
        self.name = name
        self.span_id = new_span_id()
        self.parent_id = parent_id
        self.kind = kind
        self.attributes = attributes if attributes is not None else {}
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.error: str | None = None
        """Set: the span's status is ERROR, with this as its message."""
        self.events: list[tuple[str, int, dict[str, Any] | None]] | None = None
        self.links: list[tuple[int, int]] | None = None

    def set(self, key: str, value: Any) -> None:
        if value is not None:
            self.attributes[key] = value

    def event(self, name: str, attributes: dict[str, Any] | None = None) -> None:
        if self.events is None:
            self.events = []
        self.events.append((name, time.time_ns(), attributes))

    def link(self, other: Span) -> None:
        """Point at a span of another trace (a model load this request waited for)."""
        if self.links is None:
            self.links = []
        self.links.append((other.trace_id, other.span_id))

    def fail(self, reason: str) -> None:
        self.error = reason

    def end(self) -> None:
        if not self.end_ns:
            self.end_ns = time.time_ns()
            stack = self._open
            if stack and stack[-1] is self:
                stack.pop()
            elif self in stack:
                stack.remove(self)

    @property
    def traceparent(self) -> str:
        """What an outgoing request made inside this span sends, so its server continues the trace."""
        return traceparent(self.trace_id, self.span_id)

    def headers(self) -> dict[str, str]:
        """``traceparent`` and, when the trace came with one, ``tracestate``."""
        sent = {"traceparent": self.traceparent}
        if self.tracestate:
            sent["tracestate"] = self.tracestate
        return sent


class Trace:
    """The sampled spans of one request (or one model load) in this process. New spans are
    children of the innermost open one; ``finish()`` ends what is still open and hands the
    spans to ``export``."""

    __slots__ = ("_open", "_export", "request_id", "spans", "trace_id", "tracestate", "reason", "root")

    def __init__(self, export: Callable[[Trace], None], name: str, *, kind: int = INTERNAL,
                 attributes: dict[str, Any] | None = None, trace_id: int = 0, parent_id: int = 0,
                 tracestate: str = "") -> None:
        self._export = export
        self.trace_id = trace_id or new_trace_id()
        self.tracestate = tracestate
        self.reason: str | None = None
        """Why the request failed, as its error body says; open spans end with it."""
        self.request_id = ""
        """The root span's ``warmgate.request_id`` (kept apart: the root's other attributes repeat)."""
        self._open: list[Span] = []
        self.root = Span(self, name, parent_id, kind, attributes)
        self.spans = [self.root]
        self._open.append(self.root)

    @property
    def current(self) -> Span:
        """The innermost open span: the parent of the next one, and of outgoing calls."""
        return self._open[-1] if self._open else self.root

    def start(self, name: str, kind: int = INTERNAL, attributes: dict[str, Any] | None = None) -> Span:
        span = Span(self, name, self.current.span_id, kind, attributes)
        self.spans.append(span)
        self._open.append(span)
        return span

    def fork(self) -> Trace:
        """This trace for work running beside the request (each of several choices): its spans
        join this trace's, children of the span open now, with a stack of open spans of their
        own, so that concurrent steps are siblings instead of each other's children."""
        fork = Trace.__new__(Trace)
        fork._export, fork.trace_id, fork.tracestate = self._export, self.trace_id, self.tracestate
        fork.reason, fork._open, fork.root, fork.spans, fork.request_id = None, [], self.current, self.spans, ""
        return fork

    def branch(self, name: str, attributes: dict[str, Any] | None = None) -> Trace:
        """The spans of work this request starts and outlives (a live session): the same trace,
        under the current span, exported when ``finish()`` is called on it."""
        return Trace(self._export, name, attributes=attributes, trace_id=self.trace_id,
                     parent_id=self.current.span_id, tracestate=self.tracestate)

    def finish(self) -> None:
        """End every open span (innermost first; failed with ``reason`` when there is one) and
        export the trace."""
        for span in reversed(list(self._open)):
            if self.reason is not None and span is not self.root:
                span.error = span.error or self.reason
            span.end()
        self._export(self)
