"""Livepeer price arithmetic: exact fractions, rounded up to whole wei."""

from fractions import Fraction

import pytest

from warmgate.core.settings import Price
from warmgate.pricing import price_wei, rate_wei


@pytest.mark.parametrize(("price", "units", "wei"), [
    (Price(price_per_unit=4768371), 512 * 512, 4768371 * 512 * 512),
    (Price(price_per_unit=1, pixels_per_unit=3), 10, 4),  # 10/3 wei rounds up
    (Price(price_per_unit=0.1, currency="eth"), 3, 3 * 10**17),  # 0.1 is one tenth, not a float
    (Price(price_per_unit="1e-9", currency="ETH"), 256, 256 * 10**9),
])
def test_price_in_wei(price, units, wei):
    assert price_wei(price, units) == wei


def test_fiat_prices_convert_through_the_eth_rate():
    price = Price(price_per_unit="0.003", currency="USD")
    assert rate_wei(price, {"usd": 3000}) == Fraction(10**12)
    assert price_wei(price, 5, {"USD": 3000}) == 5 * 10**12
    with pytest.raises(ValueError, match="no ETH rate for USD"):
        rate_wei(price)
