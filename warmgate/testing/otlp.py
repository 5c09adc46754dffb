"""A collector's OTLP/HTTP traces endpoint, for tests and benches: each POST to ``/v1/traces`` is
decoded with opentelemetry-proto, the format a real collector receives, into ``ReceivedSpan``s."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec

__all__ = ["OTLPReceiver", "ReceivedSpan"]


class ReceivedSpan(msgspec.Struct, frozen=True, kw_only=True):
    """One exported span, ids as hex, attribute values as Python values."""

    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    """OTLP's ``SpanKind``: 1 internal, 2 server, 3 client."""
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int
    """0 unset, 1 ok, 2 error."""
    status_message: str
    links: list[tuple[str, str]]
    """(trace id, span id) of each linked span."""
    events: list[str]


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def decode(body: bytes) -> list[ReceivedSpan]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(body)
    out = []
    for resource_spans in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(ReceivedSpan(
                    service=str(resource.get("service.name", "")), trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(), parent_id=span.parent_span_id.hex(), name=span.name, kind=span.kind,
                    start_ns=span.start_time_unix_nano, end_ns=span.end_time_unix_nano,
                    attributes={kv.key: _value(kv.value) for kv in span.attributes},
                    status_code=span.status.code, status_message=span.status.message,
                    links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                    events=[event.name for event in span.events]))
    return out


class OTLPReceiver:
    """``with OTLPReceiver() as receiver:`` serves ``receiver.endpoint`` on 127.0.0.1 in a thread.
    ``decode_spans=False`` only counts the posts (a bench, where decoding would take the
    gateway's CPU); ``hang=True`` accepts posts and never answers (a stuck collector)."""

    def __init__(self, *, decode_spans: bool = True, hang: bool = False) -> None:
        self.spans: list[ReceivedSpan] = []
        self.posts = 0
        self.pending = 0
        """Posts held unanswered (``hang``)."""
        self.bytes = 0
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if hang:
                    with receiver._lock:
                        receiver.pending += 1
                    receiver._release.wait()
                    return
                spans = decode(body) if decode_spans else []
                with receiver._lock:
                    receiver.posts += 1
                    receiver.bytes += len(body)
                    receiver.paths.append(self.path)
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    receiver.spans.extend(spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    def __enter__(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, found: Callable[[list[ReceivedSpan]], bool], timeout: float = 30.0) -> list[ReceivedSpan]:
        """The spans received once ``found(spans)`` holds (the exporter sends in the background);
        an ``AssertionError`` listing what did arrive if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if found(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"the spans expected never arrived; got {[(s.service, s.name) for s in spans]}")
            time.sleep(0.05)
