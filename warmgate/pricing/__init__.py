"""Pricing: quotes every request to a priced function the Livepeer way, and lists the prices at
``GET /pricing`` (a built-in plugin)."""

from __future__ import annotations

from typing import Any

from warmgate.core.hookspecs import hookimpl
from warmgate.pricing.book import list_prices
from warmgate.pricing.quote import price_wei, rate_wei

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
