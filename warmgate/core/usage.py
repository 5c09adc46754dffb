"""What one priced request used, reported once to the ``on_usage`` hooks before its last byte goes
out: a ledger that commits it there keeps every response a client received."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import structlog

from warmgate.core.context import Quote, RequestContext
from warmgate.core.plugins import await_me_maybe, pm
from warmgate.core.settings import FunctionConfig

__all__ = ["Quote", "UsageEvent", "price_wei", "record_usage", "report_usage"]

_log = structlog.get_logger("warmgate.usage")


class UsageEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One priced request. ``units`` and ``wei`` are what it is billed: the quote; the completion
    tokens with ``settle: usage``; 0 wei when it failed, except a stream that failed after
    delivering tokens: those tokens (``completion_tokens``), with the status it failed with."""

    request_id: str
    time: float
    """Unix seconds when the request ended."""
    function: str
    pipeline: str
    model_id: str
    units: int
    quoted_wei: int
    wei: int
    status: int
    duration_ms: float
    key: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    hold: str = ""
    """The quote's hold (``Quote.hold``), which this event settles."""


def price_wei(config: FunctionConfig, units: int, settings: Any, *, function: Any = None,
              request: Any = None) -> int | None:
    """What ``units`` of ``config`` cost by the ``price_request`` hooks (None: no plugin prices it).
    ``function`` is the ``Function`` when there is one (a live session has none)."""
    wei = pm.hook.price_request(function=function, config=config, request=request, units=units, settings=settings)
    return None if wei is None else int(wei)


async def report_usage(app: Any, context: RequestContext, status: int, seconds: float, *,
                       billed: bool) -> UsageEvent:
    """Build the event from the request's quote and usage, call the ``on_usage`` hooks and await
    what they return (a ledger's commit). ``billed``: the caller got an answer (a stream cut
    short by its client counts). A hook that fails is logged; the response still goes out."""
    quote, usage = context.quote, context.usage
    assert quote is not None
    completion = usage.completion_tokens
    units, wei = quote.units, quote.wei
    if usage.failed_status is not None:  # a stream that failed after its 200: the tokens it delivered
        status, billed = usage.failed_status, True
        units = completion or 0
        wei = min(wei, _reprice(app, context, units)) if units else 0
    elif quote.settle_usage and completion is not None:  # an abandoned stream has none: it keeps its quote
        units, wei = completion, min(wei, _reprice(app, context, completion))
    elif usage.units is not None:  # metered as it ran (a live segment): what it used, not the hold
        units = usage.units
        wei = _reprice(app, context, units, default=0)
    elif context.served_wei is not None:  # routed: the serving runner's (or fallback's) price, not the hold's
        wei = min(wei, context.served_wei)
    function, model_id = quote.function, quote.model_id
    if context.served_wei is not None and context.config is not None:  # a fallback is billed as itself
        function, model_id = context.config.name, context.config.model_id
    event = UsageEvent(request_id=context.request_id, time=time.time(), function=function,
                       pipeline=quote.pipeline, model_id=model_id, units=units, quoted_wei=quote.wei,
                       wei=wei if billed else 0, status=status, duration_ms=round(seconds * 1000, 3), key=quote.key,
                       prompt_tokens=usage.prompt_tokens, completion_tokens=completion, hold=quote.hold)
    span = context.trace.start("ledger write") if context.trace is not None else None
    await record_usage(app, event)
    if span is not None:
        span.end()
    return event


async def record_usage(app: Any, event: UsageEvent) -> None:
    """Call the ``on_usage`` hooks with ``event`` and await what they return (a ledger's
    commit). A hook that fails is logged, never raised: the caller's answer still goes out."""
    try:
        for result in pm.hook.on_usage(event=event, app=app):
            await await_me_maybe(result)
    except Exception:
        _log.exception("usage_report_failed", function=event.function)


def _reprice(app: Any, context: RequestContext, units: int, *, default: int | None = None) -> int:
    """The same function's price for ``units`` (an LLM call's actual completion tokens); the
    quote's (or ``default``) when no plugin prices it."""
    assert context.config is not None and context.quote is not None
    wei = price_wei(context.config, units, app.state.functions.settings, function=context.function)
    if wei is None:
        return context.quote.wei if default is None else default
    return wei
