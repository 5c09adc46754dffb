"""Pricing: quotes every request to a priced function the Livepeer way, lists the prices at
``GET /pricing``, holds quotes against API keys' balances (``warmgate keys``), and records usage
in a durable ledger (``GET /usage``, ``warmgate usage``). A built-in plugin."""

from __future__ import annotations

from typing import Any

from warmgate.core.errors import ConfigError
from warmgate.core.hookspecs import hookimpl
from warmgate.pricing.accounts import Accounts
from warmgate.pricing.book import list_prices
from warmgate.pricing.keys import KeyStore
from warmgate.pricing.keys_cli import keys_command
from warmgate.pricing.ledger import SqliteLedger
from warmgate.pricing.quote import RateCache, price_wei, rate_wei
from warmgate.pricing.usage import ledger_path, usage_command, usage_route

__all__ = ["price_wei", "rate_wei"]


_rates = RateCache()


@hookimpl(trylast=True)
def price_request(function: Any, request: Any, units: int, settings: Any) -> int | None:
    price = function.config.price
    if price is None:
        return None
    return _rates.price_wei(price, units, settings.pricing.eth_rates)


@hookimpl
def register_routes(register: Any) -> None:
    register(list_prices)
    register(usage_route)


@hookimpl
def register_commands(cli: Any) -> None:
    cli.add_command(usage_command)
    cli.add_command(keys_command)


@hookimpl
def startup(app: Any) -> None:
    settings = app.state.functions.settings
    path = ledger_path(settings)
    if settings.auth.keys and path is None:
        raise ConfigError(settings.source, "auth.keys", "keys need the usage ledger, which keeps them and their "
                          "balances, but pricing.ledger is off")
    app.state.ledger = SqliteLedger(path, sync=settings.pricing.ledger_sync) if path is not None else None
    app.state.accounts = Accounts(KeyStore(path)) if settings.auth.keys and path is not None else None


@hookimpl
def shutdown(app: Any) -> None:
    state = app.state
    if getattr(state, "accounts", None) is not None:
        state.accounts.close()
        state.accounts = None
    if getattr(state, "ledger", None) is not None:
        state.ledger.close()
        state.ledger = None


@hookimpl
def authenticate(token: str, app: Any) -> Any:
    accounts = getattr(app.state, "accounts", None)
    return accounts.authenticate(token) if accounts is not None else None


@hookimpl
def reserve(quote: Any, app: Any) -> None:
    accounts = getattr(app.state, "accounts", None)
    if accounts is not None and quote.key is not None:
        accounts.reserve(quote)


@hookimpl
def on_usage(event: Any, app: Any) -> Any:
    """Settle the event's hold, and return its commit, which the response waits for before its
    last byte (group-committed with the other requests in flight)."""
    state = getattr(app, "state", None)
    accounts = getattr(state, "accounts", None)
    if accounts is not None:
        accounts.settle(event)
    ledger = getattr(state, "ledger", None)
    if ledger is not None:
        return ledger.submit_async(event)
    return None
