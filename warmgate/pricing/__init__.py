"""Pricing: quotes every request to a priced function the Livepeer way, lists the prices at
``GET /pricing``, and records usage in a durable ledger (``GET /usage``, ``warmgate usage``).
A built-in plugin."""

from __future__ import annotations

import asyncio
from typing import Any

from warmgate.core.hookspecs import hookimpl
from warmgate.pricing.book import list_prices
from warmgate.pricing.ledger import SqliteLedger
from warmgate.pricing.quote import price_wei, rate_wei
from warmgate.pricing.usage import ledger_path, usage_command, usage_route

__all__ = ["price_wei", "rate_wei"]


@hookimpl(trylast=True)
def price_request(function: Any, request: Any, units: int, settings: Any) -> int | None:
    price = function.config.price
    if price is None:
        return None
    return price_wei(price, units, settings.pricing.eth_rates)


@hookimpl
def register_routes(register: Any) -> None:
    register(list_prices)
    register(usage_route)


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(usage_command)


@hookimpl
def startup(app: Any) -> None:
    path = ledger_path(app.state.functions.settings)
    app.state.ledger = SqliteLedger(path) if path is not None else None


@hookimpl
def shutdown(app: Any) -> None:
    ledger = getattr(app.state, "ledger", None)
    if ledger is not None:
        ledger.close()
        app.state.ledger = None


@hookimpl
def on_usage(event: Any, app: Any) -> Any:
    """The event's commit, which the response waits for before its last byte (group-committed
    with the other requests in flight)."""
    ledger = getattr(getattr(app, "state", None), "ledger", None)
    if ledger is not None:
        return asyncio.wrap_future(ledger.submit(event))
    return None
