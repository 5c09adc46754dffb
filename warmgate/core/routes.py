"""Litestar routes built from PipelineSpecs: auth, decode, function acquire, run, encode."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import re
import time
from collections.abc import AsyncIterator, Iterator
from fractions import Fraction
from typing import Any

import msgspec
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream

from warmgate.core.auth import Authenticator, Caller
from warmgate.core.cancel import cancellation_scope
from warmgate.core.decode import json_decoder, multipart_decoder
from warmgate.core.errors import ClientDisconnected, ClientError, InferenceError, PaymentRequired
from warmgate.core.functions import Function, Lease
from warmgate.core.manager import FunctionManager
from warmgate.core.middleware import EXTERNAL_SECONDS, EXTRA_HEADERS
from warmgate.core.plugins import await_me_maybe, pm
from warmgate.core.rate_limits import admit
from warmgate.core.spec import PipelineSpec
from warmgate.core.usage import QUOTE, Quote

__all__ = ["pipeline_route"]

_JSON = "application/json"
_encoder = msgspec.json.Encoder()


def pipeline_route(spec: PipelineSpec, manager: FunctionManager, auth: Authenticator, max_body_size: int) -> HTTPRouteHandler:
    """One POST handler answering every path of ``spec`` (with and without trailing slash)."""
    decode_json = json_decoder(spec) if spec.encoding == "json" else None
    decode_form = multipart_decoder(spec)
    name = spec.name
    functions_of = spec.serves or spec.name
    model_field = spec.model_field
    invoke = spec.invoke
    units = spec.units
    prepare = spec.prepare
    # a pipeline with a remote function keeps each request's raw body to forward it untouched
    keep_raw = any(fn.config.executor == "remote" for fn in manager.functions.values() if fn.config.pipeline == functions_of)

    async def handle(request: Request[Any, Any, Any]) -> Response[Any]:
        caller = await auth(request.scope, request.app) if auth.enabled else None
        if caller is not None:
            await admit(request.scope, request.app, caller)
        raw = await request.body() if keep_raw or decode_json is not None else b""
        body = decode_json(raw) if decode_json is not None else await decode_form(request)
        fn = manager.resolve(functions_of, getattr(body, model_field, "") or "", spec.wire, name)
        if caller is not None:
            caller.check_allowed(fn.name, fn.config.aliases, fn.config.pipeline)
        if prepare is not None:
            body = await asyncio.to_thread(prepare, body, fn.config.options)
        if fn.config.price is not None:
            await _quote(request, fn, body, units, manager.settings, caller)
        waited = time.perf_counter()
        lease = fn.acquire_now() or await _acquire_while_connected(fn, request)
        if fn.config.executor == "remote":
            return await _forward(request, lease, raw, waited)
        try:
            if fn.config.executor == "ray":
                result = await lease.runner.call(name, body)
            else:
                result = await _run_while_connected(fn, lease, body, invoke, request)
        except BaseException:
            lease.release()
            raise
        # queueing, loading and the model are not gateway overhead (see middleware)
        request.scope["state"][EXTERNAL_SECONDS] = time.perf_counter() - waited
        if _is_stream(result):
            return Stream(_relay(result if hasattr(result, "__aiter__") else _iterate_in_thread(result), lease),
                          media_type=spec.stream_media_type)
        lease.release()
        if isinstance(result, Response):
            return result
        try:
            content = _encoder.encode(result)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InferenceError(f"{name} returned a result that cannot be encoded as JSON: {exc}") from exc
        return Response(content, media_type=_JSON)

    paths = [p for path in spec.paths for p in (path, path + "/")]
    return post(
        path=paths,
        name=f"pipeline:{name}",
        include_in_schema=False,  # warmgate writes the OpenAPI document from the specs
        request_max_body_size=spec.max_body_size or max_body_size,
        status_code=200,
        exception_handlers=dict(spec.exception_handlers) if spec.exception_handlers else None,
    )(handle)


async def _forward(request: Request[Any, Any, Any], lease: Lease, raw: bytes, waited: float) -> Response[Any]:
    """Hand the validated, priced request to a remote runner; its time is not our overhead."""
    scope = request.scope
    try:
        response = await lease.runner.forward(scope["path"], scope["query_string"], scope["headers"], raw)
    except BaseException:
        lease.release()
        raise
    scope["state"][EXTERNAL_SECONDS] = time.perf_counter() - waited
    if isinstance(response, Stream):
        response.iterator = _relay(response.iterator, lease)
    else:
        lease.release()
    return response


async def _acquire_while_connected(fn: Function, request: Request[Any, Any, Any]) -> Lease:
    """Wait for a slot and the model (a queue, a cold load), but give up if the client
    disconnects meanwhile, so a request nobody waits for neither holds a queue place nor runs
    the model. A load in progress goes on for the requests that come next."""
    acquire = asyncio.ensure_future(fn.acquire())
    disconnected = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait((acquire, disconnected), return_when=asyncio.FIRST_COMPLETED)
    finally:
        disconnected.cancel()
    if acquire.done():
        return acquire.result()
    acquire.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        lease = await acquire
        lease.release()  # it got the slot just as the client left
    raise ClientDisconnected(f"client disconnected while queued for {fn.name!r}")


async def _run_while_connected(fn: Function, lease: Lease, body: Any, invoke: Any,
                               request: Request[Any, Any, Any]) -> Any:
    """Run the request, and if the client disconnects meanwhile, set the request's cancellation
    flag (``warmgate.core.cancel``), which runners check between steps, and wait for the runner
    to stop: the slot is freed only once the work has ended, and the answer is a 499."""
    with cancellation_scope() as cancellation:  # the task and its worker threads copy the context
        run = asyncio.ensure_future(fn.run(lease.runner, body, invoke))
    disconnected = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait((run, disconnected), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this handler was cancelled (shutdown): stop the work too
        cancellation.cancel()
        run.cancel()
        raise
    finally:
        disconnected.cancel()
    if run.done():
        return run.result()
    cancellation.cancel()
    with contextlib.suppress(Exception):  # the runner's own end (RequestCancelled, a result) is not sent
        await run
    raise ClientDisconnected(f"client disconnected while {fn.name!r} ran; the work stopped")


async def _disconnect(request: Request[Any, Any, Any]) -> None:
    """Returns when the client goes away (the body is already read, so nothing else arrives)."""
    message = await request.receive()
    while message["type"] != "http.disconnect":
        message = await request.receive()


async def _quote(request: Request[Any, Any, Any], fn: Function, body: Any, units: Any, settings: Any,
                 caller: Caller | None) -> None:
    """Price the request (``price_request`` hooks), refuse it (402) when the caller's
    ``X-Max-Price-Per-Unit`` is lower than the price per unit, hold it against the caller's
    balance (``reserve`` hooks, 402 when short), and put units and wei on the response."""
    count = int(units(body)) if units is not None else 1
    wei = pm.hook.price_request(function=fn, request=body, units=count, settings=settings)
    if wei is None:
        return
    ceiling = _max_price_per_unit(request.scope)
    if ceiling is not None and count > 0 and int(wei) > math.ceil(ceiling * count):  # both rounded up alike
        raise PaymentRequired(f"{fn.name} costs {_wei_text(Fraction(int(wei), count))} wei per unit "
                              f"({wei} wei for {count} units), above your X-Max-Price-Per-Unit of "
                              f"{_wei_text(ceiling)} wei")
    quote = Quote(function=fn.name, pipeline=fn.config.pipeline, model_id=fn.config.model_id, units=count,
                  wei=int(wei), key=caller.key if caller is not None else None,
                  settle_usage=fn.config.price is not None and fn.config.price.settle == "usage")
    for held in pm.hook.reserve(quote=quote, app=request.app):
        await await_me_maybe(held)
    state = request.scope["state"]
    state.setdefault(EXTRA_HEADERS, []).extend(
        [(b"x-warmgate-units", str(count).encode()), (b"x-warmgate-price", str(int(wei)).encode())])
    state[QUOTE] = quote  # from here on the request is reported to on_usage exactly once


MAX_PRICE_HEADER_CHARS = 64
"""Longest ``X-Max-Price-Per-Unit`` accepted; with ``MAX_PRICE_EXPONENT`` this bounds the exact
Fraction built from it (``1e10000000`` would take the event loop for seconds)."""
MAX_PRICE_EXPONENT = 100
_PRICE = re.compile(r"\d+(\.\d*)?(?:[eE]([-+]?\d+))?")


def _max_price_per_unit(scope: Any) -> Fraction | None:
    """The caller's ceiling in wei per unit (a decimal number, like a Livepeer gateway's
    ``maxPricePerUnit``), or ``None``. Exact, so a ceiling equal to the price passes."""
    for name, value in scope["headers"]:
        if name == b"x-max-price-per-unit":
            text = value.decode("latin-1").strip()
            if len(text) > MAX_PRICE_HEADER_CHARS:
                raise ClientError(f"X-Max-Price-Per-Unit: at most {MAX_PRICE_HEADER_CHARS} characters, "
                                  f"got {len(text)}")
            match = _PRICE.fullmatch(text)
            if match is None:
                raise ClientError(f"X-Max-Price-Per-Unit: expected a non-negative number of wei, got {text!r}")
            if match[2] is not None and abs(int(match[2])) > MAX_PRICE_EXPONENT:
                raise ClientError(f"X-Max-Price-Per-Unit: the exponent must be between -{MAX_PRICE_EXPONENT} "
                                  f"and {MAX_PRICE_EXPONENT}, got {match[2]}")
            return Fraction(text)
    return None


def _wei_text(amount: Fraction) -> str:
    return str(amount.numerator) if amount.denominator == 1 else f"{float(amount):.6g}"


def _is_stream(result: Any) -> bool:
    return hasattr(result, "__aiter__") or inspect.isgenerator(result)


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
