"""Litestar routes built from PipelineSpecs: auth, decode, function acquire, run, encode."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import math
import re
import time
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import msgspec
import structlog
from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream

from warmgate.core.context import RequestContext, current_request
from warmgate.core.executors import Call, RawRequest, RunnersFailed
from warmgate.core.executors.calling import chunks_of, is_stream
from warmgate.core.functions.function import Function, Lease
from warmgate.core.functions.manager import FunctionManager
from warmgate.core.functions.spec import PipelineSpec
from warmgate.core.http.auth import Authenticator, Caller
from warmgate.core.http.decode import json_decoder, multipart_decoder
from warmgate.core.http.errors import (
    ClientDisconnected,
    ClientError,
    ContextExceeded,
    InferenceError,
    LoadError,
    PaymentRequired,
    WarmgateError,
)
from warmgate.core.http.rate_limits import admit
from warmgate.core.plugins import await_me_maybe, pm
from warmgate.core.tracing.spans import Span, Trace
from warmgate.core.usage import Quote, price_wei

__all__ = ["pipeline_route"]

_log = structlog.get_logger("warmgate.routing")
_JSON = "application/json"
_encoder = msgspec.json.Encoder()


def pipeline_route(spec: PipelineSpec, manager: FunctionManager, auth: Authenticator, max_body_size: int) -> HTTPRouteHandler:
    """One POST handler answering every path of ``spec`` (with and without trailing slash)."""
    decode_json = json_decoder(spec) if spec.encoding == "json" else None
    decode_form = multipart_decoder(spec)
    name = spec.name
    functions_of = spec.serves or spec.name
    model_field = spec.model_field
    units = spec.units
    prepare = spec.prepare
    # a pipeline with a function whose executor forwards bytes keeps each request's raw body
    keep_raw = any(fn.executor.forwards_raw for fn in manager.functions.values() if fn.config.pipeline == functions_of)

    async def handle(request: Request[Any, Any, Any]) -> Response[Any]:
        context = current_request() or RequestContext("")  # the middleware makes it; bare use has none
        trace = context.trace  # None unless the request is traced: then each span below costs one check
        span = trace.start("auth") if trace is not None and auth.enabled else None
        caller = context.caller = await auth(request.scope, request.app) if auth.enabled else None
        if span is not None:
            span.end()
        if caller is not None:
            await admit(context, request.app, caller)
        raw = await request.body() if keep_raw or decode_json is not None else b""
        body = decode_json(raw) if decode_json is not None else await decode_form(request)
        fn = context.function = manager.resolve(functions_of, getattr(body, model_field, "") or "", spec.wire, name)
        context.config = fn.config
        if caller is not None:
            caller.check_allowed(fn.name, fn.config.aliases, fn.config.pipeline)
        if prepare is not None:
            body = await asyncio.to_thread(prepare, body, fn.config.options)
        chain = manager.chains[fn.name]
        if caller is not None and len(chain) > 1:  # a fallback serves only a key allowed to call it
            chain = [fn, *(f for f in chain[1:] if caller.may_call(f.name, f.config.aliases, f.config.pipeline))]
        offers = None
        routed = len(chain) > 1 or bool(fn.executor.runner_prices)  # several prices, or fallbacks
        span = trace.start("quote and hold") if trace is not None and (routed or fn.config.price is not None) else None
        if routed:
            offers = await _quote_offers(request, context, body, units, manager.settings, chain)
        elif fn.config.price is not None:
            await _quote(request, context, body, units, manager.settings)
        if span is not None:
            span.end()
        if context.holding is not None and _out_of_credit(caller):
            await context.hold()  # refused a moment ago: this one's hold decides before the model runs
        waited = time.perf_counter()
        if routed:
            fn, lease, result, span = await _serve_chain(chain, offers, context, spec, body, raw, request, trace)
        else:
            lease = fn.acquire_now() or await _acquire_while_connected(fn, request, trace)
            result, span = await _execute(fn, lease, spec, body, raw, request, trace)
        try:
            await _answer(context, request.app, result)
        except BaseException:
            lease.release()
            await _discard(result)
            raise
        # queueing, loading and the model are not gateway overhead (see middleware)
        context.external_seconds = time.perf_counter() - waited
        if isinstance(result, Stream):  # a forwarded stream
            result.iterator = _relay(result.iterator, lease, span)
            return result
        if is_stream(result):
            return Stream(_relay(chunks_of(result), lease, span), media_type=spec.stream_media_type)
        lease.release()
        if span is not None:
            span.end()
        if isinstance(result, Response):
            return result
        span = trace.start("encode") if trace is not None else None
        try:
            content = _encoder.encode(result)
        except (TypeError, msgspec.EncodeError) as exc:
            raise InferenceError(f"{name} returned a result that cannot be encoded as JSON: {exc}") from exc
        if span is not None:
            span.end()
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


async def _acquire_while_connected(fn: Function, request: Request[Any, Any, Any], trace: Trace | None) -> Lease:
    """Wait for a slot and the model (a queue, a cold load), but give up if the client
    disconnects meanwhile, so a request nobody waits for neither holds a queue place nor runs
    the model. A load in progress goes on for the requests that come next. A traced wait is a
    span linked to the load it waited for."""
    wait = trace.start("queue wait", attributes={"warmgate.function": fn.name}) if trace is not None else None
    try:
        return await _acquire_or_leave(fn, request)
    except BaseException as exc:  # a full queue, a failed load, a client that left
        if wait is not None:
            wait.fail(getattr(exc, "msg", None) or type(exc).__name__)
        raise
    finally:
        if wait is not None:
            request.app.state.tracer.waited(wait, fn)
            wait.end()


async def _acquire_or_leave(fn: Function, request: Request[Any, Any, Any]) -> Lease:
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


async def _serve_chain(chain: list[Function], offers: dict[str, dict[str, int]] | None, context: RequestContext,
                       spec: PipelineSpec, body: Any, raw: bytes, request: Request[Any, Any, Any],
                       trace: Trace | None) -> tuple[Function, Lease, Any, Span | None]:
    """Serve the request on the first function of ``chain`` that can: the next one (a
    fallback) when every runner of one failed, is in cooldown or is priced out, its model
    does not load, or the prompt overflows its context. Each is billed at its own price (``offers``); the response names the one
    that served (``X-Warmgate-Function``)."""
    failures: list[WarmgateError] = []
    for fn in chain:
        mine = offers.get(fn.name) if offers is not None else None
        if offers is not None and mine is None:
            failures.append(RunnersFailed(f"{fn.name}: priced above your X-Max-Price-Per-Unit"))
            continue
        context.function, context.config = fn, fn.config
        own_prices = bool(fn.executor.runner_prices)
        context.offers = mine if own_prices else None
        context.served_wei = mine[""] if mine is not None and not own_prices else None
        try:
            lease = fn.acquire_now() or await _acquire_while_connected(fn, request, trace)
        except (LoadError, RunnersFailed) as exc:
            failures.append(exc)
            continue
        try:
            result, span = await _execute(fn, lease, spec, body, raw, request, trace)
        except (RunnersFailed, ContextExceeded) as exc:
            if isinstance(exc, ContextExceeded) and fn is chain[-1]:
                raise
            failures.append(exc)
            if fn is not chain[-1]:
                _log.warning("function_fallback", function=fn.name, error=exc.msg)
            continue
        if context.quote is not None:
            billed = context.served_wei if context.served_wei is not None else context.quote.wei
            context.headers = [*context.headers, (b"x-warmgate-price", str(billed).encode())]
        if len(chain) > 1:
            context.headers = [*context.headers, (b"x-warmgate-function", fn.name.encode())]
        return fn, lease, result, span
    if len(failures) == 1:
        raise failures[0]
    retry_after = min((float(e.headers["Retry-After"]) for e in failures if e.headers and "Retry-After" in e.headers),
                      default=None)
    raise RunnersFailed(f"no runner of {chain[0].name!r} or its fallbacks could serve the request: "
                        + "; ".join(f"{fn.name}: {e.msg}" for fn, e in zip(chain, failures, strict=False)),
                        retry_after=retry_after)


async def _execute(fn: Function, lease: Lease, spec: PipelineSpec, body: Any, raw: bytes,
                   request: Request[Any, Any, Any], trace: Trace | None) -> tuple[Any, Span | None]:
    """The request on ``fn``'s executor, in its ``execute`` span (ended with the answer). If it
    fails the lease is released; a failure a fallback may recover from ends the span failed
    (the next function gets its own), any other leaves it for the trace to end failed."""
    scope = request.scope
    call = Call(spec, body, RawRequest(scope["path"], scope["query_string"], scope["headers"], raw)
                if fn.executor.forwards_raw else None, functools.partial(_disconnect, request))
    span = trace.start(f"execute {fn.config.executor}", attributes={"warmgate.function": fn.name}) \
        if trace is not None else None
    try:
        return await fn.executor.call(lease.runner, call), span
    except (RunnersFailed, ContextExceeded) as exc:
        lease.release()
        if span is not None:
            span.fail(exc.msg)
            span.end()
        raise
    except BaseException:
        lease.release()
        raise


async def _disconnect(request: Request[Any, Any, Any]) -> None:
    """Returns when the client goes away (the body is already read, so nothing else arrives)."""
    message = await request.receive()
    while message["type"] != "http.disconnect":
        message = await request.receive()


async def _quote(request: Request[Any, Any, Any], context: RequestContext, body: Any, units: Any,
                 settings: Any) -> None:
    """Price the request (``price_request`` hooks), refuse it (402) when the caller's
    ``X-Max-Price-Per-Unit`` is lower than the price per unit, hold it against the caller's
    balance (``reserve`` hooks, 402 when short), and put units and wei on the response."""
    fn, caller = context.function, context.caller
    assert fn is not None
    count = int(units(body)) if units is not None else 1
    wei = price_wei(fn.config, count, settings, function=fn, request=body)
    if wei is None:
        return
    ceiling = _max_price_per_unit(request.scope)
    if ceiling is not None and count > 0 and int(wei) > math.ceil(ceiling * count):  # both rounded up alike
        raise PaymentRequired(f"{fn.name} costs {_wei_text(Fraction(int(wei), count))} wei per unit "
                              f"({wei} wei for {count} units), above your X-Max-Price-Per-Unit of "
                              f"{_wei_text(ceiling)} wei")
    quote = Quote(function=fn.name, pipeline=fn.config.pipeline, model_id=fn.config.model_id, units=count,
                  wei=int(wei), key=caller.key if caller is not None else None,
                  settle_usage=fn.config.price is not None and fn.config.price.settle == "usage",
                  request_id=context.request_id)
    context.headers = [*context.headers, (b"x-warmgate-units", str(count).encode()),
                       (b"x-warmgate-price", str(int(wei)).encode())]
    _hold(context, quote, request.app)


def _hold(context: RequestContext, quote: Quote, app: Any) -> None:
    """From here on the request is reported to on_usage exactly once; its hold (``reserve``
    hooks that wait) is taken while the function runs, not before it starts, and awaited before
    the answer."""
    holds = [held for held in pm.hook.reserve(quote=quote, app=app) if inspect.isawaitable(held)]
    context.quote = quote
    if holds:
        context.holding = asyncio.ensure_future(_taken(holds))


async def _taken(holds: list[Any]) -> None:
    """Every ``reserve`` hook's hold; the first refusal once all have answered (none is left
    running unawaited)."""
    for outcome in await asyncio.gather(*holds, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


OUT_OF_CREDIT_KEYS = 10_000
"""Keys remembered as out of credit at most (the oldest forgotten first)."""
_refused: dict[str, float] = {}
"""Keys whose last hold was refused (402), with when (``perf_counter``), oldest first: until a
hold of theirs asked for after that is taken (credit added), their requests wait for their hold
before the function runs, so a key out of credit spends no model time. Otherwise a hold is
decided beside the function, and each refused request would have run once. A hold taken by a
request that came before the refusal says nothing about the credit now, and a time limit would
let a broke key's requests run again, all at once, each time it ran out."""


