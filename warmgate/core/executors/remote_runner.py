"""One runner of a remote function: a server that speaks this same API (a Livepeer ai-runner
container, another warmgate) or, for an LLM, an OpenAI-compatible engine.

The client is aiohttp, not httpx: against one runner, httpx's async connection pool served 955
requests/s at 16 in flight (fewer than at 1), aiohttp 6,521.

The gateway validates and prices a request as for any function, then forwards its body
untouched (JSON, multipart, the query string) to the same path on the runner and streams the
answer back, server-sent events included. The runner is polled, as go-livepeer does: its
``/health`` (LOADING, OK, IDLE, ERROR), and a warmgate's ``/functions`` for whether this
function's model is warm there. Its errors keep their status and message; a runner that cannot
be reached, or that fails, becomes a ``RemoteError`` that says which runner and why and whether
another runner may be tried (nothing reached the client yet).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec
import structlog
import yarl
from litestar import Response
from litestar.response import Stream

from warmgate.core.http.errors import CONTEXT_EXCEEDED_HEADER, ContextExceeded, WarmgateError
from warmgate.core.settings import FunctionConfig, RunnerConfig
from warmgate.core.tracing import CLIENT, Span, outgoing_headers, start_span

__all__ = ["RemoteError", "RemoteRunner"]

_log = structlog.get_logger("warmgate.remote")

_FORWARDED_HEADERS = ("content-type", "accept", "x-request-id", "traceparent", "tracestate")
"""A caller's trace context passes through untouched; a traced request sends its own (``tracing``)."""
_RETURNED_HEADERS = ("content-type", "retry-after", "cache-control")
_WARM_STATES = ("warm", "idle")


class RemoteError(WarmgateError):
    """The runner could not answer: unreachable (503), failed (502), or too slow (504).
    ``retryable``: nothing was sent to the client and the work may run on another runner."""

    def __init__(self, msg: str, status_code: int = 503, *, retry_after: float | None = None,
                 retryable: bool = True) -> None:
        super().__init__(msg, headers={"Retry-After": f"{retry_after:g}"} if retry_after is not None else None)
        self.status_code = status_code
        self.retry_after = retry_after
        self.retryable = retryable


class _Health(msgspec.Struct):
    status: str = "OK"


class _FunctionState(msgspec.Struct):
    pipeline: str = ""
    model_id: str = ""
    name: str = ""
    state: str = ""


class _Functions(msgspec.Struct):
    functions: list[_FunctionState]


