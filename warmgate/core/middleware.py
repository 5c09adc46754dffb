"""The outermost layer of every HTTP request: request id, access log, request metrics."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any

from warmgate.core.logs import AccessLog, access_fields, request_id_var
from warmgate.core.metrics import Metrics
from warmgate.core.usage import QUOTE, report_usage

__all__ = ["EXTERNAL_SECONDS", "EXTRA_HEADERS", "ON_END", "OVERHEAD_HEADER", "wrap_asgi"]

OVERHEAD_HEADER = "X-Warmgate-Overhead-Ms"
EXTERNAL_SECONDS = "warmgate.external"
"""Key in ``scope["state"]``: seconds a pipeline route spent outside the gateway (queue, load,
model); when set, the response gets ``X-Warmgate-Overhead-Ms`` = elapsed minus that."""
EXTRA_HEADERS = "warmgate.headers"
"""Key in ``scope["state"]``: ``[(name, value), ...]`` byte pairs a route wants on its response,
whatever the response turns out to be (JSON, a stream, an error)."""
ON_END = "warmgate.on_end"
"""Key in ``scope["state"]``: ``[async callable, ...]`` run once when the request ends, before
its last byte (or when its client has gone): a rate limit's request slot is freed there."""
_OVERHEAD = OVERHEAD_HEADER.lower().encode()



_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count(1)


def _request_id(scope: dict[str, Any]) -> str:
    """The caller's ``X-Request-Id`` if sane, else a process-unique id (random prefix + counter)."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if 0 < len(text) <= 128 and text.isprintable():
                return text
            break
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


def wrap_asgi(app: Any, metrics: Metrics, access_log: AccessLog | None) -> Any:
    """Wrap Litestar's ASGI handler so that 404s and 405s are counted and logged too."""

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        state = scope["state"]
        request_id = _request_id(scope)
        id_header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500
        responded = False

        reported = False

        async def report(final_status: int, billed: bool) -> None:
            nonlocal reported
            quote = state.get(QUOTE)
            if quote is not None and not reported:
                reported = True
                await report_usage(scope.get("app"), quote, request_id, final_status, time.perf_counter() - start,
                                   billed=billed)

        async def end() -> None:
            for callback in state.pop(ON_END, ()):
                await callback()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await report(status, billed=status < 400)  # before the last byte: no answer goes out unrecorded
                await end()
            elif message["type"] == "http.response.start":
                status, responded = message["status"], True
                added = [id_header, *state.get(EXTRA_HEADERS, ())]
                external = state.get(EXTERNAL_SECONDS)
                if external is not None:
                    overhead = max(0.0, time.perf_counter() - start - external) * 1000
                    added.append((_OVERHEAD, f"{overhead:.3f}".encode()))
                headers = message.get("headers")
                if isinstance(headers, list):
                    headers.extend(added)
                else:
                    message["headers"] = [*(headers or ()), *added]
            await send(message)

        token = request_id_var.set(request_id)
        fields: dict[str, Any] = {}
        fields_token = access_fields.set(fields)
        try:
            await app(scope, receive, send_with_id)
            if not responded:  # the app returned without answering: its client had gone (a long poll)
                status = 499
        finally:
            if not reported and state.get(QUOTE) is not None:  # the client left mid-answer, or no answer at all
                answered = status < 400  # a successful response had started (status stays 500 otherwise)
                await asyncio.shield(report(499 if answered else status, billed=answered))
            if state.get(ON_END):
                await asyncio.shield(end())
            seconds = time.perf_counter() - start
            metrics.observe_request(scope.get("path_template") or "<unmatched>", scope["method"], status, seconds)
            if access_log is not None:
                access_log(scope["method"], scope["path"], status, round(seconds * 1000, 3), request_id, fields)
            access_fields.reset(fields_token)
            request_id_var.reset(token)

    return middleware