def _out_of_credit(caller: Caller | None) -> bool:
    return caller is not None and caller.key is not None and caller.key in _refused


async def _answer(context: RequestContext, app: Any, result: Any) -> None:
    """Before an answer goes out: its hold, taken while the function ran (a 402 or 503 now, the
    result dropped), then the ``on_answer`` hooks, so a store knows from here on that a crash
    may leave a client with an answer, to be billed."""
    key = context.caller.key if context.caller is not None else None
    try:
        await context.hold()
    except PaymentRequired:
        if key is not None:
            if key not in _refused and len(_refused) >= OUT_OF_CREDIT_KEYS:
                del _refused[next(iter(_refused))]
            _refused[key] = time.perf_counter()
        raise
    if key is not None and _refused and context.started > _refused.get(key, context.started):
        del _refused[key]
    if context.quote is not None and getattr(result, "status_code", 200) < 400:
        for answering in pm.hook.on_answer(quote=context.quote, app=app):
            await await_me_maybe(answering)


async def _discard(result: Any) -> None:
    """Close a result whose answer will not go out (its hold was refused): a stream's generator
    or upstream ends now."""
    iterator = result.iterator if isinstance(result, Stream) else result if is_stream(result) else None
    close = getattr(iterator, "aclose", None) or getattr(iterator, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await await_me_maybe(close())


async def _quote_offers(request: Request[Any, Any, Any], context: RequestContext, body: Any, units: Any,
                        settings: Any, chain: list[Function]) -> dict[str, dict[str, int]] | None:
    """Price the request on each runner with its own price and each fallback: the caller's
    ``X-Max-Price-Per-Unit`` keeps those at or under it (402 with the cheapest on offer when
    none is), and the hold covers the dearest left. Returns the offers by function and runner
    url (``""``: the function's own price), or None when nothing is priced."""
    fn, caller = chain[0], context.caller
    count = int(units(body)) if units is not None else 1
    ceiling = _max_price_per_unit(request.scope)
    limit = math.ceil(ceiling * count) if ceiling is not None and count > 0 else None
    offers: dict[str, dict[str, int]] = {}
    cheapest: tuple[int, str] | None = None
    settle_usage = priced = False
    for candidate in chain:
        for url, config in candidate.executor.runner_prices or (("", candidate.config),):
            quoted = price_wei(config, count, settings, function=candidate, request=body)
            priced = priced or quoted is not None
            wei = quoted or 0
            settle_usage = settle_usage or (config.price is not None and config.price.settle == "usage")
            if cheapest is None or wei < cheapest[0]:
                cheapest = (wei, f"{candidate.name} on {url}" if url else candidate.name)
            if limit is None or wei <= limit:
                offers.setdefault(candidate.name, {})[url] = wei
    if not priced:
        return None
    if not offers:
        assert cheapest is not None and ceiling is not None
        wei, where = cheapest
        raise PaymentRequired(f"the cheapest on offer, {where}, costs {_wei_text(Fraction(wei, count))} wei per unit "
                              f"({wei} wei for {count} units), above your X-Max-Price-Per-Unit of "
                              f"{_wei_text(ceiling)} wei")
    hold = max(wei for by_url in offers.values() for wei in by_url.values())
    quote = Quote(function=fn.name, pipeline=fn.config.pipeline, model_id=fn.config.model_id, units=count,
                  wei=hold, key=caller.key if caller is not None else None, settle_usage=settle_usage,
                  request_id=context.request_id)
    context.headers = [*context.headers, (b"x-warmgate-units", str(count).encode())]
    _hold(context, quote, request.app)
    return offers


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


async def _relay(chunks: AsyncIterator[Any], lease: Lease, span: Span | None) -> AsyncIterator[bytes]:
    """The stream's chunks; its slot is freed, and its executor span ended, when it ends."""
    try:
        async for chunk in chunks:
            if span is not None and span.events is None:
                span.event("first chunk")
            yield chunk.encode() if isinstance(chunk, str) else chunk
    finally:
        lease.release()
        if span is not None:
            span.end()
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
