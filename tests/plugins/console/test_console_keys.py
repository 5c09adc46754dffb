"""With ``auth.keys`` on, the console runs pipelines with a key made by ``warmgate keys`` and shows
that key's own usage and balance (in-process gateway over real HTTP, Debian's chromium)."""

from __future__ import annotations

import re

from warmgate import FunctionConfig, Settings
from warmgate.core.settings import AuthSettings, Price
from warmgate.plugins.pricing.keys import KeyStore
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import EchoPipeline


def test_a_budgeted_key_sees_its_usage_and_balance(warmgate_server, page, artifacts, tmp_path):
    ledger = tmp_path / "usage.sqlite"
    store = KeyStore(ledger)
    try:
        record, token = store.create(name="alice", credit=1_000_000)
    finally:
        store.close()
    settings = Settings(functions=[FunctionConfig(pipeline="echo", model_id="echo-paid", price=Price(price_per_unit=7))],
                        auth=AuthSettings(keys=True), sections=[PricingSettings(ledger=str(ledger))])
    server, client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})
    assert client.get("/console/api/gateway").json()["keys"] is True

    page.goto(f"{server.url}/console")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#usage").inner_text() == "Enter an API key above to see usage."
    page.fill("#key-input", token)
    page.click("#key-form button[type=submit]")
    panel = page.locator('.pipeline-form[data-pipeline="echo"]')  # the only pipeline: its form is open
    panel.locator("[name=prompt]").fill("abcd")
    panel.locator("button[type=submit]").click()
    panel.locator(".result .text-result").wait_for()
    assert panel.locator(".result .text-result").inner_text() == "abcd"
    assert "price 28 wei for 4 units" in panel.locator(".call-meta").inner_text()
    balance = page.locator("#balance")
    balance.wait_for(timeout=15_000)  # usage refreshes every 5 s
    page.wait_for_function("() => document.querySelector('#usage-table') !== null")
    assert re.search(rf"Key {record.id} \(alice\): 999,972 wei available · spent 28 wei", balance.inner_text())
    assert record.id in page.locator("#usage-table").inner_text()
    page.locator("#prices").screenshot(path=artifacts / "keys-usage-balance.png")
