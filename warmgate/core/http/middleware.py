"""The outermost layer of every HTTP request: request id, access log, request metrics."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from typing import TYPE_CHECKING, Any

from warmgate.core.context import RequestContext, request_context
from warmgate.core.logs import AccessLog, request_id_var
from warmgate.core.metrics import Metrics
from warmgate.core.usage import report_usage

if TYPE_CHECKING:
    from warmgate.core.tracing.tracer import Tracer

__all__ = ["OVERHEAD_HEADER", "wrap_asgi"]

OVERHEAD_HEADER = "X-Warmgate-Overhead-Ms"
"""Elapsed minus the request's ``external_seconds`` (queue, load, model), when a route set them."""
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


def wrap_asgi(app: Any, metrics: Metrics, access_log: AccessLog | None, tracer: Tracer | None = None) -> Any:
    """Wrap Litestar's ASGI handler so that 404s and 405s are counted and logged too. Each
    request gets its ``RequestContext`` here, and its bill, headers and log line come from it;
    with a ``tracer``, a sampled request's trace too (its server span is this whole function)."""

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        context = RequestContext(request_id, start)
        if tracer is not None:
            tracer.begin(scope, context)
        id_header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500
        responded = False

        reported = False

        async def report(final_status: int, billed: bool) -> None:
            nonlocal reported
            if context.quote is not None and not reported:
                reported = True
                with contextlib.suppress(Exception):  # a hold still being taken: settled after it, or
                    await context.hold()  # refused (the quote dropped): nothing to report
                if context.quote is None:
                    return
                await report_usage(scope.get("app"), context, final_status, time.perf_counter() - start,
                                   billed=billed)

        async def end() -> None:
            callbacks, context.on_end = context.on_end, ()
            for callback in callbacks:
                await callback()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await report(status, billed=status < 400)  # before the last byte: no answer goes out unrecorded
                await end()
            elif message["type"] == "http.response.start":
                status, responded = message["status"], True
                added = [id_header, *context.headers]
                external = context.external_seconds
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
        context_token = request_context.set(context)
        try:
            await app(scope, receive, send_with_id)
            if not responded:  # the app returned without answering: its client had gone (a long poll)
                status = 499
        finally:
            if not reported and context.quote is not None:  # the client left mid-answer, or no answer at all
                answered = status < 400  # a successful response had started (status stays 500 otherwise)
                await asyncio.shield(report(499 if answered else status, billed=answered))
            if context.on_end:
                await asyncio.shield(end())
            if context.trace is not None:
                tracer.finish(context.trace, scope, context, status)  # type: ignore[union-attr]
            seconds = time.perf_counter() - start
            metrics.observe_request(scope.get("path_template") or "<unmatched>", scope["method"], status, seconds)
            if access_log is not None:
                access_log(scope["method"], scope["path"], status, round(seconds * 1000, 3), request_id,
                           context.log_fields)
            request_context.reset(context_token)
            request_id_var.reset(token)

    return middleware
