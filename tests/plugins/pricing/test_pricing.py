"""Livepeer price arithmetic (exact fractions, rounded up to whole wei), the max-price 402, the
price list and the demo profile's example prices."""

from fractions import Fraction

import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.settings import Price
from warmgate.plugins.pricing import price_wei, rate_wei
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import EchoPipeline


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


# -- over HTTP ---------------------------------------------------------------------------------------


@pytest.fixture
def priced(warmgate_server, pricing_database):
    echo = EchoPipeline()
    functions = [
        FunctionConfig(pipeline="echo", model_id="echo-wei", price=Price(price_per_unit=10, pixels_per_unit=4)),
        FunctionConfig(pipeline="echo", model_id="echo-usd", price=Price(price_per_unit="0.003", currency="USD")),
        FunctionConfig(pipeline="echo", model_id="echo-free"),
    ]
    settings = Settings(functions=functions, sections=[PricingSettings(**pricing_database.pricing(eth_rates={"USD": 3000}))])
    _, client = warmgate_server(settings, pipelines={"echo": echo.spec})
    return client


def test_a_max_price_below_the_rate_is_a_402_with_both_figures(priced):
    body = {"prompt": "four", "model_id": "echo-wei"}  # four characters: 4 units at 2.5 wei
    r = priced.post("/echo", json=body, headers={"X-Max-Price-Per-Unit": "2"})
    assert r.status_code == 402
    msg = r.json()["detail"]["msg"]
    assert "2.5 wei per unit (10 wei for 4 units)" in msg and "X-Max-Price-Per-Unit of 2 wei" in msg
    ok = priced.post("/echo", json=body, headers={"X-Max-Price-Per-Unit": "2.5"})
    assert ok.status_code == 200 and (ok.headers["x-warmgate-units"], ok.headers["x-warmgate-price"]) == ("4", "10")
    one = priced.post("/echo", json={**body, "prompt": "x"}, headers={"X-Max-Price-Per-Unit": "2.5"})
    assert one.status_code == 200 and one.headers["x-warmgate-price"] == "3"  # 2.5 rounded up, for both
    free = priced.post("/echo", json={"prompt": "x", "model_id": "echo-free"}, headers={"X-Max-Price-Per-Unit": "0"})
    assert free.status_code == 200 and "x-warmgate-price" not in free.headers


@pytest.mark.parametrize("value", ["abc", "-1", "1,5", ""])
def test_a_malformed_max_price_is_a_400(priced, value):
    r = priced.post("/echo", json={"prompt": "x", "model_id": "echo-wei"}, headers={"X-Max-Price-Per-Unit": value})
    assert r.status_code == 400 and "X-Max-Price-Per-Unit" in r.json()["detail"]["msg"]


@pytest.mark.parametrize(("value", "words"), [
    ("1e10000000", "exponent must be between -100 and 100"),  # an exact Fraction of this froze the loop
    ("1e-10000000", "exponent must be between -100 and 100"),
    ("9" * 65, "at most 64 characters"),
])
def test_an_unbounded_max_price_is_a_400_and_the_gateway_stays_responsive(priced, value, words):
    r = priced.post("/echo", json={"prompt": "x", "model_id": "echo-wei"}, headers={"X-Max-Price-Per-Unit": value})
    assert r.status_code == 400 and words in r.json()["detail"]["msg"]
    assert priced.get("/health").status_code == 200


def test_a_max_price_at_the_bounds_is_compared_exactly(priced):
    body = {"prompt": "four", "model_id": "echo-wei"}  # 2.5 wei per unit
    assert priced.post("/echo", json=body, headers={"X-Max-Price-Per-Unit": "1e100"}).status_code == 200
    assert priced.post("/echo", json=body, headers={"X-Max-Price-Per-Unit": "25e-1"}).status_code == 200
    # 4 units at 2.25 round up to 9 wei < 10; a hair more (64 characters) rounds up to 10
    assert priced.post("/echo", json=body, headers={"X-Max-Price-Per-Unit": "2.25"}).status_code == 402
    hair = "2.25" + "0" * 59 + "1"
    assert priced.post("/echo", json=body, headers={"X-Max-Price-Per-Unit": hair}).status_code == 200


def test_the_price_list_shows_every_function_with_its_unit_and_exact_rate(priced):
    rows = {row["model_id"]: row for row in priced.get("/pricing").json()["functions"]}
    assert rows["echo-wei"]["wei_per_unit"] == "5/2" and rows["echo-wei"]["unit"] == "character"
    assert rows["echo-wei"]["usd_per_unit"] == pytest.approx(2.5 * 3000 / 10**18)
    assert rows["echo-usd"]["wei_per_unit"] == str(10**12) and rows["echo-usd"]["currency"] == "USD"
    assert rows["echo-usd"]["usd_per_unit"] == pytest.approx(0.003)
    assert rows["echo-free"]["wei_per_unit"] is None and rows["echo-free"]["price_per_unit"] is None


def test_demo_functions_carry_example_prices():
    from warmgate.core.config import plan_functions
    from warmgate.core.plugins import get_pipelines

    planned = plan_functions(Settings(profile="demo"), get_pipelines())
    assert planned and all(fn.price is not None and Fraction(str(fn.price.price_per_unit)) > 0 for fn in planned)
    by_pipeline = {fn.pipeline: fn.price.price_per_unit for fn in planned}
    assert by_pipeline["text-to-image"] == 4_768_371 and by_pipeline["audio-to-text"] == 12_882_811
    assert by_pipeline["image-to-text"] == 1_192_093
