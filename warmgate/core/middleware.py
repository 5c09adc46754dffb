"""The outermost layer of every HTTP request: request id, access log, request metrics."""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog

from warmgate.core.metrics import Metrics

__all__ = ["REQUEST_START", "wrap_asgi"]

REQUEST_START = "warmgate.start"
"""Key in ``scope["state"]``: ``perf_counter()`` when the request reached the gateway."""

_log = structlog.get_logger("warmgate.access")


def _request_id(scope: dict[str, Any]) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if 0 < len(text) <= 128 and text.isprintable():
                return text
            break
    return uuid.uuid4().hex


def wrap_asgi(app: Any, metrics: Metrics, access_log: bool) -> Any:
    """Wrap Litestar's ASGI handler so that 404s and 405s are counted and logged too."""

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        scope["state"][REQUEST_START] = start
        request_id = _request_id(scope)
        id_header = (b"x-request-id", request_id.encode("latin-1"))
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            metrics.observe_request(scope.get("path_template") or "<unmatched>", scope["method"], status, seconds)
            if access_log:
                _log.info("request", method=scope["method"], path=scope["path"], status=status,
                          ms=round(seconds * 1000, 3))
            structlog.contextvars.reset_contextvars(**tokens)

    return middleware
