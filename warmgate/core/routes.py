"""Litestar routes built from PipelineSpecs: auth, decode, function acquire, run, encode."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream

from warmgate.core.auth import BearerAuth
from warmgate.core.decode import build_decoder
from warmgate.core.errors import InferenceError
from warmgate.core.functions import Lease
from warmgate.core.manager import FunctionManager
from warmgate.core.middleware import REQUEST_START
from warmgate.core.spec import PipelineSpec

__all__ = ["OVERHEAD_HEADER", "pipeline_route"]

OVERHEAD_HEADER = "X-Warmgate-Overhead-Ms"
_JSON = "application/json"
_encoder = msgspec.json.Encoder()


def pipeline_route(spec: PipelineSpec, manager: FunctionManager, auth: BearerAuth, max_body_size: int) -> HTTPRouteHandler:
    """One POST handler answering every path of ``spec`` (with and without trailing slash)."""
    decode = build_decoder(spec)
    name = spec.name
    model_field = spec.model_field

    async def handle(request: Request[Any, Any, Any]) -> Response[Any]:
        if auth.enabled:
            auth.check(request.headers.get("authorization"))
        body = await decode(request)
        fn = manager.resolve(name, getattr(body, model_field, "") or "")
        waited = time.perf_counter()
        lease = await fn.acquire()
        try:
            result = await lease.run(body)
        except BaseException:
            lease.release()
            raise
        done = time.perf_counter()
        external = done - waited  # queueing, loading and the model are not gateway overhead
        if _is_stream(result):
            return _stream(result, lease, spec.stream_media_type, request, external)
        lease.release()
        if isinstance(result, Response):
            result.headers[OVERHEAD_HEADER] = _overhead(request, external)
            return result
        try:
            content = _encoder.encode(result)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InferenceError(f"{name} returned a result that cannot be encoded as JSON: {exc}") from exc
        return Response(content, media_type=_JSON, headers={OVERHEAD_HEADER: _overhead(request, external)})

    paths = [p for path in spec.paths for p in (path, path + "/")]
    return post(
        path=paths,
        name=f"pipeline:{name}",
        include_in_schema=False,  # warmgate writes the OpenAPI document from the specs
        request_max_body_size=spec.max_body_size or max_body_size,
        status_code=200,
    )(handle)


def _overhead(request: Request[Any, Any, Any], external: float) -> str:
    start = request.scope["state"].get(REQUEST_START)
    if start is None:
        return "0"
    return f"{max(0.0, (time.perf_counter() - start - external) * 1000):.3f}"


def _is_stream(result: Any) -> bool:
    return hasattr(result, "__aiter__") or inspect.isgenerator(result)


def _stream(result: Any, lease: Lease, media_type: str, request: Request[Any, Any, Any], external: float) -> Stream:
    """Stream the runner's chunks; the slot is released when the stream ends or the client leaves."""
    chunks = result if hasattr(result, "__aiter__") else _iterate_in_thread(result)
    return Stream(_relay(chunks, lease), media_type=media_type, headers={OVERHEAD_HEADER: _overhead(request, external)})


async def _relay(chunks: AsyncIterator[Any], lease: Lease) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield chunk.encode() if isinstance(chunk, str) else chunk
    finally:
        lease.release()
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


async def _iterate_in_thread(chunks: Iterator[Any]) -> AsyncIterator[Any]:
    """A sync generator (a blocking model loop) driven from worker threads, never the event loop."""
    done = object()
    try:
        while (chunk := await asyncio.to_thread(next, chunks, done)) is not done:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
