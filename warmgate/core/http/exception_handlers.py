"""One place that turns every exception into the Livepeer error body."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from warmgate.core.http.errors import WarmgateError
from warmgate.core.tracing import record_error

__all__ = ["EXCEPTION_HANDLERS"]

_log = structlog.get_logger("warmgate.errors")
_encoder = msgspec.json.Encoder()


def _body(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(_encoder.encode(body), status_code=status, media_type="application/json", headers=headers)


def _warmgate_error(request: Request[Any, Any, Any], exc: WarmgateError) -> Response[bytes]:
    if exc.status_code >= 500:
        _log.warning("request_failed", status=exc.status_code, error=exc.msg)
    record_error(exc.msg)
    return _body(exc.status_code, exc.to_body(), exc.headers)


def _http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    detail = exc.detail
    if exc.status_code == 404:
        detail = f"Not Found: no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"Method Not Allowed: {request.method} {request.url.path}"
    elif exc.status_code == 413:
        detail = "Request body is larger than this route accepts"
    record_error(str(detail))
    return _body(exc.status_code, {"detail": {"msg": detail}}, exc.headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    _log.error("unhandled_exception", path=request.url.path, exc_info=exc)
    record_error(f"{type(exc).__name__}: {exc}")
    return _body(500, {"detail": {"msg": f"Internal server error: {type(exc).__name__}"}})


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    WarmgateError: _warmgate_error,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
