"""The remote executor: a function whose model runs on another server that speaks this same API
(a Livepeer ai-runner container, another warmgate).

The client is aiohttp, not httpx: against one runner, httpx's async connection pool served 955
requests/s at 16 in flight (fewer than at 1), aiohttp 6,521.

The gateway validates and prices a request as for any function, then forwards its body
untouched (JSON, multipart, the query string) to the same path on the runner and streams the
answer back, server-sent events included. The runner's ``/health`` is polled, as go-livepeer does,
so ``/functions`` shows whether it is LOADING, OK, IDLE or in ERROR. Its errors keep their status
and message; a runner that cannot be reached, or that fails, becomes a 503 or a 502 that says
which runner and why, and a timeout a 504.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import structlog
import yarl
from litestar import Response
from litestar.response import Stream

from warmgate.core.http.errors import WarmgateError
from warmgate.core.settings import FunctionConfig
from warmgate.core.tracing import CLIENT, Span, start_span

__all__ = ["RemoteError", "RemoteRunner"]

_log = structlog.get_logger("warmgate.remote")

_FORWARDED_HEADERS = ("content-type", "accept", "x-request-id", "traceparent", "tracestate")
"""A caller's trace context passes through untouched; a traced request sends its own (``tracing``)."""
_RETURNED_HEADERS = ("content-type", "retry-after", "cache-control")


class RemoteError(WarmgateError):
    """The runner could not answer: unreachable (503), failed (502), or too slow (504)."""

    def __init__(self, msg: str, status_code: int = 503, *, retry_after: float | None = None) -> None:
        super().__init__(msg, headers={"Retry-After": f"{retry_after:g}"} if retry_after is not None else None)
        self.status_code = status_code


class _Health(msgspec.Struct):
    status: str = "OK"


class RemoteRunner:
    """Forwards one function's requests to ``config.url``; ``memory_bytes`` is 0: the model's
    memory is the runner's."""

    memory_bytes = 0

    def __init__(self, config: FunctionConfig) -> None:
        options = config.options
        self.url = config.url.rstrip("/")
        self.name = config.name
        self.status = "UNKNOWN"
        """The runner's last ``/health`` status, or ``UNREACHABLE``."""
        self.error: str | None = None
        self._health_interval = float(options.get("health_interval", 5.0))
        self._retry_after = float(options.get("retry_after", 1.0))
        self._headers = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        self._timeout = aiohttp.ClientTimeout(total=float(options.get("timeout", 600.0)),
                                              connect=float(options.get("connect_timeout", 5.0)))
        self._connections = config.max_concurrency + 2  # and the health poll
        self._session: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task[None] | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on the loop that uses it
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._connections, enable_cleanup_closed=True))
        return self._session

    @classmethod
    async def connect(cls, config: FunctionConfig) -> RemoteRunner:
        """A runner that answered its health check; the load fails with the reason otherwise."""
        runner = cls(config)
        try:
            await runner.check_health()
            if runner.status == "UNREACHABLE":
                raise RemoteError(f"remote runner {runner.url} is unreachable: {runner.error}",
                                  retry_after=runner._retry_after)
        except BaseException:
            await runner.session.close()
            raise
        runner._poller = asyncio.get_running_loop().create_task(runner._poll(), name=f"health {config.name}")
        return runner

    async def check_health(self) -> str:
        try:
            async with self.session.get(self.url + "/health", timeout=aiohttp.ClientTimeout(total=5.0)) as response:
                content, code = await response.read(), response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.status, self.error = "UNREACHABLE", _describe(exc)
            return self.status
        try:
            status = msgspec.json.decode(content, type=_Health).status if code < 300 else "ERROR"
        except msgspec.DecodeError:
            status = "ERROR"
        self.status = status
        self.error = None if status != "ERROR" else f"GET /health answered {code}"
        return status

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval)
            before = self.status
            await self.check_health()
            if self.status != before:
                _log.info("remote_health", function=self.name, url=self.url, status=self.status, error=self.error)

    async def __call__(self, request: Any) -> Any:
        raise TypeError("a remote function forwards raw requests: call forward()")

    async def forward(self, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> Response[Any]:
        """Send the request on and return the runner's answer: a stream for server-sent events,
        else the whole body with its status."""
        sent = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers
                if name.decode("latin-1") in _FORWARDED_HEADERS}
        target = yarl.URL(f"{self.url}{path}?{query.decode('latin-1')}" if query else f"{self.url}{path}", encoded=True)
        span = start_span("POST", CLIENT, {"http.request.method": "POST", "url.full": f"{self.url}{path}",
                                           "server.address": target.host, "server.port": target.port})
        if span is not None:  # one span per attempt; the runner continues the trace under it
            sent.update(span.headers())
        try:
            response = await self.session.post(target, data=body, headers=sent)
        except asyncio.TimeoutError as exc:
            raise RemoteError(f"remote runner {self.url} did not answer in time ({_describe(exc)})", 504) from exc
        except aiohttp.ClientError as exc:
            self.status, self.error = "UNREACHABLE", _describe(exc)
            raise RemoteError(f"remote runner {self.url} is unreachable: {self.error}",
                              retry_after=self._retry_after) from exc
        returned = {name: response.headers[name] for name in _RETURNED_HEADERS if name in response.headers}
        if span is not None:
            span.set("http.response.status_code", response.status)
        if response.content_type == "text/event-stream" and response.status < 300:
            return Stream(_relay(response, span), status_code=response.status, headers=returned,
                          media_type="text/event-stream")
        try:
            content = await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise RemoteError(f"remote runner {self.url} broke off its answer: {_describe(exc)}", 502) from exc
        finally:
            response.release()
        if response.status in (401, 403):  # our token, not the caller's: an operator's mistake
            raise RemoteError(f"remote runner {self.url} refused the function's token ({response.status}): "
                              f"{_message(content)}", 502)
        if response.status >= 500 and response.status != 503:
            raise RemoteError(f"remote runner {self.url} failed ({response.status}): {_message(content)}", 502)
        if span is not None:
            span.end()
        return Response(content, status_code=response.status, headers=returned,
                        media_type=response.headers.get("content-type"))

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._session is not None:
            await self._session.close()


async def _relay(response: aiohttp.ClientResponse, span: Span | None) -> AsyncIterator[bytes]:
    """The runner's events as they come; a runner that breaks off ends the stream with an error
    event, as the local LLM plugin does, rather than a hang or a silent cut. The attempt's span
    ends with the stream."""
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        error = msgspec.json.encode({"error": {"message": f"remote runner broke off: {_describe(exc)}"}})
        yield b"data: " + error + b"\n\n"
        if span is not None:
            span.fail(f"remote runner broke off: {_describe(exc)}")
    finally:
        if span is not None:
            span.end()
        if response.content.at_eof():
            response.release()  # the connection goes back to the pool
        else:
            response.close()  # the caller left mid-stream: drop the connection, and the runner notices


def _message(content: bytes) -> str:
    """The runner's ``detail.msg`` (or the start of its body)."""
    with contextlib.suppress(msgspec.DecodeError, AttributeError):  # not JSON, or not our error shape
        detail = msgspec.json.decode(content).get("detail")
        if isinstance(detail, dict) and isinstance(detail.get("msg"), str):
            return str(detail["msg"])
    return content[:300].decode(errors="replace") or "no body"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
