"""One request's own record: who calls, which function, its quote, the headers it adds, what it
used and how long it spent outside the gateway.

The request middleware makes it and reads it when the answer ends (the bill, the overhead
header, the access log); the route fills in the caller, the function and the quote; runners
report what they used with ``current_request()``. Nothing else carries billing data. It lives in
a context variable, so a runner's worker thread and a streamed answer see the same record.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from warmgate.core.functions.function import Function
    from warmgate.core.http.auth import Caller
    from warmgate.core.settings import FunctionConfig
    from warmgate.core.tracing.spans import Trace

__all__ = ["Quote", "RequestContext", "Usage", "current_request", "request_context"]


_HOLD_PREFIX = secrets.token_hex(6)
_hold_counter = itertools.count(1)


def new_hold_id() -> str:
    """Unique across gateway processes and their restarts (the process id, a random prefix,
    a counter), without a trip to the OS's random source per request."""
    return f"{os.getpid():x}{_HOLD_PREFIX}{next(_hold_counter):012x}"


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    """What a priced request is quoted and held for (``reserve``), before it runs."""

    function: str
    pipeline: str
    model_id: str
    units: int
    wei: int
    key: str | None = None
    """The caller's key (``authenticate``), whose balance holds ``wei`` until the request ends."""
    settle_usage: bool = False
    """Bill an LLM call by the completion tokens it produced (``price.settle: usage``)."""
    request_id: str = ""
    hold: str = msgspec.field(default_factory=new_hold_id)
    """The hold's id, unique per request: a store's hold row, settled by the ``UsageEvent``
    that carries it."""


class Usage:
    """What a request used, as its runner reports it; None where it reported nothing (the quote
    is billed)."""

    __slots__ = ("completion_tokens", "failed_status", "prompt_tokens", "units")

    def __init__(self) -> None:
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        """Tokens the model produced (with ``failed_status``: the ones the client received)."""
        self.failed_status: int | None = None
        """A stream that failed after its 200: the status it failed with; its delivered tokens are billed."""
        self.units: int | None = None
        """Units metered as the work ran (a live session's output pixels), billed in place of the quote's."""


class RequestContext:
    """One request, from the middleware's first look at it to its last byte."""

    __slots__ = ("caller", "config", "external_seconds", "function", "headers", "holding", "log_fields", "offers",
                 "on_end", "quote", "request_id", "served_wei", "started", "trace", "trace_headers", "usage")

    def __init__(self, request_id: str, started: float | None = None) -> None:
        self.request_id = request_id
        self.started = time.perf_counter() if started is None else started
        """``perf_counter()`` when the gateway first saw the request."""
        self.caller: Caller | None = None
        self.function: Function | None = None
        self.config: FunctionConfig | None = None
        """What is priced: the function's config (or a live pipeline's, which has no ``Function``)."""
        self.offers: dict[str, int] | None = None
        """Routing: the wei each runner with its own price quotes for this request, by url, only
        those at or under the caller's ``X-Max-Price-Per-Unit``; None: any runner may serve."""
        self.served_wei: int | None = None
        """What the runner or fallback function that served charges for the quoted units, when
        it may differ from the hold (``quote.wei``, the dearest that could have served)."""
        self.quote: Quote | None = None
        """Set once the request is priced: from then on it is billed exactly once (unless its
        hold is refused: ``hold()``)."""
        self.holding: asyncio.Future[None] | None = None
        """The quote's hold being taken while the function runs (``reserve`` hooks that wait)."""
        self.headers: Sequence[tuple[bytes, bytes]] = ()
        """Added to the response whatever it turns out to be (JSON, a stream, an error)."""
        self.external_seconds: float | None = None
        """Time spent outside the gateway (queue, load, model); set: ``X-Warmgate-Overhead-Ms`` is sent."""
        self.on_end: Sequence[Callable[[], Awaitable[None]]] = ()
        """Run once when the request ends, before its last byte (or when its client has gone): a
        rate limit's request slot is freed there."""
        self.usage = Usage()
        self.log_fields: dict[str, Any] = {}
        """Extra fields of the request's access-log line (an LLM's model and finish reason)."""
        self.trace: Trace | None = None
        """Its spans, when tracing is on and the request is sampled (``warmgate.core.tracing``)."""
        self.trace_headers: dict[str, str] | None = None
        """An untraced request's ``traceparent`` (and ``tracestate``), flagged not sampled: sent
        on to the servers it calls, so that they do not start traces of their own for it."""

    def detached(self) -> RequestContext:
        """A context for work this request runs concurrently whose reports stay its own (each of
        several LLM choices, which the runner accounts once for all): the same id and trace,
        its spans under the one open now and siblings of each other, and a usage nothing bills."""
        context = RequestContext(self.request_id, self.started)
        context.trace = self.trace.fork() if self.trace is not None else None
        context.trace_headers = self.trace_headers
        return context

    async def hold(self) -> None:
        """Wait for the hold taken while the function ran. Refused (402, or 503 with the store
        down): its error, and the quote is dropped, since nothing is held and nothing is billed."""
        holding = self.holding
        if holding is None:
            return
        try:
            await asyncio.shield(holding)  # a cancelled request leaves it to finish: the report awaits it
        except BaseException:
            if holding.done():  # refused, not this waiter cancelled
                self.quote = None
            raise

    def report_tokens(self, prompt: int | None, completion: int | None) -> None:
        """What an LLM call used (``completion`` None when inexact: the quote is billed)."""
        self.usage.prompt_tokens, self.usage.completion_tokens = prompt, completion

    def report_failed_stream(self, status: int, delivered_tokens: int) -> None:
        """A stream that failed after its 200: billed for the tokens the client received."""
        usage = self.usage
        usage.failed_status, usage.prompt_tokens, usage.completion_tokens = status, None, delivered_tokens


request_context: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("warmgate_request",
                                                                                       default=None)


def current_request() -> RequestContext | None:
    """The request being served (None outside one: a warm-up, a test calling a runner directly)."""
    return request_context.get()
