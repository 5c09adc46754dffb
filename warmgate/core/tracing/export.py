"""Finished traces to an OTLP/HTTP collector, batched, in a background thread, and bounded.

A request encodes its finished trace into OTLP's protobuf bytes (``wire.encode_trace``, a few
microseconds) and appends them to a queue. A thread wakes every ``interval`` seconds (or when
enough traces wait), joins what is queued into ``ExportTraceServiceRequest``s (the format a
collector receives) and POSTs them. Queued bytes, unlike queued span objects, cost the garbage
collector nothing, and the thread has little to do while it holds the GIL. When the queue is
full the newest traces are dropped and counted; a collector that is down or slow costs failed
posts in that thread, never a request's time, and shutdown waits at most ``timeout`` for the
last post.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Mapping
from typing import Any

import httpx
import structlog

from warmgate.core.tracing.spans import Trace
from warmgate.core.tracing.wire import encode_request, encode_trace, resource_header
from warmgate.core.version import __version__

__all__ = ["BATCH_BYTES", "OTLPExporter"]

_log = structlog.get_logger("warmgate.tracing")

BATCH_BYTES = 4 << 20
"""Encoded spans per POST at most (about 10,000 of a plain request's): at thousands of requests a
second fewer and larger posts cost the gateway less than the SDK's 512 spans, and a collector
takes them (its OTLP/HTTP receiver's default limit is 20 MiB)."""
WAKE_TRACES = 256
"""Queued traces that start an export before the interval is up."""


class OTLPExporter:
    """The background exporter; ``submit`` is all a request pays."""

    def __init__(self, endpoint: str, headers: Mapping[str, str], resource: Mapping[str, Any], *,
                 timeout: float, max_queue: int, interval: float = 1.0) -> None:
        self.endpoint = endpoint
        self._header = resource_header(resource, "warmgate", __version__)
        self.timeout = timeout
        self.interval = interval
        self.max_queue = max_queue
        self.dropped = 0
        """Traces dropped because the queue was full (the collector is down or slow)."""
        self.failures = 0
        """POSTs that failed, and traces the encoder failed on."""
        self._headers = {"Content-Type": "application/x-protobuf", **headers}
        self._queue: collections.deque[bytes] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._failing = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, trace: Trace) -> None:
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.dropped += 1
            return
        try:
            encoded = encode_trace(trace)
        except Exception:  # a bug in the encoder costs this trace, never the request
            self.failures += 1
            _log.exception("trace_encode_failed", trace_id=f"{trace.trace_id:032x}")
            return
        queue.append(encoded)
        if len(queue) == WAKE_TRACES:
            self._wake.set()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="warmgate-otlp", daemon=True)
                self._thread.start()

    def shutdown(self) -> None:
        """Send what is queued, waiting at most about ``timeout`` (a collector that is down)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping = True
        self._wake.set()
        thread.join(self.timeout + 1.0)

    def _run(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 2.0))) as client:
            while not self._stopping:
                self._wake.wait(self.interval)
                self._wake.clear()
                self._drain_logged(client)
            self._drain_logged(client)

    def _drain_logged(self, client: httpx.Client) -> None:
        try:
            self._drain(client)
        except Exception:  # a bug here must cost spans, not the thread (and with it every later export)
            self.failures += 1
            _log.exception("trace_export_failed", endpoint=self.endpoint)

    def _drain(self, client: httpx.Client) -> None:
        """Post what was queued when the thread woke, in batches; what comes meanwhile waits for
        the next wake, so the thread never posts back to back while requests keep coming."""
        queue = self._queue
        left = len(queue)
        while left > 0:
            batch: list[bytes] = []
            size = 0
            while left > 0 and size < BATCH_BYTES:
                encoded = queue.popleft()
                left -= 1
                batch.append(encoded)
                size += len(encoded)
            self._post(client, encode_request(batch, self._header))
            if self._stopping and self._failing:
                queue.clear()  # shutting down with the collector away: the rest would only wait on it too
                return

    def _post(self, client: httpx.Client, body: bytes) -> None:
        try:
            response = client.post(self.endpoint, content=body, headers=self._headers)
            error = None if response.status_code < 300 else f"the collector answered {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if error is None:
            if self._failing:
                self._failing = False
                _log.info("trace_export_recovered", endpoint=self.endpoint)
            return
        self.failures += 1
        if not self._failing:  # logged when it starts failing, not for every batch
            self._failing = True
            _log.warning("trace_export_failed", endpoint=self.endpoint, error=error)
