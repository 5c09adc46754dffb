"""Finished traces to an OTLP/HTTP collector, batched, in a background thread, and bounded.

A request encodes its finished trace into OTLP's protobuf bytes (``wire.encode_trace``, a few
microseconds) and appends them to a queue. A task on the gateway's event loop (or a thread)
wakes every ``interval`` seconds, or when enough traces wait, joins what is queued into
``ExportTraceServiceRequest``s (the format a collector receives) and POSTs them. Queued bytes,
unlike queued span objects, cost the garbage collector nothing. When the queue is
full the newest traces are dropped and counted; a collector that is down or slow costs failed
posts in that thread, never a request's time, and shutdown waits at most ``timeout`` for the
last post.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import Iterator, Mapping
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
WAKE_TRACES = 512
"""Queued traces that start an export before the interval is up."""


class OTLPExporter:
    """The background exporter; ``submit`` is all a request pays.

    A gateway runs it as a task on its event loop (``start_in_loop``): there a post costs the
    loop a few hundred microseconds a batch, where a thread of its own, waking while the loop is
    busy, costs every request the GIL's hand-overs (measured: a thread that only wakes 14 times a
    second took 10% of a busy gateway's throughput). Where no loop is at hand (a Ray replica's
    constructor) it runs in a thread (``start``)."""

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
        self._stopping = False
        self._failing = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._wake_task = asyncio.Event()

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
            self._notify()

    def _notify(self) -> None:
        if self._task is None:
            self._wake.set()
        elif threading.get_ident() == self._loop_thread:
            self._wake_task.set()
        elif self._loop is not None:  # a load's trace, finished in the loader's thread
            self._loop.call_soon_threadsafe(self._wake_task.set)

    def start(self) -> None:
        """Export from a thread of its own."""
        with self._lock:
            if self._thread is None and self._task is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="warmgate-otlp", daemon=True)
                self._thread.start()

    def start_in_loop(self) -> None:
        """Export from a task on the running event loop."""
        with self._lock:
            if self._thread is None and self._task is None:
                self._stopping = False
                self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
                self._task = self._loop.create_task(self._run_task(), name="warmgate-otlp")

    def shutdown(self) -> None:
        """Send what is queued, waiting at most about ``timeout`` (a collector that is down)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping = True
        self._wake.set()
        thread.join(self.timeout + 1.0)

    async def aclose(self) -> None:
        """``shutdown`` from the event loop, for either way of running."""
        with self._lock:
            task, self._task = self._task, None
        if task is None:
            await asyncio.to_thread(self.shutdown)
            return
        self._stopping = True
        self._wake_task.set()
        with contextlib.suppress(asyncio.TimeoutError):  # then wait_for has cancelled the task
            await asyncio.wait_for(task, self.timeout + 1.0)

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeouts()) as client:
            while True:
                stopping = self._stopping
                if not stopping:
                    self._wake.wait(self.interval)
                    self._wake.clear()
                try:
                    for body in self._batches():
                        self._posted(self._post(client, body))
                except Exception:  # a bug here must cost spans, not the thread (and with it every later export)
                    self._failed_drain()
                if stopping:
                    return

    async def _run_task(self) -> None:
        async with httpx.AsyncClient(timeout=self._timeouts()) as client:
            while True:
                stopping = self._stopping
                if not stopping:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake_task.wait(), self.interval)
                    self._wake_task.clear()
                try:
                    for body in self._batches():
                        self._posted(await self._post_async(client, body))
                except Exception:  # a bug here must cost spans, not the task (and with it every later export)
                    self._failed_drain()
                if stopping:
                    return

    def _timeouts(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.timeout, 2.0))

    def _failed_drain(self) -> None:
        self.failures += 1
        _log.exception("trace_export_failed", endpoint=self.endpoint)

    def _batches(self) -> Iterator[bytes]:
        """``ExportTraceServiceRequest`` bodies of what was queued when this was called; what
        comes meanwhile waits for the next wake, so there are never posts back to back while
        requests keep coming."""
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
            yield encode_request(batch, self._header)
            if self._stopping and self._failing:
                queue.clear()  # shutting down with the collector away: the rest would only wait on it too
                return

    def _post(self, client: httpx.Client, body: bytes) -> str | None:
        try:
            response = client.post(self.endpoint, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            return _described(exc)
        return _refused(response)

    async def _post_async(self, client: httpx.AsyncClient, body: bytes) -> str | None:
        try:
            response = await client.post(self.endpoint, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            return _described(exc)
        return _refused(response)

    def _posted(self, error: str | None) -> None:
        if error is None:
            if self._failing:
                self._failing = False
                _log.info("trace_export_recovered", endpoint=self.endpoint)
            return
        self.failures += 1
        if not self._failing:  # logged when it starts failing, not for every batch
            self._failing = True
            _log.warning("trace_export_failed", endpoint=self.endpoint, error=error)


def _refused(response: httpx.Response) -> str | None:
    return None if response.status_code < 300 else f"the collector answered {response.status_code}"


def _described(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