class RemoteRunner:
    """Forwards one function's requests to one runner; ``memory_bytes`` is 0: the model's
    memory is the runner's."""

    memory_bytes = 0

    def __init__(self, config: FunctionConfig, runner: RunnerConfig,
                 on_health: Callable[[RemoteRunner], None] | None = None) -> None:
        options = config.options
        self.url = runner.url.rstrip("/")
        self.name = config.name
        self.pipeline, self.model_id = config.pipeline, config.model_id
        self.status = "UNKNOWN"
        """The runner's last ``/health`` status, or ``UNREACHABLE``."""
        self.error: str | None = None
        self.warm = False
        """The model is loaded on the runner (a warmgate's ``/functions``; an ai-runner or
        engine that answers its health check has it)."""
        self.loading = False
        """A warmgate runner says the model is loading there (``/functions``)."""
        self._on_health = on_health
        self._lists_functions: bool | None = None
        self._health_interval = float(options.get("health_interval", config.routing.health_interval))
        self._retry_after = float(options.get("retry_after", 1.0))
        token = runner.token or config.token
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=float(options.get("timeout", 600.0)),
                                              connect=float(options.get("connect_timeout", 5.0)))
        self._connections = (runner.max_concurrency or config.max_concurrency) * 2 + 2  # and the health poll
        self._session: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task[None] | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on the loop that uses it
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._connections, enable_cleanup_closed=True))
        return self._session

    def unreachable(self) -> RemoteError:
        return RemoteError(f"remote runner {self.url} is unreachable: {self.error}", retry_after=self._retry_after)

    async def connect(self) -> None:
        """Check the runner's health once and poll it from now on."""
        await self.check_health()
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name=f"health {self.name} {self.url}")

    async def check_health(self) -> str:
        try:
            content, code = await self._get("/health")
            if code == 404:  # an OpenAI-compatible engine without /health: its model list says it is up
                content, code = await self._get("/v1/models")
                content, self._lists_functions = b"", False
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.status, self.error, self.warm = "UNREACHABLE", _describe(exc), False
            self._report()
            return self.status
        try:
            status = msgspec.json.decode(content, type=_Health).status if code < 300 else "ERROR"
        except msgspec.DecodeError:
            status = "OK" if code < 300 else "ERROR"  # an engine's bare 200 (vLLM's /health)
        self.status = status
        self.error = None if status != "ERROR" else f"GET /health answered {code}"
        self.warm = await self._model_warm() if status in ("OK", "IDLE") else False
        self._report()
        return status

    async def _get(self, path: str) -> tuple[bytes, int]:
        async with self.session.get(self.url + path, timeout=aiohttp.ClientTimeout(total=5.0)) as response:
            return await response.read(), response.status

    async def _model_warm(self) -> bool:
        """Whether this function's model is loaded there: a warmgate lists its functions' states;
        a runner that does not (an ai-runner, an engine) serves its one model once healthy."""
        if self._lists_functions is False:
            return True
        try:
            content, code = await self._get("/functions")
            listed = msgspec.json.decode(content, type=_Functions).functions if code < 300 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, msgspec.DecodeError, msgspec.ValidationError):
            listed = None
        if listed is None:
            self._lists_functions = False
            return True
        self._lists_functions = True
        mine = [f.state for f in listed if f.pipeline == self.pipeline and self.model_id in (f.model_id, f.name)]
        self.loading = "loading" in mine
        return any(state in _WARM_STATES for state in mine)

    def _report(self) -> None:
        if self._on_health is not None:
            self._on_health(self)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval)
            before = self.status
            await self.check_health()
            if self.status != before:
                _log.info("remote_health", function=self.name, url=self.url, status=self.status, error=self.error)

    async def __call__(self, request: Any) -> Any:
        raise TypeError("a remote function forwards raw requests: call forward()")

    async def forward(self, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                      on_stream_end: Callable[[str | None], None] | None = None) -> Response[Any]:
        """Send the request on and return the runner's answer: a stream for server-sent events
        (``on_stream_end(error)`` is called when it ends), else the whole body with its status."""
        sent = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers
                if name.decode("latin-1") in _FORWARDED_HEADERS}
        target = yarl.URL(f"{self.url}{path}?{query.decode('latin-1')}" if query else f"{self.url}{path}", encoded=True)
        span = start_span("POST", CLIENT, {"http.request.method": "POST", "url.full": f"{self.url}{path}",
                                           "server.address": target.host, "server.port": target.port})
        if span is not None:  # one span per attempt; the runner continues the trace under it
            sent.update(span.headers())
        else:
            untraced = outgoing_headers()  # not sampled: the runner records nothing for it either
            if untraced:
                sent.update(untraced)
        try:
            return await self._send(target, body, sent, span, on_stream_end)
        except (RemoteError, ContextExceeded) as exc:
            if span is not None:  # a failed attempt ends now, failed (another may be tried)
                span.fail(exc.msg)
                span.end()
            raise

    async def _send(self, target: yarl.URL, body: bytes, sent: dict[str, str], span: Span | None,
                    on_stream_end: Callable[[str | None], None] | None) -> Response[Any]:
        try:
            response = await self.session.post(target, data=body, headers=sent)
        except aiohttp.ConnectionTimeoutError as exc:
            self.status, self.error = "UNREACHABLE", _describe(exc)
            raise self.unreachable() from exc
        except asyncio.TimeoutError as exc:  # it took the request: the work may have run, no retry
            raise RemoteError(f"remote runner {self.url} did not answer in time ({_describe(exc)})", 504,
                              retryable=False) from exc
        except aiohttp.ClientError as exc:
            self.status, self.error = "UNREACHABLE", _describe(exc)
            raise self.unreachable() from exc
        returned = {name: response.headers[name] for name in _RETURNED_HEADERS if name in response.headers}
        if span is not None:
            span.set("http.response.status_code", response.status)
        if response.content_type == "text/event-stream" and response.status < 300:
            return Stream(_relay(response, on_stream_end, span), status_code=response.status, headers=returned,
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
        if response.status in (400, 422) and _context_exceeded(response, content):
            raise ContextExceeded.single(["body", "max_tokens"], f"remote runner {self.url}: {_message(content)}")
        if response.status >= 500:
            raise RemoteError(f"remote runner {self.url} failed ({response.status}): {_message(content)}",
                              503 if response.status == 503 else 502,
                              retry_after=self._retry_after if response.status == 503 else None)
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


async def _relay(response: aiohttp.ClientResponse, on_end: Callable[[str | None], None] | None,
                 span: Span | None) -> AsyncIterator[bytes]:
    """The runner's events as they come; a runner that breaks off ends the stream with an error
    event, as the local LLM plugin does, rather than a hang or a silent cut (never a retry:
    the client has its first bytes). The attempt's span ends with the stream."""
    error: str | None = None
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        error = f"remote runner broke off: {_describe(exc)}"
        yield b"data: " + msgspec.json.encode({"error": {"message": error}}) + b"\n\n"
        if span is not None:
            span.fail(error)
    finally:
        if span is not None:
            span.end()
        if response.content.at_eof():
            response.release()  # the connection goes back to the pool
        else:
            response.close()  # the caller left mid-stream: drop the connection, and the runner notices
        if on_end is not None:
            on_end(error)


def _message(content: bytes) -> str:
    """The runner's error message: ``detail.msg`` (or each ``detail[].msg``), OpenAI's
    ``error.message``, or the start of its body."""
    with contextlib.suppress(msgspec.DecodeError, AttributeError, TypeError):  # not JSON, or not an error shape
        body = msgspec.json.decode(content)
        detail, error = body.get("detail"), body.get("error")
        if isinstance(detail, dict) and isinstance(detail.get("msg"), str):
            return str(detail["msg"])
        if isinstance(detail, list) and detail and all(isinstance(d.get("msg"), str) for d in detail):
            return "; ".join(str(d["msg"]) for d in detail)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(body.get("message"), str):  # vLLM's own error shape
            return str(body["message"])
    return content[:300].decode(errors="replace") or "no body"


def _context_exceeded(response: aiohttp.ClientResponse, content: bytes) -> bool:
    """A runner's answer that the prompt overflowed its model's context: a warmgate says so in a
    header; an OpenAI-compatible engine (vLLM, OpenAI) in its message, as LiteLLM reads it."""
    return bool(response.headers.get(CONTEXT_EXCEEDED_HEADER)) or b"maximum context length" in content


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
