"""``GET /pricing``: every function with its billing unit and its rate, as callers see it."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get

from warmgate.plugins.live.pipelines import LIVE_PIPELINE, get_live_pipelines, live_function_name, live_price
from warmgate.plugins.pricing.quote import WEI_PER_ETH, rate_wei
from warmgate.plugins.pricing.settings import pricing_settings

__all__ = ["FunctionPrice", "PriceList", "list_prices"]


class FunctionPrice(msgspec.Struct):
    name: str
    pipeline: str
    model_id: str
    unit: str
    """``pixel``, ``ms``, ``character``, ``token`` or ``request``."""
    price_per_unit: str | None
    pixels_per_unit: int | None
    currency: str | None
    wei_per_unit: str | None
    """Exact: an integer, or a fraction ``"10/3"`` when the price does not divide evenly."""
    usd_per_unit: float | None
    """When ``pricing.eth_rates`` has USD; for reading only, money is kept in wei."""


class PriceList(msgspec.Struct):
    functions: list[FunctionPrice]


@get("/pricing", sync_to_thread=False, tags=["pricing"], summary="Prices per function", opt={"response": PriceList})
def list_prices(request: Request[Any, Any, Any]) -> Response[bytes]:
    manager = request.app.state.functions
    rates = pricing_settings(manager.settings).eth_rates
    usd = next((rate for code, rate in rates.items() if code.upper() == "USD"), None)
    priced = [(fn.name, fn.config.pipeline, fn.config.model_id, fn.spec.price_unit.value, fn.config.price)
              for fn in manager.functions.values()]
    # live pipelines: billed per output pixel (width x height of every frame sent)
    live = live_price(manager.settings)
    priced += [(live_function_name(name), LIVE_PIPELINE, name, "pixel", live) for name in get_live_pipelines()]
    rows = []
    for name, pipeline, model_id, unit, price in priced:
        wei = rate_wei(price, rates) if price is not None else None
        rows.append(FunctionPrice(
            name=name, pipeline=pipeline, model_id=model_id, unit=unit,
            price_per_unit=str(price.price_per_unit) if price else None,
            pixels_per_unit=price.pixels_per_unit if price else None, currency=price.currency if price else None,
            wei_per_unit=str(wei) if wei is not None else None,
            usd_per_unit=float(wei * usd / WEI_PER_ETH) if wei is not None and usd else None,
        ))
    return Response(msgspec.json.encode(PriceList(functions=rows)), media_type="application/json")
