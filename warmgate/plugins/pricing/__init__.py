"""Pricing: quotes every request to a priced function the Livepeer way, lists the prices at
``GET /pricing``, holds quotes against API keys' balances (``warmgate keys``), and records usage
in a durable ledger (``GET /usage``, ``warmgate usage``), in a SQLite file or a PostgreSQL
database shared by several gateways (``warmgate db upgrade``). A built-in plugin."""

from __future__ import annotations

from typing import Any

from warmgate.core.hookspecs import hookimpl
from warmgate.core.http.errors import ConfigError
from warmgate.plugins.pricing.book import list_prices
from warmgate.plugins.pricing.db_cli import db_command, refuse_to_start
from warmgate.plugins.pricing.keys_cli import keys_command
from warmgate.plugins.pricing.quote import RateCache, price_wei, rate_wei
from warmgate.plugins.pricing.settings import PricingSettings, pricing_settings
from warmgate.plugins.pricing.store import open_store, store_target
from warmgate.plugins.pricing.usage import usage_command, usage_route

__all__ = ["price_wei", "rate_wei"]


_rates = RateCache()


@hookimpl(trylast=True)
def price_request(config: Any, units: int, settings: Any) -> int | None:
    price = config.price
    if price is None:
        return None
    return _rates.price_wei(price, units, pricing_settings(settings).eth_rates)


@hookimpl
def register_settings(register: Any) -> None:
    register(PricingSettings)


@hookimpl
def register_routes(register: Any) -> None:
    register(list_prices)
    register(usage_route)


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(usage_command)
    cli.add_command(keys_command)
    cli.add_command(db_command)


@hookimpl
async def startup(app: Any) -> None:
    """Open the store (``app.state.ledger``); a database that is unreachable or has an older
    schema stops the gateway with one line saying why (and the command that fixes it)."""
    settings = app.state.functions.settings
    with refuse_to_start():
        if settings.auth.keys and store_target(settings) is None:
            raise ConfigError(settings.source, "auth.keys", "keys need the usage ledger, which keeps them and their "
                              "balances, but pricing.ledger is off")
        app.state.ledger = await open_store(settings)
    app.state.keys_on = settings.auth.keys


@hookimpl
async def shutdown(app: Any) -> None:
    store = getattr(app.state, "ledger", None)
    if store is not None:
        app.state.ledger = None
        await store.close()


def _store(app: Any) -> Any:
    state = getattr(app, "state", None)
    return getattr(state, "ledger", None)


@hookimpl
def authenticate(token: str, app: Any) -> Any:
    store = _store(app)
    return store.authenticate(token) if store is not None and app.state.keys_on else None


@hookimpl
def limit_request(caller: Any, app: Any) -> Any:
    store = _store(app)
    return store.admit(caller.key) if store is not None and app.state.keys_on else None


@hookimpl
def reserve(quote: Any, app: Any) -> Any:
    """Hold the quote (an operator key's too, without a budget: its row lets recovery bill an
    answer its gateway died before settling); what waits runs while the function does."""
    store = _store(app)
    return store.reserve(quote) if store is not None else None


@hookimpl
def on_answer(quote: Any, app: Any) -> Any:
    """Mark the quote's hold before the answer's first byte: from here a crash bills it."""
    store = _store(app)
    return store.answering(quote) if store is not None else None


@hookimpl
def on_usage(event: Any, app: Any) -> None:
    """Settle the event's hold and queue its row, after the answer: nobody waits for it."""
    store = _store(app)
    if store is not None:
        store.settle(event)
