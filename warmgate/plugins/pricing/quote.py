"""Livepeer prices, kept exact: ``price_per_unit / pixels_per_unit`` in a currency, as wei."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from warmgate.core.settings import Price

__all__ = ["WEI_PER_ETH", "RateCache", "price_wei", "rate_wei"]

WEI_PER_ETH = 10**18
_FACTORS = {"wei": 1, "eth": WEI_PER_ETH}


def rate_wei(price: Price, eth_rates: Mapping[str, float] | None = None) -> Fraction:
    """Wei per unit. ``price_per_unit`` is read from its decimal text, as go-livepeer reads the
    JSON number, so 0.1 is exactly one tenth; never a float. (``Price`` validated the fields.)"""
    per_unit = Fraction(str(price.price_per_unit)) / price.pixels_per_unit
    currency = price.currency.lower()
    if currency in _FACTORS:
        return per_unit * _FACTORS[currency]
    rates = {code.upper(): rate for code, rate in (eth_rates or {}).items()}
    if price.currency.upper() not in rates:
        raise ValueError(f"no ETH rate for {price.currency}; set pricing.eth_rates")
    return per_unit * WEI_PER_ETH / Fraction(str(rates[price.currency.upper()]))


def price_wei(price: Price, units: int, eth_rates: Mapping[str, float] | None = None) -> int:
    """Whole wei for ``units``, rounded up so a fraction of a wei is never given away."""
    rate = rate_wei(price, eth_rates)
    return -(-rate.numerator * units // rate.denominator)


class RateCache:
    """Each function's rate, worked out once: every request is quoted, and ``Fraction`` parsing
    and arithmetic would cost more than the rest of the gateway's work on a small request."""

    def __init__(self) -> None:
        self._rates: dict[int, tuple[Price, Mapping[str, float] | None, int, int]] = {}

    def price_wei(self, price: Price, units: int, eth_rates: Mapping[str, float] | None = None) -> int:
        cached = self._rates.get(id(price))
        if cached is None or cached[0] is not price or cached[1] is not eth_rates:
            rate = rate_wei(price, eth_rates)
            cached = self._rates[id(price)] = (price, eth_rates, rate.numerator, rate.denominator)
        return -(-cached[2] * units // cached[3])
