"""Litestar exception handlers for a wire format with its own error body (Anthropic's, Ollama's):
the gateway's errors keep their status and message, only the shape changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from warmgate.core.http.errors import WarmgateError

__all__ = ["ErrorRender", "error_handlers"]

_log = structlog.get_logger("warmgate.errors")
_encoder = msgspec.json.Encoder()

ErrorRender = Callable[[int, str], tuple[int, Any]]
"""``render(status, message) -> (status, body)``: the wire format's status and error body."""


def error_handlers(render: ErrorRender) -> dict[type[Exception], Any]:
    """Handlers for every exception a route raises, answering ``render``'s body."""

    def respond(status: int, message: str, headers: dict[str, str] | None = None) -> Response[bytes]:
        status, body = render(status, message)
        return Response(_encoder.encode(body), status_code=status, media_type="application/json", headers=headers)

    def warmgate_error(request: Request[Any, Any, Any], exc: WarmgateError) -> Response[bytes]:
        if exc.status_code >= 500:
            _log.warning("request_failed", status=exc.status_code, error=exc.msg)
        return respond(exc.status_code, exc.msg, exc.headers)

    def http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
        detail = "Request body is larger than this route accepts" if exc.status_code == 413 else exc.detail
        return respond(exc.status_code, detail, exc.headers)

    def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        _log.error("unhandled_exception", path=request.url.path, exc_info=exc)
        return respond(500, f"Internal server error: {type(exc).__name__}")

    return {WarmgateError: warmgate_error, HTTPException: http_exception, Exception: unexpected}
