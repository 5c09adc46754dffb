"""What one priced request used, reported once to the ``on_usage`` hooks before its last byte goes
out: a ledger that commits it there keeps every response a client received."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import structlog

from warmgate.core.logs import access_fields
from warmgate.core.plugins import await_me_maybe, pm

__all__ = ["QUOTE", "Quote", "UsageEvent", "record_usage", "report_usage"]

QUOTE = "warmgate.quote"
"""Key in ``scope["state"]``: the ``Quote`` of a priced request, set by its route."""

_log = structlog.get_logger("warmgate.usage")


class Quote(msgspec.Struct, frozen=True, kw_only=True):
    function: str
    pipeline: str
    model_id: str
    units: int
    wei: int
    key: str | None = None
    """The caller's key (``authenticate``), whose balance holds ``wei`` until the request ends."""
    settle_usage: bool = False
    """Bill an LLM call by the completion tokens it produced (``price.settle: usage``)."""


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


async def report_usage(app: Any, quote: Quote, request_id: str, status: int, seconds: float, *, billed: bool) -> None:
    """Build the event, call the ``on_usage`` hooks and await what they return (a ledger's
    commit). ``billed``: the caller got an answer (a stream cut short by its client counts).
    A hook that fails is logged; the response still goes out."""
    llm = access_fields.get({}).get("llm") or {}
    completion = llm.get("completion_tokens")
    units, wei = quote.units, quote.wei
    failed = llm.get("failed_status")
    if failed is not None:  # a stream that failed after its 200: the tokens it delivered, whatever the settle
        status, billed = failed, True
        units = completion or 0
        wei = min(wei, _reprice(app, quote, units)) if units else 0
    elif quote.settle_usage and completion is not None:  # an abandoned stream has none: it keeps its quote
        units, wei = completion, min(wei, _reprice(app, quote, completion))
    event = UsageEvent(request_id=request_id, time=time.time(), function=quote.function, pipeline=quote.pipeline,
                       model_id=quote.model_id, units=units, quoted_wei=quote.wei, wei=wei if billed else 0,
                       status=status, duration_ms=round(seconds * 1000, 3), key=quote.key,
                       prompt_tokens=llm.get("prompt_tokens"), completion_tokens=completion)
    await record_usage(app, event)


async def record_usage(app: Any, event: UsageEvent) -> None:
    """Call the ``on_usage`` hooks with ``event`` and await what they return (a ledger's
    commit). A hook that fails is logged, never raised: the caller's answer still goes out."""
    try:
        for result in pm.hook.on_usage(event=event, app=app):
            await await_me_maybe(result)
    except Exception:
        _log.exception("usage_report_failed", function=event.function)


def _reprice(app: Any, quote: Quote, units: int) -> int:
    """The same function's price for ``units`` (an LLM call's actual completion tokens)."""
    manager = app.state.functions
    wei = pm.hook.price_request(function=manager.functions[quote.function], request=None, units=units,
                                settings=manager.settings)
    return quote.wei if wei is None else int(wei)
